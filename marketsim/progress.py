"""Progress bars for long jobs (rich), on stderr so that ``--json`` output on stdout stays clean."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

#: stderr console shared by the CLI's progress bars and messages. Messages carry user text (paths, names:
#: ``--out 'r_[red]x'``), so rich markup is off: square brackets print as they are.
stderr = Console(stderr=True, highlight=False, markup=False)


def console() -> Console:
    """A console for stdout (tables, "wrote ..." lines) that, like ``stderr``, never reads user text as markup."""
    return Console(highlight=False, markup=False)


@contextlib.contextmanager
def bar(description: str, total: float | None, unit: str = "", enabled: bool = True) -> Iterator[Callable[..., None]]:
    """A progress bar with done/total, rate and ETA. Yields ``update(completed=None, advance=None, total=None)``."""
    if not enabled:
        yield lambda **kw: None
        return
    cols = [TextColumn("{task.description}", style="bold", markup=False), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}", markup=False), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    with Progress(*cols, console=stderr, transient=False, refresh_per_second=8) as prog:
        task = prog.add_task(description, total=total, rate="")

        def update(completed: float | None = None, advance: float | None = None, total: float | None = None) -> None:
            kw = {}
            if total is not None:
                kw["total"] = total
            if completed is not None:
                kw["completed"] = completed
            if advance is not None:
                kw["advance"] = advance
            prog.update(task, **kw)
            t = prog.tasks[0]
            speed = t.speed
            prog.update(task, rate=f"{speed:.1f} {unit}/s" if speed else "")

        yield update
