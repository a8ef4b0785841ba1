"""Every marketsim figure shows its text as written: a ``$`` in an event id, a retailer name or a sweep label
is a dollar sign, never TeX math (``$\\notacommand$`` would otherwise stop ``run``, ``project`` or ``analyze``
with a matplotlib parse error), and no text is typeset by LaTeX.

One mechanism does it for all figures: a function that makes a figure is decorated with
:func:`figure_function` (its body runs under :data:`STYLE`, so every text is plain from its creation, which
``tight_layout`` inside the function needs) and makes the figure with :func:`marketsim.figures.plots.subplots` (a
:class:`marketsim.figures.plots.PlainTextFigure`, drawn under :data:`STYLE` too, so tick labels made while the figure
is saved are plain as well). This module imports nothing heavy: matplotlib is imported when a figure is made.
"""

from __future__ import annotations

import functools

#: The matplotlib settings every marketsim figure is built and drawn with: text is never parsed as math
#: (``text.parse_math``, matplotlib >= 3.5) nor typeset by LaTeX (``text.usetex``).
STYLE = {"text.parse_math": False, "text.usetex": False}


def figure_function(fn):
    """Decorator of every function that makes a figure: its body runs under :data:`STYLE`, and it must return a
    :class:`marketsim.figures.plots.PlainTextFigure` (made by :func:`marketsim.figures.plots.subplots`), else TypeError (a
    programming error, met by any test that makes the figure)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import matplotlib

        with matplotlib.rc_context(STYLE):
            fig = fn(*args, **kwargs)
        # PlainTextFigure says what it is (checked by a class flag, so that this module need not import plots)
        if not getattr(type(fig), "plain_text_figure", False):
            raise TypeError(f"{fn.__qualname__} must make its figure with marketsim.figures.plots.subplots")
        return fig

    wrapper.plain_text = True  # marks a figure function: tests check that every *_figure function has it
    return wrapper
