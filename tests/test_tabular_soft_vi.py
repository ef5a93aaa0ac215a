"""Tests of tabular_soft_vi.py against independent oracles.

The oracles: soft and hard value iteration and policy evaluation written plainly in this file
(Python loops over states and actions, `math` instead of numpy), closed forms (a bandit with a
self-loop, the shortest path of CliffWalking), the numbers printed in Sutton & Barto's book for
the grid world of Example 3.5, the theorems (contraction, SAC Lemma 2, bounds), and Monte-Carlo
rollouts in the real gymnasium environments.
"""

import json
import math
import os
import subprocess
import sys
from fractions import Fraction

import gymnasium as gym
import numpy as np
import pytest

import tabular_soft_vi as tsv

SCRIPT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tabular_soft_vi.py"
)


# ------------------------------------------------------------------------- independent oracles
def random_mdp(seed, num_states=6, num_actions=3):
    rng = np.random.default_rng(seed)
    P = rng.random((num_states, num_actions, num_states)) ** 3  # uneven, like real dynamics
    P /= P.sum(axis=2, keepdims=True)
    return P, rng.normal(size=(num_states, num_actions))


def plain_soft_max(values, alpha):
    """α·log Σ exp(x/α) with `math`, max shifted out; max at α = 0."""
    top = max(values)
    if alpha == 0:
        return top
    return top + alpha * math.log(math.fsum(math.exp((x - top) / alpha) for x in values))


def plain_value_iteration(P, R, gamma, alpha, tol=1e-14):
    """Soft (or, at α = 0, hard) value iteration with loops over lists; returns Q [S, A]."""
    num_states, num_actions = len(R), len(R[0])
    q = [[0.0] * num_actions for _ in range(num_states)]
    while True:
        v = [plain_soft_max(q[s], alpha) for s in range(num_states)]
        new = [
            [
                R[s][a] + gamma * math.fsum(P[s][a][t] * v[t] for t in range(num_states))
                for a in range(num_actions)
            ]
            for s in range(num_states)
        ]
        change = max(
            abs(new[s][a] - q[s][a]) for s in range(num_states) for a in range(num_actions)
        )
        q = new
        if change < tol * max(1.0, max(abs(x) for row in q for x in row)):
            return np.array(q)


def plain_policy_evaluation(P, R, pi, gamma, alpha, tol=1e-13):
    """Iterative soft policy evaluation v ← Σ_a π (R + α(−log π) + γ Σ P v) with loops."""
    num_states, num_actions = len(R), len(R[0])
    v = [0.0] * num_states
    while True:
        new = [
            math.fsum(
                pi[s][a]
                * (
                    R[s][a]
                    - alpha * math.log(pi[s][a])
                    + gamma * math.fsum(P[s][a][t] * v[t] for t in range(num_states))
                )
                for a in range(num_actions)
                if pi[s][a] > 0
            )
            for s in range(num_states)
        ]
        change = max(abs(x - y) for x, y in zip(new, v, strict=True))
        v = new
        if change < tol:
            return np.array(v)


def plain_episodic_soft_values(table, num_states, num_actions, gamma, alpha, sweeps):
    """Soft value iteration straight on gymnasium's P[s][a] = [(p, s', r, terminated)], with the
    episodic backup Q(s,a) = Σ p·(r + γ·(1 − terminated)·V(s')) — no absorbing-state model."""
    v = [0.0] * num_states
    for _ in range(sweeps):
        q = [
            [
                math.fsum(
                    p * (r + gamma * (0.0 if done else v[t])) for p, t, r, done in table[s][a]
                )
                for a in range(num_actions)
            ]
            for s in range(num_states)
        ]
        v = [plain_soft_max(q[s], alpha) for s in range(num_states)]
    return np.array(v), np.array(q)


def exact_hard_q(P, R, gamma):
    """Q* at α = 0 in rational arithmetic, exactly: policy iteration from 'action 0 everywhere',
    each evaluation v = (I − γ·P_π)⁻¹ r_π by Gauss-Jordan elimination over Fractions (a float is
    an exact rational, so this is the Q* of the very MDP the solver sees). Returns [[Fraction]]."""
    num_states, num_actions = len(R), len(R[0])
    P = [[[Fraction(x) for x in row] for row in block] for block in P]
    R = [[Fraction(x) for x in row] for row in R]
    gamma, policy = Fraction(gamma), [0] * num_states
    while True:
        rows = [
            [Fraction(int(s == t)) - gamma * P[s][policy[s]][t] for t in range(num_states)]
            + [R[s][policy[s]]]
            for s in range(num_states)
        ]
        for col in range(num_states):
            pivot = next(r for r in range(col, num_states) if rows[r][col] != 0)
            rows[col], rows[pivot] = rows[pivot], rows[col]
            rows[col] = [x / rows[col][col] for x in rows[col]]
            for r in range(num_states):
                if r != col and rows[r][col] != 0:
                    rows[r] = [
                        x - rows[r][col] * y for x, y in zip(rows[r], rows[col], strict=True)
                    ]
        v = [rows[s][num_states] for s in range(num_states)]
        q = [
            [R[s][a] + gamma * sum(P[s][a][t] * v[t] for t in range(num_states)) for a in range(num_actions)]
            for s in range(num_states)
        ]  # fmt: skip
        improved = [max(range(num_actions), key=lambda a, s=s: (q[s][a], a == policy[s])) for s in range(num_states)]  # fmt: skip
        if improved == policy:
            return q
        policy = improved


