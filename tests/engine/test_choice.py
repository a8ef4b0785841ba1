"""The decision rule against hand-computed values."""

import math

import numpy as np

from marketsim.engine import choice
from marketsim.engine.choice import MIGRATE, NATIVE, NONE, SSO

COSTS = dict(f_native=0.2, f_sso=0.0, f_link=0.5, f_create=3.0)


def test_friction_each_access_state():
    # providers: 0 = weibo, 1 = qq; retailers: 0 accepts qq, 1 accepts weibo (and offers migration at 1.0)
    accepts = np.array([[False, True], [True, False]])
    access = np.array(
        [
            [NATIVE, NONE],  # native at 0; nothing at 1, holds weibo -> link at 1
            [SSO + 1, SSO + 1],  # sso(qq) at 0 works; sso(qq) at 1 is not accepted -> no access
            [NONE, MIGRATE],  # none at 0 without qq -> create; migrate at 1: min(1.0, link 0.5) -> link
            [NONE, MIGRATE],  # same but holds nothing: migrate at 1 costs 1.0 (< create)
        ],
        dtype=np.int16,
    )
    holds = np.array([[True, False], [False, True], [True, False], [False, False]])
    F, path = choice.friction(access, holds, accepts, f_migrate=np.array([np.inf, 1.0]), **COSTS)
    assert F.tolist() == [[0.2, 0.5], [0.0, 3.0], [3.0, 0.5], [3.0, 1.0]]
    assert path.tolist() == [
        [choice.PATH_NATIVE, choice.PATH_LINK],
        [choice.PATH_SSO, choice.PATH_CREATE],
        [choice.PATH_CREATE, choice.PATH_LINK],
        [choice.PATH_CREATE, choice.PATH_MIGRATE],
    ]


def test_can_link_matches_matrix_product():
    rng = np.random.default_rng(0)
    for P in (1, 3, 8, 9):
        holds = rng.random((200, P)) < 0.3
        accepts = rng.random((P, 4)) < 0.4
        assert (choice.can_link(holds, accepts) == ((holds.astype(int) @ accepts.astype(int)) > 0)).all()


def test_logit_probabilities_closed_form_and_stable():
    V = np.array([[0.0, 1.0, -1.0], [700.0, 699.0, -5.0]])
    P = choice.logit_probabilities(V)
    e = [1, 1, math.e, math.exp(-1)]
    assert np.allclose(P[0], np.array(e) / sum(e))
    assert np.isfinite(P).all() and np.allclose(P.sum(axis=1), 1)
    assert np.allclose(P[1, 1] / P[1, 2], math.e) and P[1, 0] < 1e-300 + 1e-30


def test_gumbel_choice_frequencies_are_logit():
    rng = np.random.default_rng(3)
    V = np.array([0.5, -1.0, 1.2])
    n = 200_000
    draws = choice.gumbel_choice(np.tile(V, (n, 1)), rng.random((n, 4), dtype=np.float32))
    p = np.exp(np.r_[0.0, V]) / np.exp(np.r_[0.0, V]).sum()
    freq = np.bincount(draws + 1, minlength=4) / n
    assert np.all(np.abs(freq - p) < 4 * np.sqrt(p * (1 - p) / n)), (freq, p)


def test_gumbel_choice_coupling():
    """Same uniforms: lowering one option's utility moves only consumers who were choosing it."""
    rng = np.random.default_rng(5)
    u = rng.random((50_000, 3), dtype=np.float32)
    V = np.tile([0.3, 0.1], (50_000, 1))
    V2 = V.copy()
    V2[:, 1] -= 0.5
    a, b = choice.gumbel_choice(V, u), choice.gumbel_choice(V2, u)
    moved = a != b
    assert moved.any() and (a[moved] == 1).all() and (b[moved] != 1).all()


def test_utilities_formula():
    V = choice.utilities(
        np.array([1.0, 2.0]),
        np.log(np.array([1.0, 2.0])),
        np.array([[1.0, 0.0]]),
        np.array([[0.5, 0.25]]),
        np.array([[0.2, 3.0]]),
        np.array([[0.0, 0.1]]),
        beta_price=2.0,
        beta_social=1.0,
        beta_habit=1.5,
        beta_friction=1.0,
    )
    assert np.allclose(V, [[1 + 0.5 + 1.5 - 0.2, 2 - 2 * math.log(2) + 0.25 - 3.0 + 0.1]])
