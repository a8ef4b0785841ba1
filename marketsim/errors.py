"""The one error type a user sees: the CLI prints its one-line message and exits with code 2."""


class UserError(Exception):
    """Something the user gave is wrong (a file, a field, an option). ``str(err)`` is one line saying
    what was wrong, where, and what would be right."""