def plain_greedy_returns(table, q, num_states, gamma, steps):
    """Expected return of the greedy policy argmax_a q[s] on gymnasium's P[s][a] table, by `steps`
    sweeps of v(s) ← Σ p·(r + γ·(1 − terminated)·v(s′)): with γ = 1 and `steps` = the time limit,
    the expected undiscounted return within the time limit; with γ < 1 and many sweeps, the
    expected discounted reward."""
    policy = [max(range(len(q[s])), key=lambda a, s=s: q[s][a]) for s in range(num_states)]
    v = [0.0] * num_states
    for _ in range(steps):
        v = [
            math.fsum(p * (r + gamma * (0.0 if done else v[t])) for p, t, r, done in table[s][policy[s]])
            for s in range(num_states)
        ]  # fmt: skip
    return v


def sutton_barto_gridworld():
    """Example 3.5 of Sutton & Barto (2nd ed.): 5x5, A (0,1) → A' (4,1) with +10, B (0,3) →
    B' (2,3) with +5, moves off the grid leave the state unchanged with −1, else 0."""
    P, R = np.zeros((25, 4, 25)), np.zeros((25, 4))
    for row in range(5):
        for col in range(5):
            s = 5 * row + col
            for a, (d_row, d_col) in enumerate([(-1, 0), (1, 0), (0, 1), (0, -1)]):
                if (row, col) == (0, 1):
                    nxt, reward = 5 * 4 + 1, 10.0
                elif (row, col) == (0, 3):
                    nxt, reward = 5 * 2 + 3, 5.0
                elif 0 <= row + d_row < 5 and 0 <= col + d_col < 5:
                    nxt, reward = 5 * (row + d_row) + col + d_col, 0.0
                else:
                    nxt, reward = s, -1.0
                P[s, a, nxt], R[s, a] = 1.0, reward
    return P, R


# Figure 3.2 (right) / 3.5 (middle) of the book, typed in: v_π of the equiprobable random policy
# and v*, both at γ = 0.9, rounded to one decimal.
BOOK_RANDOM_POLICY = [
    [3.3, 8.8, 4.4, 5.3, 1.5],
    [1.5, 3.0, 2.3, 1.9, 0.5],
    [0.1, 0.7, 0.7, 0.4, -0.4],
    [-1.0, -0.4, -0.4, -0.6, -1.2],
    [-1.9, -1.3, -1.2, -1.4, -2.0],
]
BOOK_OPTIMAL = [
    [22.0, 24.4, 22.0, 19.4, 17.5],
    [19.8, 22.0, 19.8, 17.8, 16.0],
    [17.8, 19.8, 17.8, 16.0, 14.4],
    [16.0, 17.8, 16.0, 14.4, 13.0],
    [14.4, 16.0, 14.4, 13.0, 11.7],
]


# ------------------------------------------------------------------------ fixed point, contraction
@pytest.mark.parametrize("alpha", [1e-4, 0.5, 1e4])
def test_fixed_point_matches_plain_iteration_and_contracts(alpha):
    gamma = 0.9
    P, R = random_mdp(0)
    q_star = plain_value_iteration(P.tolist(), R.tolist(), gamma, alpha)
    solution = tsv.soft_value_iteration(P, R, gamma, alpha)
    scale = max(1.0, np.abs(q_star).max())
    # tol = 1e-10 is certifiable unless ‖Q‖∞ is huge (α = 1e4: ≈ 1e5, float64 floor ≈ 4e-9)
    assert solution.converged if scale < 1e3 else solution.stop_reason == "float64 floor"
    assert (
        np.abs(tsv.soft_bellman_backup(solution.q, P, R, gamma, alpha) - solution.q).max()
        <= 1e-9 * scale
    )
    assert np.abs(solution.q - q_star).max() <= 1e-9 * scale
    # Every application of T shrinks the distance to Q* by at least γ, from any start.
    q = np.random.default_rng(1).normal(size=R.shape) * 10 * scale
    error = np.abs(q - q_star).max()
    for _ in range(40):
        q = tsv.soft_bellman_backup(q, P, R, gamma, alpha)
        new_error = np.abs(q - q_star).max()
        assert new_error <= gamma * error + 1e-12 * scale
        error = new_error
    # ... and so does the residual the solver records.
    residuals = solution.residuals
    assert np.all(residuals[1:] <= gamma * residuals[:-1] + 1e-12 * scale)


