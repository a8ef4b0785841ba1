"""mesa_model"""
