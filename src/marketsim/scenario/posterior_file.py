"""The posterior file ``marketsim fit`` stores (docs/model.md section 8), read and checked without the scenario it
was fitted for: its format, keys and checksum, the kernel's sigma, the samples and their weights, the effective
sample size floor. :mod:`marketsim.experiments.posterior` adds the checks against that scenario; the validator
uses it to read a ``prior: {posterior: FILE, parameter: PATH}`` (a prior taken from another scenario's posterior).

The optional ``fitted`` block (in the checksum when present) says where the posterior comes from: the scenario's
name and file, the fit's cut-off, and per parameter the field's unit and allowed interval. An *ex-post* posterior
(``marketsim fit --ex-post --until DATE``, docs/model.md section 8, "Effects learned from history") records there
``ex_post: true``, ``conditioned_until`` (DATE) and ``figures``: the held-out figures (source, period) its weights
saw. :func:`ex_post_refusal` says when a scenario may not take a prior from one (it would leak those figures into
that scenario's fits and back-tests); :func:`provenance` is the line ``validate`` and the projection report show.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import stat
from pathlib import Path
from typing import Any

from marketsim.runtime.digest import digest

FORMAT = "marketsim-posterior/v1"
KEYS = ("params", "samples", "weights", "sigma_pp", "priors", "report")
#: Effective-sample-size floor, absolute part (see marketsim.experiments.posterior for the reasons).
ESS_MIN = 10.0
#: ... relative part.
ESS_FRACTION = 0.05


class BadPosterior(ValueError):
    """A posterior file that must not be used; ``str()`` says why, as a phrase after "the posterior"."""


def ess_floor(k: int) -> float:
    """The smallest effective sample size a posterior of ``k`` design draws must have: max(ESS_MIN, ESS_FRACTION x k)."""
    return max(ESS_MIN, ESS_FRACTION * k)


def body_of(doc: dict) -> dict:
    """The part of a posterior document its checksum covers."""
    body = {k: doc[k] for k in KEYS}
    if "fitted" in doc:
        body["fitted"] = doc["fitted"]
    return body


def checksum(body: dict) -> str:
    return digest(body, spaced=True, default=None)


def number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def check_document(doc: Any) -> dict:
    """The checked body of a parsed posterior file, weights normalised. Raises :class:`BadPosterior`."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BadPosterior(f"is not a {FORMAT} document")
    missing = [k for k in (*KEYS, "sha256") if k not in doc]
    if missing:
        raise BadPosterior(f"lacks {', '.join(missing)}")
    body = body_of(doc)
    if doc["sha256"] != checksum(body):
        raise BadPosterior("fails its checksum (edited or corrupted)")
    sigma = body["sigma_pp"]
    if not number(sigma) or sigma <= 0:
        raise BadPosterior(f"has sigma_pp {sigma!r}, not a positive number of points")
    samples, weights = body["samples"], body["weights"]
    if not isinstance(samples, list) or not samples:
        raise BadPosterior("has no samples")
    if not isinstance(weights, list) or len(weights) != len(samples):
        raise BadPosterior(
            f"has {len(weights) if isinstance(weights, list) else 'no list of'} weights for {len(samples)} samples"
        )
    for i, w in enumerate(weights):
        if not number(w) or w < 0:
            raise BadPosterior(f"has weights[{i}] = {w!r}, not a finite non-negative number")
    if not 0 < sum(weights) < math.inf:
        raise BadPosterior(f"has weights that sum to {sum(weights):g}, not a positive finite number")
    total = sum(weights)
    return {**body, "weights": [w / total for w in weights]}


def ess(weights) -> float:
    """Effective sample size of normalised weights, 1 / sum w^2 (Kish)."""
    s = sum(w * w for w in weights)
    return 1.0 / s if s > 0 else 0.0


