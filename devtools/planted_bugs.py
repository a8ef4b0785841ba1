"""Plant, one at a time, each kind of real model bug the tests must catch (PLANTS below: social exposure, boosts,
synchronous purchases, real units, access paths, events, promotions, the initial draw, the projection's horizon and
interval, the fit window) in a scratch copy of the code, run the tests that should catch it, and print which test
failed first.

    python devtools/planted_bugs.py              # all (a few minutes on two cores)
    python devtools/planted_bugs.py boost_all    # one

A plant whose edit no longer matches the source is reported as such (the code moved: update the plant), never
silently skipped. Exit status 1 if any planted bug passed every test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

REF, UNITS, EVENTS, STATS = (
    "tests/engine/test_reference.py",
    "tests/engine/test_units.py",
    "tests/engine/test_events.py",
    "tests/experiments/test_statistics.py",
)

SEQUENTIAL_OLD = "        pick = choice.gumbel_choice(V, u_pick)\n"
SEQUENTIAL_NEW = """        pick = choice.gumbel_choice(V, u_pick)
        if b.beta_social and len(idx) > 1:  # PLANTED: the second half of the shoppers sees the first half's purchases
            h = len(idx) // 2
            fb = pick[:h] >= 0
            fi, fj = idx[:h][fb], pick[:h][fb]
            sw = self.last[fi] != fj
            was = self.last[fi[sw]].astype(np.int64)
            self._update_counts(fi[sw], was, fj[sw])
            self.last[fi[sw]] = fj[sw]
            social2 = self.social_exposure(idx[h:])
            V2 = choice.utilities(self.alpha_at(t).astype(np.float32), np.log(self.price).astype(np.float32), habit[h:],
                                  social2, F[h:].astype(np.float32), promo[h:] if np.ndim(promo) else promo,
                                  beta_price=b.beta_price, beta_social=b.beta_social,
                                  beta_habit=b.beta_habit, beta_friction=b.beta_friction)
            pick[h:] = choice.gumbel_choice(V2, u_pick[h:])
            self._update_counts(fi[sw], fj[sw].astype(np.int64), was)
            self.last[fi[sw]] = was