@pytest.mark.parametrize("tol", [1e-3, 1e-6, 1e-9])
def test_stopping_rule_guarantees_tolerance(tol):
    gamma, alpha = 0.95, 0.3
    P, R = random_mdp(2)
    q_star = plain_value_iteration(P.tolist(), R.tolist(), gamma, alpha)
    solution = tsv.soft_value_iteration(P, R, gamma, alpha, tol=tol)
    assert solution.error_bound <= tol and solution.stop_reason == "tolerance"
    assert np.abs(solution.q - q_star).max() <= tol
    cut_short = tsv.soft_value_iteration(P, R, gamma, alpha, tol=tol, max_iterations=3)
    assert not cut_short.converged and cut_short.stop_reason == "max iterations"


@pytest.mark.parametrize(
    ("solver", "scale", "gamma"),
    [(tsv.soft_policy_iteration, 100.0, 0.9999), (tsv.soft_value_iteration, 1e4, 0.999)],
)
def test_converged_means_the_error_bound_holds_even_at_the_float64_floor(solver, scale, gamma):
    """Issue 12, bug 8: with rewards × 100 and γ = 0.9999, ‖Q*‖∞ ≈ 1e6 and float64 cannot pin Q
    down to tol = 1e-10; the solvers used to stop at the float64 floor and call that converged
    (true error 1.5e-5 for value iteration). Value iteration runs at rewards × 1e4, γ = 0.999:
    the same floor in 10x fewer backups. Against the exact Q* (rational arithmetic, α = 0):
    `converged` must imply ‖Q − Q*‖∞ ≤ tol, the floor stop must be reported as such, and
    error_bound must hold whatever the verdict."""
    P, R = random_mdp(0)
    q_star = exact_hard_q(P.tolist(), (scale * R).tolist(), gamma)
    for tol in (1e-10, 1e-3):
        solution = solver(P, scale * R, gamma, 0.0, tol=tol, max_iterations=10**6)
        error = max(abs(Fraction(x) - y) for row, exact in zip(solution.q.tolist(), q_star, strict=True)
                    for x, y in zip(row, exact, strict=True))  # fmt: skip
        assert error <= solution.error_bound
        assert solution.converged == (solution.error_bound <= tol)
        if solution.converged:
            assert error <= tol
        # tol = 1e-10 is below what float64 can certify here (δ/(1 − γ) ≈ 1e-5); 1e-3 is not
        assert solution.stop_reason == ("float64 floor" if tol == 1e-10 else "tolerance")


# ---------------------------------------------------------------------------------- identities
@pytest.mark.parametrize("alpha", [0.05, 1.0, 20.0])
def test_soft_value_and_policy_identities(alpha):
    P, R = random_mdp(3)
    solution = tsv.soft_value_iteration(P, R, 0.9, alpha)
    for s in range(len(R)):
        assert solution.v[s] == pytest.approx(plain_soft_max(list(solution.q[s]), alpha), abs=1e-12)
    assert np.allclose(solution.pi.sum(axis=1), 1.0, atol=1e-14)
    assert (solution.pi > 0).all()
    # V(s) = Q(s,a) − α·log π(a|s) for every action, eq. (3) rearranged.
    assert np.allclose(solution.q - alpha * np.log(solution.pi), solution.v[:, None], atol=1e-10)


def test_greedy_policy_is_uniform_over_exact_ties():
    P, R = random_mdp(4)
    P[:, 1], R[:, 1] = P[:, 0], R[:, 0]  # action 1 is a copy of action 0
    solution = tsv.soft_value_iteration(P, R, 0.9, 0.0)
    for s in range(len(R)):
        best = np.flatnonzero(solution.q[s] == solution.q[s].max())
        expected = np.zeros(3)
        expected[best] = 1 / len(best)
        assert np.array_equal(solution.pi[s], expected)
        assert solution.pi[s, 0] == solution.pi[s, 1]


# ------------------------------------------------------------------ evaluation and improvement
def test_policy_evaluation_matches_plain_iteration():
    P, R = random_mdp(5)
    pi = np.random.default_rng(5).dirichlet(np.ones(3), size=6)
    q, v = tsv.soft_policy_evaluation(P, R, pi, 0.9, 0.7)
    expected_v = plain_policy_evaluation(P.tolist(), R.tolist(), pi.tolist(), 0.9, 0.7)
    assert np.allclose(v, expected_v, atol=1e-10)
    assert np.allclose(q, R + 0.9 * np.einsum("sat,t->sa", P, expected_v), atol=1e-10)


@pytest.mark.parametrize("alpha", [0.0, 0.2, 3.0])
def test_evaluation_of_optimal_policy_and_random_policies(alpha):
    gamma = 0.9
    P, R = random_mdp(6)
    solution = tsv.soft_value_iteration(P, R, gamma, alpha)
    _, v_star = tsv.soft_policy_evaluation(P, R, solution.pi, gamma, alpha)
    assert np.allclose(v_star, solution.v, atol=1e-9)
    rng = np.random.default_rng(6)
    for _ in range(20):
        pi = rng.dirichlet(np.ones(3) * 0.5, size=6)
        _, v_pi = tsv.soft_policy_evaluation(P, R, pi, gamma, alpha)
        assert (v_pi <= solution.v + 1e-9).all()


