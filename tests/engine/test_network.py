"""Graph generators: CSR invariants and the known statistics of each model."""

import numpy as np
import pytest

from marketsim.engine import network as nw


def _check_csr(g):
    deg = g.degree()
    assert g.indptr[0] == 0 and (np.diff(g.indptr) >= 0).all() and g.indptr[-1] == len(g.indices)
    rows = np.repeat(np.arange(g.n), deg)
    assert (rows != g.indices).all(), "self-loop"
    keys = rows.astype(np.int64) * g.n + g.indices
    assert (np.diff(keys) > 0).all(), "rows sorted, no duplicates"
    back = g.indices.astype(np.int64) * g.n + rows
    assert np.array_equal(np.sort(back), keys), "symmetric"
    assert g.indices.dtype == np.int32 and g.indptr.dtype == np.int64


def test_from_edges_known_result():
    g = nw.from_edges(4, np.array([0, 1, 1, 2, 3, 0]), np.array([1, 0, 2, 2, 0, 1]))
    assert g.indptr.tolist() == [0, 2, 4, 5, 6] and g.indices.tolist() == [1, 3, 0, 2, 1, 0]


@pytest.mark.parametrize(
    "make",
    [
        lambda r: nw.barabasi_albert(20_000, 4, r),
        lambda r: nw.watts_strogatz(20_000, 8, 0.2, r),
        lambda r: nw.erdos_renyi(20_000, 6.0, r),
    ],
)
def test_invariants_and_determinism(make):
    g = make(np.random.default_rng(1))
    _check_csr(g)
    g2 = make(np.random.default_rng(1))
    assert np.array_equal(g.indices, g2.indices) and np.array_equal(g.indptr, g2.indptr)
    assert not np.array_equal(g.indices, make(np.random.default_rng(2)).indices)


def test_barabasi_albert_degrees():
    m = 5
    g = nw.barabasi_albert(50_000, m, np.random.default_rng(0))
    deg = g.degree()
    assert abs(deg.mean() - 2 * m) / (2 * m) < 0.03  # 2m minus the few dropped duplicates
    assert (deg >= 1).all() and np.mean(deg >= m) > 0.95
    assert deg.max() > 20 * m  # heavy tail (hubs), absent from ER/WS of the same mean
    # tail exponent: P(K >= k) ~ k^-(gamma-1) with gamma = 3 -> log-log CCDF slope about -2
    ks = np.array([2 * m, 8 * m])
    ccdf = np.array([(deg >= k).mean() for k in ks])
    slope = np.diff(np.log(ccdf)) / np.diff(np.log(ks))
    assert -2.6 < slope[0] < -1.5


def test_watts_strogatz_ring_exact():
    k = 6
    g = nw.watts_strogatz(1000, k, 0.0, np.random.default_rng(0))
    assert (g.degree() == k).all()
    assert g.neighbours(0).tolist() == [1, 2, 3, 997, 998, 999]
    assert abs(_clustering(g) - 3 * (k - 2) / (4 * (k - 1))) < 1e-12
    r = nw.watts_strogatz(5000, k, 1.0, np.random.default_rng(0))
    assert _clustering(r) < 0.01 and abs(r.degree().mean() - k) < 0.05


def test_erdos_renyi_poisson():
    g = nw.erdos_renyi(100_000, 8.0, np.random.default_rng(4))
    deg = g.degree()
    assert abs(deg.mean() - 8.0) < 0.05
    assert abs(deg.var() / deg.mean() - 1) < 0.05


def test_relabel():
    g = nw.from_edges(3, np.array([0, 1]), np.array([1, 2]))
    h = g.relabel(np.array([2, 5, 7]), 9)
    _check_csr(h)
    assert h.degree().tolist() == [0, 0, 1, 0, 0, 2, 0, 1, 0]
    assert h.neighbours(5).tolist() == [2, 7]


def test_generate_dispatch_and_errors():
    rng = np.random.default_rng(0)
    assert nw.generate("erdos_renyi", 100, {"mean_degree": 4}, rng).n == 100
    with pytest.raises(ValueError, match="unknown network model 'smallworld'"):
        nw.generate("smallworld", 10, {}, rng)
    with pytest.raises(ValueError, match="even k"):
        nw.generate("watts_strogatz", 10, {"k": 3, "rewire": 0.1}, rng)
    assert nw.barabasi_albert(0, 3, rng).n == 0 and nw.watts_strogatz(1, 2, 0.1, rng).n_edges == 0


def _clustering(g) -> float:
    """Mean local clustering coefficient from CSR (small graphs only)."""
    out = []
    for v in range(g.n):
        nb = g.neighbours(v)
        d = len(nb)
        if d < 2:
            out.append(0.0)
            continue
        s = set(nb.tolist())
        links = sum(len(s.intersection(g.neighbours(u).tolist())) for u in nb) / 2
        out.append(links / (d * (d - 1) / 2))
    return float(np.mean(out))


def _from_edges_by_sorting(n, src, dst):
    """The CSR graph by another route: sort the keys of both directions, drop repeats and self-loops."""
    keep = src != dst
    src, dst = src[keep], dst[keep]
    keys = np.unique(np.concatenate([src * n + dst, dst * n + src]))
    rows = keys // n
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])
    return indptr, (keys - rows * n).astype(np.int32)


@pytest.mark.parametrize("seed", range(4))
def test_compiled_csr_build_equals_sorting_the_ties(seed):
    """engine.kernel.csr_from_edges against sorting every tie's key: random multigraphs with self-loops and
    repeated ties, isolated nodes, and the empty graph; rows of a few ties (sorted by insertion) and of many (a
    hub's: by numpy's sort)."""
    rng = np.random.default_rng(seed)
    for n, E in ((1, 0), (5, 0), (7, 30), (200, 900), (3000, 12000), (40, 1500)):
        src, dst = rng.integers(0, n, E), rng.integers(0, n, E)
        g = nw.from_edges(n, src, dst)
        indptr, indices = _from_edges_by_sorting(n, src, dst)
        np.testing.assert_array_equal(g.indptr, indptr)
        np.testing.assert_array_equal(g.indices, indices)
        assert g.indices.dtype == np.int32 and g.indptr.dtype == np.int64