"""

#: name -> (the bug in words, file, old text, new text, tests to run)
PLANTS: dict[str, tuple[str, str, str, str, list[str]]] = {
    "layer_other_degree": (
        "social exposure of one layer normalised by another layer's degree",
        "src/marketsim/engine/market.py",
        "(lay.inv_degree[idx, None] * w[None, :])",
        "(self.world.layers[0].inv_degree[idx, None] * w[None, :])",
        [REF],
    ),
    "boost_all": (
        "a social_boost applied to every layer",
        "src/marketsim/engine/market.py",
        "            if lay.name == layer:\n",
        "            if True:\n",
        [REF, EVENTS],
    ),
    "boost_ignored": (
        "the boost factor g_pj ignored",
        "src/marketsim/engine/market.py",
        "w = (lay.weight * self.social_factor[li]).astype(np.float32)",
        "w = (lay.weight * np.ones_like(self.social_factor[li])).astype(np.float32)",
        [REF, EVENTS],
    ),
    "sequential": (
        "purchases applied in sequential blocks instead of synchronously",
        "src/marketsim/engine/market.py",
        SEQUENTIAL_OLD,
        SEQUENTIAL_NEW,
        [REF],
    ),
    "gmv_unscaled": (
        "GMV not scaled by market size / N",
        "src/marketsim/engine/market.py",
        "money = self.basket_mean_at(t) * scale",
        "money = self.basket_mean_at(t)",
        [UNITS],
    ),
    "access_lost_unscaled": (
        "access_lost not scaled by market size / N",
        "src/marketsim/engine/market.py",
        "access_lost=self.pending_access_lost * scale",
        "access_lost=self.pending_access_lost",
        [UNITS, EVENTS],
    ),
    "buyers_unscaled": (
        "buyers not scaled by market size / N",
        "src/marketsim/engine/market.py",
        "buyers=np.bincount(bj, minlength=R) * scale",
        "buyers=np.bincount(bj, minlength=R)",
        [UNITS],
    ),
    "basket_correction": (
        "a basket whose mean is off by the log-normal correction",
        "src/marketsim/engine/population.py",
        "rng.lognormal(-0.5 * sigma**2, sigma, size=n)",
        "rng.lognormal(0.0, sigma, size=n)",
        [UNITS],
    ),
    "link_gives_native": (
        "a link purchase giving native access instead of sso(p)",
        "src/marketsim/engine/market.py",
        "self.access[li, lj] = SSO + self.link_provider(li, lj)",
        "self.access[li, lj] = NATIVE",
        [REF, EVENTS],
    ),
    "accounts_count_links": (
        "accounts_created also counting links",
        "src/marketsim/engine/market.py",
        "accounts_created = np.bincount(bj[new_native], minlength=R) * scale",
        "accounts_created = np.bincount(bj[new_native | linked], minlength=R) * scale",
        [UNITS, REF],
    ),
    "add_login_noop": (
        "add_login doing nothing",
        "src/marketsim/scenario/eventtypes.py",
        "        m.accepts[m.provider_index[self.provider], m.retailer_index[self.retailer]] = True\n",
        "",
        [EVENTS],
    ),
    "remove_login_keeps_accepted": (
        "remove_login leaving the provider accepted",
        "src/marketsim/scenario/eventtypes.py",
        "        m.accepts[p, j] = False\n",
        "",
        [EVENTS],
    ),
    "promotion_everyone": (
        "a promotion reaching everyone instead of its audience",
        "src/marketsim/engine/market.py",
        "promo[:, j] += util if aud < 0 else util * self.world.holds[idx, aud]",
        "promo[:, j] += util",
        [EVENTS, REF],
    ),
    "promotion_until_inclusive": (
        "a promotion's until made inclusive",
        "src/marketsim/engine/market.py",
        "p[3] is None or t < p[3]",
        "p[3] is None or t <= p[3]",
        [EVENTS, REF],
    ),
    "initial_sso_not_holders": (
        "initial SSO customers not made holders of their provider",
        "src/marketsim/engine/population.py",
        '            holds[sel, p] = True  # "those customers hold p"\n',
        "",
        [REF, EVENTS],
    ),
    "horizon_first_step": (
        "the projection reporting the first step instead of the horizon",
        "src/marketsim/experiments/projection.py",
        "return self.arrays[arm][metric][:, :, -1, :]",
        "return self.arrays[arm][metric][:, :, 0, :]",
        [STATS],
    ),
    "z_not_t": (
        "the 95% interval using z instead of t",
        "src/marketsim/experiments/uncertainty.py",
        "stats.t.ppf(0.975, R - 1)",
        "stats.norm.ppf(0.975)",
        [STATS],
    ),
    "window_past_event": (
        "the calibration window running past the first event",
        "src/marketsim/scenario/core.py",
        "first = min((e.date for e in self.events), default=None)",
        "first = None",
        ["tests/fit/test_calibrate.py"],
    ),
}


def plant(name: str) -> tuple[bool, str]:
    what, rel, old, new, tests = PLANTS[name]
    with tempfile.TemporaryDirectory(prefix=f"plant-{name}-") as tmp:
        for part in ("src", "tests"):
            shutil.copytree(ROOT / part, Path(tmp) / part, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(ROOT / "pyproject.toml", tmp)
        src = (Path(tmp) / rel).read_text()
        if src.count(old) != 1:
            return False, f"plant does not apply: {rel} has {src.count(old)} copies of the text to change"
        (Path(tmp) / rel).write_text(src.replace(old, new))
        env = dict(os.environ, PYTHONPATH=str(Path(tmp) / "src"), MARKETSIM_FIT_CACHE=str(Path(tmp) / "fitcache"))
        # one process (-p no:xdist): the first failure is then the first failing test in file order
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-x",
                "-q",
                "-p",
                "no:cacheprovider",
                "-p",
                "no:xdist",
                "-m",
                "not browser",
                *tests,
            ],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
        )
        failed = re.findall(r"^FAILED (\S+)", r.stdout, re.M)
        if r.returncode == 1 and failed:
            return True, failed[0]
        if r.returncode == 0:
            return False, "every test passed"
        return False, f"pytest exit {r.returncode}: {r.stdout[-400:]}"


def main(argv: list[str]) -> int:
    names = argv or list(PLANTS)
    unknown = [n for n in names if n not in PLANTS]
    if unknown:
        print(f"unknown plant(s) {unknown}; known: {', '.join(PLANTS)}", file=sys.stderr)
        return 2
    missed = 0
    for name in names:
        caught, how = plant(name)
        missed += not caught
        print(f"{'caught' if caught else 'MISSED'}  {name:28s} {PLANTS[name][0]}: {how}", flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
