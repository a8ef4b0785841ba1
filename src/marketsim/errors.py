"""The error types a user sees: the CLI prints a :class:`UserError`'s one-line message and exits with code 2;
an :class:`Interrupted` (Ctrl-C) prints its message and exits with 130."""


class UserError(Exception):
    """Something the user gave is wrong (a file, a field, an option). ``str(err)`` is one line saying
    what was wrong, where, and what would be right."""


class ScenarioError(UserError, ValueError):
    """A scenario (or sweep) file is invalid. ``str(err)`` is one line: file:line: field: problem.

    Defined here (and re-exported by :mod:`marketsim.scenario.core`) so that the YAML reader
    (:mod:`marketsim.scenario.yamlsafe`) can raise it without importing the scenario schema."""

    def __init__(self, message: str, *, source: str = "<scenario>", path: str = "", line: int | None = None):
        self.source, self.path, self.line, self.problem = source, path, line, message
        where = source if line is None else f"{source}:{line}"
        super().__init__(f"{where}: {path}: {message}" if path else f"{where}: {message}")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with one line saying what was kept (e.g. how many sweep runs are stored). The CLI prints
    ``marketsim: <message>`` and exits 130; raise it ``from`` the original KeyboardInterrupt."""