@pytest.mark.parametrize("alpha", [0.1, 1.0])
def test_soft_policy_improvement_never_lowers_q(alpha):
    """SAC Lemma 2: π_new(a|s) ∝ exp(Q^π_old(s,a)/α) has Q^π_new ≥ Q^π_old everywhere."""
    P, R = random_mdp(7)
    rng = np.random.default_rng(7)
    for _ in range(10):
        pi_old = rng.dirichlet(np.ones(3), size=6)
        q_old, _ = tsv.soft_policy_evaluation(P, R, pi_old, 0.9, alpha)
        weights = np.exp((q_old - q_old.max(axis=1, keepdims=True)) / alpha)  # plain softmax
        q_new, _ = tsv.soft_policy_evaluation(
            P, R, weights / weights.sum(1, keepdims=True), 0.9, alpha
        )
        assert (q_new >= q_old - 1e-10).all()
        assert (q_new > q_old + 1e-6).any()  # and a random policy is strictly improved


@pytest.mark.parametrize("alpha", [0.0, 1e-3, 0.3, 5.0])
def test_policy_iteration_agrees_with_value_iteration(alpha):
    P, R = random_mdp(8, num_states=10, num_actions=4)
    by_values = tsv.soft_value_iteration(P, R, 0.95, alpha)
    by_policies = tsv.soft_policy_iteration(P, R, 0.95, alpha)
    assert by_policies.converged and by_policies.iterations <= 20
    assert np.allclose(by_policies.q, by_values.q, atol=1e-8)
    assert np.allclose(by_policies.v, by_values.v, atol=1e-8)
    assert np.allclose(by_policies.pi, by_values.pi, atol=1e-8)


# ---------------------------------------------------------------------- limits, bounds, shifts
@pytest.mark.parametrize("alpha", [1e-3, 0.1, 1.0, 10.0])
def test_soft_values_lie_between_hard_bounds(alpha):
    gamma = 0.9
    P, R = random_mdp(9)
    v_hard = plain_value_iteration(P.tolist(), R.tolist(), gamma, 0.0).max(axis=1)
    v_soft = tsv.soft_value_iteration(P, R, gamma, alpha).v
    assert (v_hard <= v_soft + 1e-9).all()
    assert (v_soft <= v_hard + alpha * math.log(3) / (1 - gamma) + 1e-9).all()


def test_alpha_to_zero_is_hard_value_iteration():
    P, R = random_mdp(10)
    q_hard = plain_value_iteration(P.tolist(), R.tolist(), 0.9, 0.0)
    exact = tsv.soft_value_iteration(P, R, 0.9, 0.0)
    assert np.allclose(exact.q, q_hard, atol=1e-9)
    assert np.array_equal(exact.pi.argmax(axis=1), q_hard.argmax(axis=1))
    nearly = tsv.soft_value_iteration(P, R, 0.9, 1e-4)
    assert np.abs(nearly.v - q_hard.max(axis=1)).max() <= 1e-4 * math.log(3) / (1 - 0.9) + 1e-9
    assert np.array_equal(nearly.pi.argmax(axis=1), q_hard.argmax(axis=1))


def test_alpha_to_infinity_gives_uniform_policy():
    P, R = random_mdp(11)
    assert np.abs(tsv.soft_value_iteration(P, R, 0.9, 1e4).pi - 1 / 3).max() < 1e-3


@pytest.mark.parametrize("shift", [1000.0, -37.5])
def test_reward_shift_adds_constant_and_keeps_policy(shift):
    P, R = random_mdp(12)
    base = tsv.soft_value_iteration(P, R, 0.9, 0.3)
    shifted = tsv.soft_value_iteration(P, R + shift, 0.9, 0.3)
    assert np.allclose(shifted.v, base.v + shift / (1 - 0.9), rtol=0, atol=1e-9)
    assert np.allclose(shifted.pi, base.pi, atol=1e-10)


