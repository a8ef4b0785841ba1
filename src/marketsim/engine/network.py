"""Social graphs (docs/model.md section 3) as CSR arrays, with vectorised generators.

Every generator takes a :class:`numpy.random.Generator` (spawned from the scenario seed) and uses no
other randomness. All three are vectorised numpy: a million-node layer builds in about a second
(``benchmarks/bench.py``), where networkx takes seconds per layer and python-igraph needs its own
global random number generator, which would break reproducibility.

Graphs are simple and undirected: each edge is stored in both rows, rows are sorted, and self-loops
and duplicate edges produced by a generator are dropped (documented per generator).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from marketsim.engine import kernel


@dataclass(frozen=True)
class CSRGraph:
    """Compressed sparse rows: the neighbours of v are ``indices[indptr[v]:indptr[v+1]]`` (sorted)."""

    indptr: np.ndarray  # int64 (n+1,)
    indices: np.ndarray  # int32 (2 * edges,)

    @property
    def n(self) -> int:
        return len(self.indptr) - 1

    @property
    def n_edges(self) -> int:
        return len(self.indices) // 2

    def degree(self) -> np.ndarray:
        return np.diff(self.indptr)

    def neighbours(self, v: int) -> np.ndarray:
        return self.indices[self.indptr[v] : self.indptr[v + 1]]

    def relabel(self, members: np.ndarray, n_total: int) -> CSRGraph:
        """This graph placed in a larger id space: local node i becomes ``members[i]`` (sorted ascending);
        nodes not in ``members`` get degree 0. Used to put a layer over the holders of an account into the
        global consumer index space."""
        members = np.asarray(members, dtype=np.int64)
        if len(members) != self.n:
            raise ValueError(f"members has {len(members)} ids for a graph of {self.n} nodes")
        if len(members) > 1 and np.any(np.diff(members) <= 0):
            raise ValueError("members must be strictly increasing")
        deg = np.zeros(n_total, dtype=np.int64)
        deg[members] = self.degree()
        indptr = np.zeros(n_total + 1, dtype=np.int64)
        np.cumsum(deg, out=indptr[1:])
        return CSRGraph(indptr, members[self.indices].astype(np.int32))


def from_edges(n: int, src: np.ndarray, dst: np.ndarray) -> CSRGraph:
    """Simple undirected CSR graph on ``n`` nodes from an edge list: symmetrised, self-loops and
    duplicates dropped, rows sorted (compiled: :func:`marketsim.engine.kernel.csr_from_edges`)."""
    indptr, indices = kernel.csr_from_edges(
        int(n), np.ascontiguousarray(src, dtype=np.int64), np.ascontiguousarray(dst, dtype=np.int64)
    )
    return CSRGraph(indptr, indices)


def barabasi_albert(n: int, m: int, rng: np.random.Generator) -> CSRGraph:
    """Preferential attachment (Barabasi & Albert 1999), in the edge-list form of Batagelj & Brandes
    (2005, "Efficient generation of large random networks", Phys. Rev. E 71, 036113, algorithm
    ``preferential``): edge e = v*m + i of new node v gets as its other end the node at a uniformly
    chosen earlier position of the endpoint list, i.e. a node chosen with probability proportional to
    its degree. The positions are resolved without a Python loop by pointer jumping: a position that
    points at another "other end" position takes that position's pointer, until all point at a
    "new node" position (a few dozen vectorised rounds at n = 10^6).

    The first node's edges are self-loops in that algorithm; they and the duplicate edges it makes are
    dropped, so the mean degree is slightly under 2m (about 1.9m at m = 5).
    """
    if m < 1:
        raise ValueError(f"barabasi_albert needs m >= 1, got {m}")
    E = n * m
    if E == 0:
        return from_edges(n, np.empty(0, np.int64), np.empty(0, np.int64))
    e = np.arange(E, dtype=np.int64)
    # pointer of edge e's far end: a uniform position in [0, 2e] of the endpoint list M,
    # where M[2e] = node of edge e and M[2e+1] = far end of edge e.
    ptr = (rng.random(E) * (2 * e + 1)).astype(np.int64)
    np.minimum(ptr, 2 * e, out=ptr)
    todo = np.flatnonzero(ptr & 1)
    while len(todo):
        ptr[todo] = ptr[(ptr[todo] - 1) >> 1]
        todo = todo[(ptr[todo] & 1).astype(bool)]
    far = (ptr >> 1) // m
    return from_edges(n, e // m, far)


def watts_strogatz(n: int, k: int, rewire: float, rng: np.random.Generator) -> CSRGraph:
    """Small world (Watts & Strogatz 1998): a ring where each node links to k/2 neighbours on each side;
    each edge's far end is rewired, with probability ``rewire``, to a uniform node other than itself.
    Rewiring can create a duplicate edge, which is dropped (mean degree slightly under k for rewire > 0)."""
    if k % 2 or k < 0:
        raise ValueError(f"watts_strogatz needs an even k >= 0, got {k}")
    if not 0 <= rewire <= 1:
        raise ValueError(f"watts_strogatz needs 0 <= rewire <= 1, got {rewire}")
    if n <= k:
        if n <= 1:
            return from_edges(n, np.empty(0, np.int64), np.empty(0, np.int64))
        a, b = np.triu_indices(n, 1)  # too few nodes for the ring: a complete graph
        return from_edges(n, a, b)
    src = np.repeat(np.arange(n, dtype=np.int64), k // 2)
    dst = (src + np.tile(np.arange(1, k // 2 + 1, dtype=np.int64), n)) % n
    move = rng.random(len(src)) < rewire
    dst[move] = (src[move] + rng.integers(1, n, size=int(move.sum()))) % n
    return from_edges(n, src, dst)


def erdos_renyi(n: int, mean_degree: float, rng: np.random.Generator) -> CSRGraph:
    """Random graph G(n, M) (Erdos & Renyi 1959) with M = round(n * mean_degree / 2) uniform pairs of
    distinct nodes; the few duplicate pairs of a sparse graph are dropped."""
    if mean_degree < 0:
        raise ValueError(f"erdos_renyi needs mean_degree >= 0, got {mean_degree}")
    M = int(round(n * mean_degree / 2)) if n > 1 else 0
    src = rng.integers(0, max(n, 1), size=M)
    dst = (src + rng.integers(1, max(n, 2), size=M)) % max(n, 1)
    return from_edges(n, src, dst)


#: Explicit registry of network models a scenario may name.
GENERATORS: dict[str, Callable[..., CSRGraph]] = {
    "barabasi_albert": barabasi_albert,
    "watts_strogatz": watts_strogatz,
    "erdos_renyi": erdos_renyi,
}


def generate(model: str, n: int, params: dict, rng: np.random.Generator) -> CSRGraph:
    """Build a graph of ``model`` (a key of :data:`GENERATORS`) on n nodes with keyword ``params``."""
    if model not in GENERATORS:
        raise ValueError(f"unknown network model {model!r}; allowed: {', '.join(GENERATORS)}")
    kw = {k: (int(v) if k in ("m", "k") else float(v)) for k, v in params.items()}
    try:
        return GENERATORS[model](n, rng=rng, **kw)
    except TypeError as e:
        raise ValueError(f"bad parameters for {model}: {e}") from None
