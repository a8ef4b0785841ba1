"""The compiled step (engine.kernel) against the numpy path (Market(kernel="numpy"), which the reference tests
check term by term against tests/engine/refmodel.py): from the same seed, the same choices, the same state after
every step (last retailer, access, baskets, route uniforms, neighbour counts) and the same counters, exactly; the
expected values (float32 probabilities summed in another order) to 1e-6. Run on the reference markets, which
switch every feature and every kind of event on, through the burn-in pilot and warm-up as well."""

from __future__ import annotations

import numpy as np
import pytest

from marketsim.engine.market import Market
from marketsim.engine.population import build_world
from marketsim.scenario.core import parse_text

from .test_reference import REFERENCE_YAML
from .test_reference_moves import MOVES_YAML

NO_TIES_YAML = REFERENCE_YAML.replace(
    "behaviour: {beta_price: 1.5, beta_social: 0.9,", "behaviour: {beta_price: 1.5, beta_social: 0,"
)


def _state(m: Market) -> dict:
    return {
        "last": m.last,
        "access": m.access,
        "basket": m.basket,
        "login_pref": m.login_pref,
        "route_weight": m.route_weight,
        **{f"counts{li}": c for li, c in enumerate(m.counts)},
    }


EXACT = ("shoppers", "buyers", "gmv", "revenue", "accounts_created", "logins_linked", "access_lost", "flows")


@pytest.mark.parametrize("text", [REFERENCE_YAML, MOVES_YAML, NO_TIES_YAML], ids=["reference", "moves", "no-ties"])
@pytest.mark.parametrize("track", [True, False], ids=["expected", "sampled"])
def test_compiled_step_equals_the_numpy_path(text, track):
    sc = parse_text(text)
    alpha = np.array([r.attractiveness for r in sc.retailers])
    world = build_world(sc)
    a = Market(sc, world, alpha, sc.seed, track_expected=track, kernel="numpy")
    b = Market(sc, world, alpha, sc.seed, track_expected=track, kernel="compiled")
    assert a.pilot_steps > 0 and sc.calendar.warmup > 0  # the pilot and warm-up ran through each path
    for t in range(sc.calendar.steps + 4):
        for key, x in _state(a).items():
            np.testing.assert_array_equal(_state(b)[key], x, err_msg=f"{key} before step {t}")
        ra, rb = a.step(), b.step()
        for key in EXACT:
            np.testing.assert_array_equal(getattr(rb, key), getattr(ra, key), err_msg=f"{key} at step {t}")
        np.testing.assert_array_equal(rb.lost_login_last, ra.lost_login_last)
        assert rb.newcomers == ra.newcomers
        for x, y in zip(a.last_purchases, b.last_purchases, strict=True):
            np.testing.assert_array_equal(y, x)
        if track:
            np.testing.assert_allclose(rb.expected_gmv, ra.expected_gmv, rtol=1e-6)
            np.testing.assert_allclose(rb.expected_buyers, ra.expected_buyers, rtol=1e-6)
        else:
            assert ra.expected_gmv is None and rb.expected_gmv is None
    assert a.moves == b.moves and a.login_losses == b.login_losses
    assert len(a.fired) == len(b.fired)


def test_the_compiled_step_keeps_neighbour_counts_exact():
    """The incremental counts the compiled pass keeps equal a recount from scratch after every step."""
    sc = parse_text(MOVES_YAML)
    m = Market(sc, build_world(sc), np.array([r.attractiveness for r in sc.retailers]), sc.seed)
    for _ in range(sc.calendar.steps):
        m.step()
        assert all(np.array_equal(c, r) for c, r in zip(m.counts, m.recount(), strict=True))


def test_an_unknown_kernel_is_refused():
    sc = parse_text(REFERENCE_YAML)
    with pytest.raises(ValueError, match="kernel must be one of compiled, numpy"):
        Market(sc, build_world(sc), np.zeros(len(sc.retailers)), sc.seed, kernel="cuda")


def test_markets_sharing_a_seed_take_the_same_draws_from_the_memo(monkeypatch):
    """engine.market keeps a process's recent step draws by the generator's state: a second market on the same
    seed (other values) takes them from there and ends where drawing them itself would, number for number."""
    from marketsim.engine import market as mk

    sc = parse_text(REFERENCE_YAML)
    world = build_world(sc)
    alpha = np.array([r.attractiveness for r in sc.retailers])

    def run(memo, a):
        monkeypatch.setattr(mk, "_STEP_DRAWS", memo)
        m = Market(sc, world, a, sc.seed, settle=False)
        recs = [m.step() for _ in range(6)]
        return m, recs, m.rng.bit_generator.state

    memo = mk._StepDrawMemo()
    run(memo, alpha + 0.3)  # fills the memo (no event of this market changes the shopping rate)
    hits_before = len(memo.memo)
    m_hit, recs_hit, st_hit = run(memo, alpha)
    assert len(memo.memo) == hits_before > 0  # every draw came from the memo
    m_own, recs_own, st_own = run(mk._StepDrawMemo(budget=0), alpha)  # draws everything itself
    assert st_hit == st_own
    np.testing.assert_array_equal(m_hit.last, m_own.last)
    np.testing.assert_array_equal(m_hit.access, m_own.access)
    for a, b in zip(recs_hit, recs_own, strict=True):
        np.testing.assert_array_equal(a.gmv, b.gmv)


@pytest.mark.parametrize("seed", range(3))
def test_neighbour_counts_equal_the_adjacency_matrix_times_the_choices(seed):
    """engine.kernel.neighbour_counts (the full recount the incremental counts are checked against) by another
    route: the sparse adjacency matrix times the one-hot matrix of last retailers (none: a zero row)."""
    import scipy.sparse as sp

    from marketsim.engine import kernel, network

    rng = np.random.default_rng(seed)
    n, R = 3000, 4
    g = network.from_edges(n, rng.integers(0, n, 9000), rng.integers(0, n, 9000))
    last = rng.integers(-1, R, n).astype(np.int16)
    adj = sp.csr_matrix((np.ones(len(g.indices)), g.indices, g.indptr), shape=(n, n))
    onehot = np.zeros((n, R))
    onehot[last >= 0, last[last >= 0]] = 1
    np.testing.assert_array_equal(kernel.neighbour_counts(g.indptr, g.indices, last, R), adj @ onehot)