@pytest.mark.parametrize(
    ("alpha", "rewards"),
    [
        (1.0, [0.3, -0.2, 1.0]),
        (0.0, [0.3, -0.2, 1.0]),
        (1e-4, [1e6, 1e6 - 1e-3, -1e6]),
        (1e-4, [0.5, 0.49995, 0.2]),
        (1e4, [1e6, 0.0, -1e6]),
        (1e4, [1.0, 2.0, 3.0]),
    ],
)
def test_bandit_with_self_loop_closed_form(alpha, rewards):
    """One state, |A| arms, each looping back: V = α·log Σ_a exp(r_a/α) / (1 − γ)."""
    gamma = 0.9
    P, R = np.ones((1, len(rewards), 1)), np.array([rewards])
    expected_v = plain_soft_max(rewards, alpha) / (1 - gamma)
    for solver in (tsv.soft_value_iteration, tsv.soft_policy_iteration):
        solution = solver(P, R, gamma, alpha)
        assert np.isfinite(solution.q).all()
        assert solution.v[0] == pytest.approx(expected_v, rel=1e-12, abs=1e-9)
        if alpha > 0:  # π = softmax(r/α): the γ·V term is the same for every arm
            top = max(rewards)
            weights = [math.exp((r - top) / alpha) for r in rewards]
            expected_pi = [w / math.fsum(weights) for w in weights]
            # float64 holds Q only to ~eps·|Q|, which moves log π by eps·|Q|/α
            resolution = 16 * np.finfo(float).eps * abs(expected_v) / alpha
            assert np.allclose(solution.pi[0], expected_pi, rtol=max(1e-9, resolution), atol=0)


@pytest.mark.parametrize(
    ("alpha", "scale"), [(1e-4, 1.0), (1e-4, 1e6), (0.1, 1e6), (1e4, 1.0), (1e4, 1e6)]
)
def test_extreme_temperatures_and_reward_scales(alpha, scale):
    """Q*(c·R, α) = c·Q*(R, α/c): the log-sum-exp stays exact at extreme α and reward scales."""
    P, R = random_mdp(13)
    reference = scale * plain_value_iteration(P.tolist(), R.tolist(), 0.95, alpha / scale)
    by_values = tsv.soft_value_iteration(P, scale * R, 0.95, alpha)
    by_policies = tsv.soft_policy_iteration(P, scale * R, 0.95, alpha)
    # tol = 1e-10 is certifiable only for the small values; above, float64's floor stops them
    certifiable = np.abs(reference).max() < 1e3
    for solution in (by_values, by_policies):
        assert solution.converged if certifiable else solution.stop_reason == "float64 floor"
    assert np.allclose(by_values.q, reference, rtol=1e-10, atol=0)
    assert np.allclose(by_policies.q, reference, rtol=1e-10, atol=0)
    assert np.allclose(by_values.pi, by_policies.pi, atol=1e-8)


# --------------------------------------------------------------------- Sutton & Barto Example 3.5
def test_sutton_barto_gridworld_matches_book():
    P, R = sutton_barto_gridworld()
    uniform = np.full((25, 4), 0.25)
    _, v_random = tsv.soft_policy_evaluation(P, R, uniform, 0.9, 0.0)
    assert np.abs(v_random.reshape(5, 5) - np.array(BOOK_RANDOM_POLICY)).max() <= 0.05 + 1e-9
    v_star = tsv.soft_value_iteration(P, R, 0.9, 0.0).v
    assert np.abs(v_star.reshape(5, 5) - np.array(BOOK_OPTIMAL)).max() <= 0.05 + 1e-9
    assert np.allclose(tsv.soft_policy_iteration(P, R, 0.9, 0.0).v, v_star, atol=1e-9)


# ------------------------------------------------------------------------------------ bad input
def _bad_inputs():
    P, R = random_mdp(14, num_states=3, num_actions=2)
    not_normalised = P.copy()
    not_normalised[1, 0, 2] += 0.1
    negative = P.copy()
    negative[0, 1] = [1.2, -0.2, 0.0]
    return (
        [
            ("sum to 1", dict(P=not_normalised)),
            ("negative", dict(P=negative)),
            ("shape", dict(R=R[:, :1])),
            ("shape", dict(P=P[:, :, :2])),
            ("gamma", dict(gamma=1.0)),
            ("gamma", dict(gamma=-0.1)),
            ("alpha", dict(alpha=-0.5)),
            ("alpha", dict(alpha=float("nan"))),
            ("finite", dict(R=np.where(R > 0, np.inf, R))),
            ("terminal", dict(terminal=np.array([True, False]))),
        ],
        P,
        R,
    )


@pytest.mark.parametrize("case", range(10))
@pytest.mark.parametrize("function", ["vi", "pi", "backup", "evaluation"])
def test_invalid_input_raises_value_error_naming_the_problem(case, function):
    cases, P, R = _bad_inputs()
    message, changes = cases[case]
    inputs = dict(P=P, R=R, gamma=0.9, alpha=0.1, terminal=None) | changes
    call = {
        "vi": lambda: tsv.soft_value_iteration(**inputs),
        "pi": lambda: tsv.soft_policy_iteration(**inputs),
        "backup": lambda: tsv.soft_bellman_backup(np.zeros((3, 2)), **inputs),
        "evaluation": lambda: tsv.soft_policy_evaluation(pi=np.full((3, 2), 0.5), **inputs),
    }[function]
    with pytest.raises(ValueError, match=message):
        call()


