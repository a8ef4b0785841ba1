"""Terminal output (rich): progress bars on stderr, so that ``--json`` output on stdout stays clean, and
tables that read at 80 columns.

A bar fits the terminal's width (80 columns included): fixed-width counters, the description cut with an
ellipsis, no ETA while it is unknown. It appears only once the work advances or after ``DELAY`` seconds,
so work that turns out to be instant (a cached calibration, a finished sweep) draws no bar at all.
User-supplied text (scenario names, paths) is shown as plain text, never interpreted as rich markup.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task
from rich.table import Column, Table
from rich.text import Text

#: stderr console shared by the CLI's progress bars and messages. Messages carry user text (paths, names:
#: ``--out 'r_[red]x'``), so rich markup is off: square brackets print as they are.
stderr = Console(stderr=True, highlight=False, markup=False)


def console() -> Console:
    """A console for stdout (tables, "wrote ..." lines) that, like ``stderr``, never reads user text as markup."""
    return Console(highlight=False, markup=False)


#: Seconds before a bar whose work has not advanced yet is drawn anyway.
DELAY = 0.5


class _Text(ProgressColumn):
    """A fixed-width column showing ``render_text(task)`` as plain text (no markup), cut with an ellipsis."""

    def __init__(self, width: int, render_text: Callable[[Task], str], *, style: str = "", justify: str = "left"):
        super().__init__(table_column=Column(width=width, no_wrap=True, overflow="ellipsis", justify=justify))
        self._text, self._style, self._justify = render_text, style, justify

    def render(self, task: Task) -> Text:
        return Text(self._text(task), style=self._style, no_wrap=True, overflow="ellipsis", justify=self._justify)


def _clock(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return ""
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _rate(speed: float | None) -> str:
    if not speed:
        return ""
    if speed >= 10_000:
        return f"{speed / 1000:,.0f}k/s"
    return f"{speed:,.0f}/s" if speed >= 100 else f"{speed:.1f}/s" if speed >= 10 else f"{speed:.2f}/s"


def _count(x: float) -> str:
    return f"{x:,.0f}"


class _LazyBar:
    """One progress bar, drawn from its first advance (or after ``delay`` seconds), sized to the console."""

    def __init__(self, console: Console, description: str, total: float | None, unit: str, delay: float):
        self.console, self.description, self.total, self.unit = console, description, total, unit
        self.completed: float | None = None  # last reported; the first report is the starting point
        self.first: float | None = None
        self.t0 = time.monotonic()
        self.progress: Progress | None = None
        self.task = None
        self.closed = False
        self.lock = threading.Lock()
        self.timer = threading.Timer(delay, self._show)
        self.timer.daemon = True
        self.timer.start()

    def columns(self) -> list:
        """Fixed-width columns filling at most the console's width: description, bar, done/total unit, rate,
        elapsed, ETA (only when the total is known)."""
        width = self.console.width
        unit = f" {self.unit}" if self.unit else ""
        top = _count(self.total) if self.total is not None else _count(max(self.completed or 0, 99_999))
        w_count = (2 * len(top) + 1 if self.total is not None else len(top)) + len(unit)
        fixed = [w_count, 8, 7] + ([11] if self.total is not None else [])  # count, rate, elapsed, ETA
        room = width - sum(fixed) - len(fixed) - 1  # for description + bar (and the gaps between columns)
        w_bar = max(10, min(30, room - len(self.description)))
        w_desc = min(len(self.description), room - w_bar)
        if w_desc < min(8, len(self.description)):  # a narrow terminal: the description keeps 8 columns
            w_desc = min(8, len(self.description))
            w_bar = max(3, room - w_desc)
        cols = [
            _Text(max(1, w_desc), lambda t: self.description, style="bold"),
            BarColumn(bar_width=w_bar, table_column=Column(width=w_bar, no_wrap=True)),
            _Text(
                w_count,
                lambda t: (
                    (f"{_count(t.completed)}/{_count(t.total)}" if t.total is not None else _count(t.completed)) + unit
                ),
                justify="right",
            ),
            _Text(8, lambda t: _rate(t.speed), justify="right"),
            _Text(7, lambda t: _clock(time.monotonic() - self.t0), justify="right"),
        ]
        if self.total is not None:
            cols.append(
                _Text(
                    11,
                    lambda t: (
                        f"ETA {_clock(t.time_remaining)}"
                        if t.speed and t.time_remaining is not None and not t.finished
                        else ""
                    ),
                    justify="right",
                )
            )
        return cols

    def _show(self) -> None:
        with self.lock:
            if self.closed or self.progress is not None:
                return
            self.progress = Progress(
                *self.columns(), console=self.console, transient=False, refresh_per_second=8, expand=False
            )
            self.task = self.progress.add_task("", total=self.total, completed=self.completed or 0)
            self.progress.start()

    def update(self, completed: float | None = None, advance: float | None = None, total: float | None = None) -> None:
        with self.lock:
            if total is not None:
                if self.progress is not None and self.total is None:  # now known: room for done/total and ETA
                    self.total = total
                    self.progress.columns = tuple(self.columns())
                self.total = total
            if completed is not None:
                self.completed = completed
            if advance is not None:
                self.completed = (self.completed or 0) + advance
            if self.first is None:
                self.first = self.completed
            advanced = self.completed is not None and self.completed > (self.first or 0)
            if self.progress is not None:
                self.progress.update(self.task, total=self.total, completed=self.completed)
        if self.progress is None and advanced:
            self._show()

    def close(self) -> None:
        self.timer.cancel()
        with self.lock:
            self.closed = True
            if self.progress is not None:
                self.progress.stop()


@contextlib.contextmanager
def bar(
    description: str, total: float | None, unit: str = "", enabled: bool = True, delay: float | None = None
) -> Iterator[Callable[..., None]]:
    """A progress bar on stderr with done/total, rate, elapsed time and ETA, fitting the terminal's width.

    Yields ``update(completed=None, advance=None, total=None)``. The first reported ``completed`` is the
    starting point (e.g. runs already stored); the bar is drawn once the work advances past it, or after
    ``delay`` seconds (default ``DELAY``), so an instant job draws nothing. ``description`` is plain text."""
    if not enabled:
        yield lambda **kw: None
        return
    b = _LazyBar(stderr, description, total, unit, DELAY if delay is None else delay)
    try:
        yield b.update
    finally:
        b.close()


# --------------------------------------------------------------------------- tables at 80 columns


def table(title: str, caption: str | None = None) -> Table:
    """A compact table that reads at 80 columns: a rule under the header instead of a box around every cell
    (the box costs 3 columns per column), title and caption left-aligned, wrapping at the table's width.

    Put the unit in the column header (``"shift pp"``, ``"GMV share %"``), add numbers and intervals as
    ``table.add_column(header, justify="right", no_wrap=True)`` and let only text columns wrap."""
    return Table(
        title=Text(title, style="bold"),
        caption=Text(caption) if caption else None,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        title_justify="left",
        caption_justify="left",
    )
