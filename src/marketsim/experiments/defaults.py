"""The defaults of a projection's draws and replicates (``marketsim project --draws/--replicates`` and the page's
"Decide" view), in a module of their own so that the command line reads them without importing the model."""

#: Default parameter draws of a projection whose scenario has uncertain parameters, and the replicates per
#: draw (with no uncertain parameter: one draw and DEFAULT_REPLICATES replicates). 32 x 4 keeps the
#: headline projection to a few minutes on 2 cores; the mixture's 2.5% and 97.5% points then rest on
#: 128 paired values.
DEFAULT_DRAWS = 32


DEFAULT_REPLICATES_WITH_DRAWS = 4


DEFAULT_REPLICATES = 20