def test_invalid_policy_and_q_raise():
    P, R = random_mdp(15, num_states=3, num_actions=2)
    with pytest.raises(ValueError, match="sum to 1"):
        tsv.soft_policy_evaluation(P, R, np.full((3, 2), 0.4), 0.9, 0.1)
    with pytest.raises(ValueError, match="non-negative"):
        tsv.soft_policy_evaluation(P, R, np.array([[1.5, -0.5]] * 3), 0.9, 0.1)
    with pytest.raises(ValueError, match="pi must have shape"):
        tsv.soft_policy_evaluation(P, R, np.full((3, 3), 1 / 3), 0.9, 0.1)
    with pytest.raises(ValueError, match="q must have shape"):
        tsv.soft_bellman_backup(np.zeros((2, 2)), P, R, 0.9, 0.1)


# ------------------------------------------------------------------------------ gymnasium envs
FROZEN_LAKE_4X4 = ["SFFF", "FHFH", "FFFH", "HFFG"]  # gymnasium's default map, typed in


def test_mdp_from_frozen_lake():
    env = gym.make("FrozenLake-v1")
    mdp = tsv.mdp_from_env(env)
    assert mdp.P.shape == (16, 4, 16) and (mdp.P >= 0).all()
    assert np.allclose(mdp.P.sum(axis=2), 1.0, atol=1e-12)
    letters = "".join(FROZEN_LAKE_4X4)
    assert set(np.flatnonzero(mdp.terminal)) == {i for i, c in enumerate(letters) if c in "HG"}
    assert np.array_equal(mdp.initial, np.eye(16)[0])
    # Slippery: the intended move or either perpendicular one, 1/3 each (LEFT, DOWN, RIGHT, UP).
    # Only a step onto G (from 14 to the right) pays +1.
    expected_R = np.zeros((16, 4))
    expected_R[14] = [0, 1 / 3, 1 / 3, 1 / 3]
    assert np.allclose(mdp.R, expected_R)
    assert mdp.P[0, 0, 0] == pytest.approx(2 / 3) and mdp.P[0, 0, 4] == pytest.approx(1 / 3)
    for s in np.flatnonzero(mdp.terminal):  # absorbing with zero reward
        assert (mdp.P[s, :, s] == 1).all() and (mdp.R[s] == 0).all()


@pytest.mark.parametrize("env_id", ["FrozenLake-v1", "CliffWalking-v1"])
def test_solution_matches_episodic_backup_on_env_table(env_id):
    """The absorbing-state model + `terminal` mask equals soft VI run directly on gymnasium's
    table with the episodic backup r + γ·(1 − terminated)·V(s′)."""
    gamma, alpha = 0.9, 0.1
    env = gym.make(env_id)
    mdp = tsv.mdp_from_env(env)
    num_states, num_actions = mdp.R.shape
    v_plain, q_plain = plain_episodic_soft_values(
        env.unwrapped.P, num_states, num_actions, gamma, alpha, sweeps=400
    )
    solution = tsv.soft_value_iteration(mdp.P, mdp.R, gamma, alpha, terminal=mdp.terminal)
    acting = ~mdp.terminal
    assert np.allclose(solution.v[acting], v_plain[acting], atol=1e-10)
    assert np.allclose(solution.q[acting], q_plain[acting], atol=1e-10)
    by_policies = tsv.soft_policy_iteration(mdp.P, mdp.R, gamma, alpha, terminal=mdp.terminal)
    assert np.allclose(by_policies.v, solution.v, atol=1e-9)


def test_cliff_walking_shortest_path_closed_form():
    """Sutton & Barto Example 6.6: the optimal path along the cliff takes 13 steps of −1."""
    gamma = 0.99
    mdp = tsv.mdp_from_env(gym.make("CliffWalking-v1"))
    assert set(np.flatnonzero(mdp.terminal)) == {47}
    start = 36
    assert mdp.R[start, 1] == -100 and mdp.P[start, 1, start] == 1  # the cliff sends you back
    v_start = tsv.soft_value_iteration(mdp.P, mdp.R, gamma, 0.0, terminal=mdp.terminal).v[start]
    assert v_start == pytest.approx(-(1 - gamma**13) / (1 - gamma), abs=1e-9)


def test_mdp_from_taxi_and_non_tabular_envs():
    env = gym.make("Taxi-v4")
    mdp = tsv.mdp_from_env(env)
    assert np.allclose(mdp.P.sum(axis=2), 1.0, atol=1e-12)
    assert mdp.terminal.sum() == 4  # the passenger delivered at each of the four destinations
    locations = [(0, 0), (0, 4), (4, 0), (4, 3)]
    for s in np.flatnonzero(mdp.terminal):
        row, col, passenger, destination = env.unwrapped.decode(int(s))
        assert passenger == destination and (row, col) == locations[destination]
    assert (mdp.initial > 0).sum() == 300 and mdp.initial.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no transition table"):
        tsv.mdp_from_env(gym.make("CartPole-v1"))