def read_document(path: Path) -> dict:
    """The checked body of the posterior file at ``path`` (a regular file, never a link, FIFO or folder), with
    every sample giving each parameter a finite number and the effective sample size at the floor or above."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise BadPosterior("is missing") from None
    except OSError as e:
        raise BadPosterior(f"cannot be read ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise BadPosterior("is not a regular file")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise BadPosterior(f"cannot be read ({getattr(e, 'strerror', None) or e})") from None
    except ValueError:
        raise BadPosterior("is not valid JSON (truncated or damaged)") from None
    body = check_document(doc)
    params = body["params"]
    if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
        raise BadPosterior("has no list of parameter paths")
    for i, v in enumerate(body["samples"]):
        if not isinstance(v, dict) or sorted(v) != sorted(params) or not all(number(v[p]) for p in params):
            raise BadPosterior(f"has samples[{i}] that does not give each of its parameters a finite number")
    floor = ess_floor(len(body["samples"]))
    if ess(body["weights"]) < floor:
        raise BadPosterior(
            f"is worth {ess(body['weights']):.1f} draws (effective sample size) of {len(body['samples'])}, "
            f"under the floor of {floor:g}"
        )
    ex_post_of(body.get("fitted"))  # an ex-post record, if any, is complete
    return body


def ex_post_of(fitted: Any) -> dict | None:
    """The ex-post record of a posterior's ``fitted`` block: {"until": date, "figures": [{"source", "period",
    "start", "end"}, ...]}, or None for a decision-time posterior (or a block that does not say)."""
    if not isinstance(fitted, dict) or fitted.get("ex_post") is not True:
        return None
    try:
        until = dt.date.fromisoformat(str(fitted.get("conditioned_until")))
    except ValueError:
        raise BadPosterior("is marked ex_post without a valid conditioned_until date") from None
    figures = fitted.get("figures")
    if not isinstance(figures, list) or not figures or not all(isinstance(f, dict) for f in figures):
        raise BadPosterior("is marked ex_post without the list of held-out figures it saw")
    return {"until": until, "figures": figures}


def figures_text(figures: list[dict]) -> str:
    """``cecrc 2013, analysys 2014Q2``: the held-out figures an ex-post posterior saw (source, period)."""
    return ", ".join(f"{f.get('source')} {f.get('period')}" for f in figures)


def provenance(name: str, param: str, body: dict) -> str:
    """Where a prior taken from the posterior file ``name`` (its checked ``body``) comes from, one phrase without
    "; " (the resolved file splits the reason there): its scenario, file, effective sample size, draws and fit
    cut-off; for an ex-post posterior also the parameter, the held-out figures it was conditioned on and DATE.
    The file is named by its base name: the reason is part of the scenario (and its digest), and the same file
    is written with another relative path in the resolved scenario ``validate`` prints."""
    name = Path(name).name
    fitted: dict = body["fitted"] if isinstance(body.get("fitted"), dict) else {}
    scen = fitted.get("scenario") or "an unnamed scenario"
    until = fitted.get("until") or "an unrecorded date"
    n, e = len(body["samples"]), ess(body["weights"])
    post = ex_post_of(fitted)
    if post is None:
        return f"posterior of {scen} ({name}, ESS {e:.1f}, {n} draws, fitted on observations through {until})"
    return (
        f"ex-post posterior of {scen}.{param} ({name}, conditioned on the held-out {figures_text(post['figures'])}, "
        f"{n} draws, ESS {e:.1f}, until {post['until'].isoformat()}, fitted on observations through {until})"
    )


def ex_post_refusal(
    body: dict, name: str, param: str, scenario: str, decision: dt.date, held: list[tuple[str, dt.date, dt.date]]
) -> str | None:
    """Why a scenario named ``scenario`` whose decision date (its fit cut-off: ``fit_until``, else its first
    one-off event) is ``decision`` and whose observations are ``held`` (source, start, end) may not take
    ``param``'s prior from the posterior ``name`` (checked ``body``), or None when it may (a decision-time
    posterior, or an ex-post one conditioned on figures up to a date on or before the decision, none of which
    this scenario holds). The ex-post posterior's own scenario, or one holding a figure it saw, is refused: its
    fits and back-tests would be scored on data the prior already saw (validation/README.md, "data discipline")."""
    fitted = body.get("fitted")
    post = ex_post_of(fitted)
    if post is None:
        return None
    assert isinstance(fitted, dict)
    seen = {(str(f.get("source")), str(f.get("start")), str(f.get("end"))) for f in post["figures"]}
    mine = [(s, a, b) for s, a, b in held if (s, a.isoformat(), b.isoformat()) in seen]
    if fitted.get("scenario") == scenario or mine:
        why = "of this same scenario" if fitted.get("scenario") == scenario else "of figures this scenario holds"
        return (
            f"{param} in {name} is an ex-post posterior {why} (conditioned on the held-out "
            f"{figures_text(post['figures'])}): its fits, back-tests and projections would be scored on data the "
            f"prior already saw; what would be right: the decision-time posterior (`marketsim fit` without --ex-post) "
            f"or a prior of its own"
        )
    if decision < post["until"]:
        return (
            f"{param} in {name} is an ex-post posterior conditioned on figures up to {post['until'].isoformat()}, "
            f"after this scenario's decision on {decision.isoformat()} (its fit cut-off: fit_until, else its first "
            f"one-off event); what would be right: fit_until on or after {post['until'].isoformat()}, or a prior of "
            f"its own"
        )
    return None