def test_monte_carlo_soft_return_matches_v_start_on_frozen_lake():
    """Roll π* out in the real env (a plain loop, the reward + α·H(π(·|s)) form of the soft
    return): V*(s0) must lie in the 99% interval of the mean."""
    gamma, alpha, episodes = 0.9, 0.1, 1000
    mdp = tsv.mdp_from_env(gym.make("FrozenLake-v1"))
    solution = tsv.soft_value_iteration(mdp.P, mdp.R, gamma, alpha, terminal=mdp.terminal)
    entropy = [-sum(p * math.log(p) for p in row if p > 0) for row in solution.pi.tolist()]
    env = gym.make("FrozenLake-v1", max_episode_steps=400)  # γ^400 ≈ 5e-19: no truncation bias
    rng = np.random.default_rng(0)
    returns = []
    for k in range(episodes):
        state, _ = env.reset(seed=k)
        total, discount, done = 0.0, 1.0, False
        while not done:
            action = int(rng.choice(4, p=solution.pi[state]))
            next_state, reward, terminated, truncated, _ = env.step(action)
            total += discount * (reward + alpha * entropy[state])
            discount *= gamma
            state, done = next_state, terminated or truncated
        returns.append(total)
    half_width = 2.5758 * np.std(returns, ddof=1) / math.sqrt(episodes)
    assert abs(np.mean(returns) - solution.v[0]) <= half_width


# -------------------------------------------------------------------------------- command line
SUMMARY_KEYS = {
    "algorithm", "env_id", "seed", "status", "global_step", "gradient_updates", "policy_updates",
    "train_time_s", "learn_sps", "episodic_return_last", "eval_return_mean", "eval_return_std",
    "eval_episodes", "alpha", "iterations", "residual", "error_bound", "converged", "stop_reason",
    "v_start", "reward_optimal_return", "alpha_note",
    "mc_soft_return_mean", "mc_soft_return_ci99", "mc_v_start_inside_ci99",
}  # fmt: skip


def test_main_frozen_lake_with_sweep(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = tsv.Args(env_id="FrozenLake-v1", alpha=0.1, gamma=0.99, eval_episodes=300,
                    alpha_sweep=True, save_model=True)  # fmt: skip
    result = tsv.main(args)
    run_dir = result.pop("run_dir")
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    assert summary.keys() >= SUMMARY_KEYS
    assert summary == json.loads(json.dumps(result))
    assert summary["status"] == "finished"
    assert summary["converged"] and summary["error_bound"] <= 1e-10
    assert summary["stop_reason"] == "tolerance"
    assert summary["mc_v_start_inside_ci99"]
    low, high = summary["mc_soft_return_ci99"]
    assert low <= summary["v_start"] <= high
    # V*(s0) against value iteration run plainly on gymnasium's own table, soft and hard.
    table = gym.make("FrozenLake-v1").unwrapped.P
    v_soft, _ = plain_episodic_soft_values(table, 16, 4, 0.99, 0.1, sweeps=2000)
    v_hard, _ = plain_episodic_soft_values(table, 16, 4, 0.99, 0.0, sweeps=2000)
    assert summary["v_start"] == pytest.approx(v_soft[0], abs=1e-7)
    # The sweep: V*_soft(s0) never decreases with α (H ≥ 0), α = 0 is the hard solution.
    sweep = summary["alpha_sweep"]
    assert sweep[0]["alpha"] == 0.0 and len(sweep) >= 5
    assert all(a["v_start"] <= b["v_start"] + 1e-12 for a, b in zip(sweep, sweep[1:], strict=False))
    assert sweep[0]["v_start"] == pytest.approx(v_hard[0], abs=1e-7)
    assert sweep[0]["greedy_reward_return"] == pytest.approx(v_hard[0], abs=1e-7)
    # Issue 13, item 4: at α = 0.1 the greedy policy never reaches the goal (eval return 0), and
    # the run says why and names the largest swept α below 0.1 whose greedy policy is
    # reward-optimal again: the oracle finds it from plain soft VI and a plain greedy evaluation.
    assert summary["eval_return_mean"] == 0.0
    assert summary["reward_optimal_return"] == pytest.approx(v_hard[0], abs=1e-7)
    keeper = None
    for alpha in (0.03, 0.01, 0.001):  # the swept α below 0.1, largest first
        _, q_alpha = plain_episodic_soft_values(table, 16, 4, 0.99, alpha, sweeps=1000)
        greedy = plain_greedy_returns(table, q_alpha.tolist(), 16, 0.99, steps=1000)[0]
        if greedy >= 0.99 * v_hard[0]:  # reward-optimal to 1 %
            keeper = alpha
            break
    assert keeper == 0.01  # (α = 0.03 already loses the goal)
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        events = [json.loads(line) for line in f]
    assert events and all("global_step" in event for event in events)
    assert any("losses/bellman_residual" in event for event in events)
    model = np.load(os.path.join(run_dir, "model.npz"))
    assert model["q"].shape == (16, 4) and np.allclose(model["pi"].sum(axis=1), 1.0)
    out = capsys.readouterr().out
    assert "H" in out and "G" in out and run_dir in out  # the grid and the final pointer
    assert "note: at alpha=0.1 the entropy bonus outweighs the reward" in out
    assert f"note: --alpha {keeper:g} keeps the reward-optimal greedy policy" in out
    assert f"--alpha {keeper:g} keeps" in summary["alpha_note"]
    assert f"finished: results in {run_dir}" in out


def test_main_default_frozen_lake_reaches_the_goal(tmp_path, monkeypatch, capsys):
    """Issue 13, item 4: the first command a user runs (`--env-id FrozenLake-v1`, default α)
    shows the method working: its greedy policy is reward-optimal, reaches the goal, and its
    evaluation matches the exact success rate within the 100-step limit (a plain oracle)."""
    monkeypatch.chdir(tmp_path)
    episodes = 500
    summary = tsv.main(tsv.Args(env_id="FrozenLake-v1", eval_episodes=episodes))
    table = gym.make("FrozenLake-v1").unwrapped.P
    v_hard, _ = plain_episodic_soft_values(table, 16, 4, 0.99, 0.0, sweeps=2000)
    _, q_soft = plain_episodic_soft_values(table, 16, 4, 0.99, tsv.Args.alpha, sweeps=1000)
    assert summary["greedy_reward_return"] == pytest.approx(v_hard[0], abs=1e-7)
    success = plain_greedy_returns(table, q_soft.tolist(), 16, 1.0, steps=100)[0]
    half_width = 2.5758 * math.sqrt(success * (1 - success) / episodes)
    assert summary["eval_return_mean"] > 0.5
    assert abs(summary["eval_return_mean"] - success) <= half_width
    assert summary["status"] == "finished" and summary["alpha_note"] is None
    assert summary["mean_policy_entropy"] > 0.1  # and π* is still a soft policy
    assert "note:" not in capsys.readouterr().out


def test_summary_says_interrupted_when_ctrl_c_stops_the_run(tmp_path, monkeypatch):
    """Ctrl-C during the rollouts: the KeyboardInterrupt reaches the caller (main() installs no
    handler), and summary.json is still written, with status "interrupted"."""
    monkeypatch.chdir(tmp_path)

    def interrupted_rollout(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tsv, "rollout", interrupted_rollout)
    with pytest.raises(KeyboardInterrupt):
        tsv.main(tsv.Args(env_id="FrozenLake-v1", eval_episodes=5))
    (run_dir,) = os.listdir("runs")
    with open(os.path.join("runs", run_dir, "summary.json")) as f:
        summary = json.load(f)
    assert summary["status"] == "interrupted" and summary["converged"]
    assert summary["eval_return_mean"] is None


def test_main_cliff_walking_policy_iteration_greedy_return(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = tsv.Args(env_id="CliffWalking-v1", alpha=0.0, gamma=0.99, method="policy-iteration",
                    eval_episodes=5)  # fmt: skip
    summary = tsv.main(args)
    assert summary["eval_return_mean"] == -13.0  # Sutton & Barto Example 6.6
    assert summary["v_start"] == pytest.approx(-(1 - 0.99**13) / (1 - 0.99), abs=1e-9)
    assert summary["policy_updates"] == summary["iterations"] >= 1


def test_main_taxi_monte_carlo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    summary = tsv.main(tsv.Args(env_id="Taxi-v4", alpha=0.3, gamma=0.95, eval_episodes=200))
    assert summary["converged"] and summary["mc_v_start_inside_ci99"]
    assert summary["status"] == "finished"
    assert summary["num_states"] == 500 and summary["num_actions"] == 6


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(gamma=1.0), "--gamma"),
        (dict(alpha=-1.0), "--alpha"),
        (dict(tol=0.0), "--tol"),
        (dict(eval_episodes=-1), "--eval-episodes"),
        (dict(env_id="Pendulum-v1"), "not a tabular env"),
        (dict(env_id="Taxi-v9"), "cannot make env"),
    ],
)
def test_main_rejects_bad_input_before_writing(tmp_path, monkeypatch, changes, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(tsv.UsageError, match=message):
        tsv.main(tsv.Args(**({"eval_episodes": 0} | changes)))
    assert not os.path.exists("runs")


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Nope-v0"])
def test_command_line_exit_status_2(tmp_path, env_id):
    result = subprocess.run(
        [sys.executable, SCRIPT, "--env-id", env_id], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "runs")


def test_main_tracks_offline_and_records_video(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("MUJOCO_GL", "egl")
    args = tsv.Args(env_id="FrozenLake-v1", eval_episodes=3, track=True, capture_video=True)
    run_dir = tsv.main(args)["run_dir"]
    assert any(name.endswith(".mp4") for name in os.listdir(os.path.join(run_dir, "videos")))
    assert any(
        name.startswith("offline-run") for name in os.listdir(os.path.join(run_dir, "wandb"))
    )
