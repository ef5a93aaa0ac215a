"""Exact soft value iteration, soft policy evaluation and soft policy iteration on a known MDP.

The maximum-entropy objective (Ziebart 2010; Haarnoja et al. 2017, arXiv 1702.08165, eq. 2):
    J(π) = E_π[ Σ_t γ^t ( r_t + α·H(π(·|s_t)) ) ],   H(π(·|s)) = −Σ_a π(a|s)·log π(a|s),
with temperature α ≥ 0. On a tabular MDP — P[s, a, s′] transition probabilities, R[s, a]
expected reward — its optimum solves the soft Bellman equations (1702.08165, Theorems 1-2):
    Q*(s,a)  = R(s,a) + γ·Σ_s′ P(s′|s,a)·V*(s′)                soft Bellman backup      (1)
    V*(s)    = α·log Σ_a exp(Q*(s,a)/α)                         soft value               (2)
    π*(a|s)  = exp((Q*(s,a) − V*(s))/α) = softmax(Q*(s,·)/α)_a  optimal policy           (3)
so V*(s) = Q*(s,a) − α·log π*(a|s) for every a, and V*(s) = E_π*[Q*(s,a)] + α·H(π*(·|s)).

Soft value iteration (1702.08165, Theorem 3) repeats Q_{k+1} = T Q_k, T the map (2) then (1).
Log-sum-exp is a non-expansion in the max norm, so T is a γ-contraction,
‖TQ − TQ′‖∞ ≤ γ·‖Q − Q′‖∞, and the triangle inequality gives the stopping rule used here:
    ‖Q − Q*‖∞ ≤ ‖TQ − Q‖∞ / (1 − γ),   so   ‖Q_{k+1} − Q*‖∞ ≤ γ/(1 − γ)·‖Q_{k+1} − Q_k‖∞   (4)
Soft policy evaluation is one linear solve (P_π[s,s′] = Σ_a π(a|s)·P[s,a,s′], r_π = Σ_a π·R):
    v_π = (I − γ·P_π)⁻¹ (r_π + α·H(π(·|s))),   q_π = R + γ·P v_π                               (5)
Soft policy improvement π_new = softmax(q_π/α) never lowers Q (SAC, arXiv 1801.01290, Lemma 2).
Evaluation (5) + improvement is soft policy iteration (regularized policy iteration, Geist et
al. 2019, arXiv 1901.11275); like policy iteration, Newton's method on the Bellman equation, it
needs only a handful of iterations, each one linear solve.

Limits and bounds: α → 0 turns (2) into max_a Q (ordinary value iteration, greedy π; α = 0 is
exactly that here, with π uniform over exactly tied actions); without terminal states α → ∞
makes π uniform; and
    V*_hard(s) ≤ V*_soft(s) ≤ V*_hard(s) + α·log|A| / (1 − γ).
Adding c to every reward adds c/(1 − γ) to V* and leaves π* unchanged (no terminal states).

Numerics: (2) is evaluated as m + α·log Σ_a exp((Q − m)/α) with m = max_a Q, so nothing
overflows for α from 1e-4 to 1e4 and rewards of any scale. float64 resolves Q only to about
eps·‖Q‖∞, so the solvers also stop once their residual is down to a few ulps of ‖Q‖∞.

Episode ends: gymnasium's toy-text envs end an episode in a goal or a hole. Such a terminal
state is absorbing with zero reward *and* V = 0: the agent no longer acts there, so it earns no
entropy bonus either (if it kept acting, an absorbing state would be worth α·log|A|/(1 − γ) and
FrozenLake's holes would beat its goal). Every solver takes the mask `terminal` for this. Note
what it implies: α·H is earned on every step *before* the episode ends, so the entropy bonus is
also a reward for staying alive. On FrozenLake at γ = 0.99, from α ≈ 0.03 upward the greedy
policy of Q* never walks to the goal's +1 and π* reaches it less and less (see `--alpha-sweep`);
α → ∞ gives the policy that keeps the episode going longest, not the uniform one. Time limits are not part of the state: the MDP
solved is the untruncated one, and the Monte-Carlo check below runs without the time limit.

The command line solves a gymnasium toy-text env (FrozenLake-v1, FrozenLake8x8-v1,
CliffWalking-v1, Taxi-v4, ...), draws the policy on grid worlds, then rolls π* out in the real
env: the discounted soft return Σ_t γ^t (r_t − α·log π*(a_t|s_t)), whose mean is V*(s0), must
match V*(s0) within its 99% confidence interval. Evaluation (eval_return_*) is the greedy policy
argmax_a Q* with the env's own time limit and undiscounted return, as in the deep-RL scripts.
There is nothing to checkpoint or resume: a solve takes milliseconds to seconds.

Usage: python tabular_soft_vi.py --env-id FrozenLake-v1 --alpha 0.1 --gamma 0.99 [--alpha-sweep]
"""

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import Literal, NamedTuple

import gymnasium as gym
import numpy as np
import tyro


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (part of the run directory name)"""
    seed: int = 1
    """seed of the Monte-Carlo rollouts (action sampling and env resets)"""
    track: bool = False
    """if toggled, log to Weights and Biases"""
    wandb_project_name: str = "softrl"
    """the wandb project name"""
    wandb_entity: str | None = None
    """the wandb entity (team)"""
    capture_video: bool = False
    """if toggled, record the first greedy evaluation episode to `runs/<run>/videos`"""

    env_id: str = "FrozenLake-v1"
    """a gymnasium toy-text env with a transition table (FrozenLake-v1, CliffWalking-v1, Taxi-v4)"""
    gamma: float = 0.99
    """the discount factor γ, in [0, 1)"""
    alpha: float = 0.1
    """the temperature α ≥ 0 (0 = ordinary, hard value iteration)"""
    method: Literal["value-iteration", "policy-iteration"] = "value-iteration"
    """the solver: soft value iteration (4) or soft policy iteration (5)"""
    tol: float = 1e-10
    """stop once ‖Q − Q*‖∞ ≤ tol is guaranteed by the contraction bound (4)"""
    max_iterations: int = 100_000
    """give up after this many iterations (reported as not converged)"""
    eval_episodes: int = 1000
    """episodes of the Monte-Carlo check and of the greedy evaluation (0 = no rollouts)"""
    alpha_sweep: bool = False
    """if toggled, also tabulate V*(s0), policy entropy and returns for α from 0 upward"""
    save_model: bool = False
    """if toggled, save q, v, pi to `runs/<run>/model.npz`"""


class UsageError(Exception):
    """Bad command-line input: reported as one line on stderr, exit status 2."""


# ---------------------------------------------------------------------------------- soft math
class SoftSolution(NamedTuple):
    q: np.ndarray
    """[S, A] soft action values Q"""
    v: np.ndarray
    """[S] soft values V = α·logsumexp(Q/α), eq. (2); 0 in terminal states"""
    pi: np.ndarray
    """[S, A] policy softmax(Q/α), eq. (3); uniform in terminal states"""
    iterations: int
    """backups (value iteration) or evaluation + improvement rounds (policy iteration)"""
    residual: float
    """‖TQ − Q‖∞ at the last iteration"""
    error_bound: float
    """guaranteed ‖Q − Q*‖∞ from the contraction bound (4), up to float64 rounding"""
    converged: bool
    """error_bound ≤ tol, or the residual reached float64's resolution of Q"""
    residuals: np.ndarray
    """the residual of every iteration (the contraction made visible)"""


def soft_value(q: np.ndarray, alpha: float) -> np.ndarray:
    """V(s) = α·log Σ_a exp(Q(s,a)/α), eq. (2), with the max shifted out; max_a Q at α = 0."""
    q_max = q.max(axis=-1)
    if alpha == 0:
        return q_max
    return q_max + alpha * np.log(np.exp((q - q_max[..., None]) / alpha).sum(axis=-1))


def soft_policy(q: np.ndarray, alpha: float) -> np.ndarray:
    """π(a|s) = softmax(Q(s,·)/α)_a, eq. (3); at α = 0 greedy, uniform over exactly tied actions."""
    shifted = q - q.max(axis=-1, keepdims=True)
    weights = (shifted == 0).astype(float) if alpha == 0 else np.exp(shifted / alpha)
    return weights / weights.sum(axis=-1, keepdims=True)


def policy_entropy(pi: np.ndarray) -> np.ndarray:
    """H(π(·|s)) = −Σ_a π(a|s)·log π(a|s) in nats, with 0·log 0 = 0."""
    return -np.sum(pi * np.log(np.where(pi > 0, pi, 1.0)), axis=-1)


def _validate_mdp(P, R, gamma, alpha, terminal):
    """Check the inputs of every solver; return P, R as float64 and terminal as a bool mask."""
    P, R = np.asarray(P, dtype=float), np.asarray(R, dtype=float)
    if P.ndim != 3 or P.shape[0] != P.shape[2]:
        raise ValueError(f"P must have shape [S, A, S] (P[s, a, s′]); got shape {P.shape}")
    if R.shape != P.shape[:2]:
        raise ValueError(f"R must have shape [S, A] = {P.shape[:2]} to match P; got {R.shape}")
    if not (np.isfinite(P).all() and np.isfinite(R).all()):
        raise ValueError("P and R must be finite; found NaN or inf")
    if P.min() < 0:
        raise ValueError(f"P has negative transition probabilities (min {P.min():.3g})")
    row_sums = P.sum(axis=2)
    if not np.allclose(row_sums, 1.0, rtol=0, atol=1e-8):
        s, a = np.unravel_index(np.argmax(np.abs(row_sums - 1)), row_sums.shape)
        raise ValueError(
            f"P[s, a, :] must sum to 1 over s′; P[{s}, {a}, :] sums to {row_sums[s, a]:.10g}"
        )
    if not 0 <= gamma < 1:
        raise ValueError(f"gamma must be in [0, 1) for the discounted MDP; got {gamma}")
    if not (math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha must be a finite number >= 0; got {alpha}")
    if terminal is None:
        terminal = np.zeros(P.shape[0], dtype=bool)
    terminal = np.asarray(terminal)
    if terminal.shape != (P.shape[0],) or terminal.dtype != bool:
        raise ValueError(f"terminal must be a bool mask of shape [S] = ({P.shape[0]},)")
    return P, R, terminal


def _backup(q, transitions, R, gamma, alpha, terminal):
    """T Q = R + γ·P V(Q), eqs. (2) then (1); `transitions` is P reshaped to [S·A, S]."""
    v = np.where(terminal, 0.0, soft_value(q, alpha))  # the episode is over: no reward, no entropy
    q_next = R + gamma * (transitions @ v).reshape(R.shape)
    return np.where(terminal[:, None], 0.0, q_next)


def _resolution(q: np.ndarray) -> float:
    """The smallest residual float64 can show for values of this size (a few ulps of ‖Q‖∞)."""
    return 8 * np.finfo(float).eps * max(1.0, float(np.abs(q).max()))


def soft_bellman_backup(q, P, R, gamma, alpha, terminal=None) -> np.ndarray:
    """One application of the soft Bellman operator T, eqs. (1)-(2): returns [S, A]."""
    P, R, terminal = _validate_mdp(P, R, gamma, alpha, terminal)
    q = np.asarray(q, dtype=float)
    if q.shape != R.shape:
        raise ValueError(f"q must have shape [S, A] = {R.shape}; got {q.shape}")
    return _backup(q, P.reshape(-1, P.shape[0]), R, gamma, alpha, terminal)


def soft_value_iteration(
    P, R, gamma, alpha, tol=1e-10, max_iterations=100_000, terminal=None
) -> SoftSolution:
    """Iterate Q ← T Q from Q = 0 until the bound (4) guarantees ‖Q − Q*‖∞ ≤ tol."""
    P, R, terminal = _validate_mdp(P, R, gamma, alpha, terminal)
    if not tol > 0 or max_iterations < 1:
        raise ValueError(f"need tol > 0 and max_iterations >= 1; got {tol}, {max_iterations}")
    transitions = P.reshape(-1, P.shape[0])  # [S·A, S]: Σ_s′ P·V for all (s, a) in one product
    q = np.zeros_like(R)
    residuals = []
    for _ in range(max_iterations):
        q_next = _backup(q, transitions, R, gamma, alpha, terminal)
        residuals.append(float(np.abs(q_next - q).max()))
        q = q_next
        if gamma * residuals[-1] <= tol * (1 - gamma) or residuals[-1] <= _resolution(q):
            break
    error_bound = gamma * residuals[-1] / (1 - gamma)  # eq. (4), for the returned Q_{k+1}
    converged = bool(error_bound <= tol or residuals[-1] <= _resolution(q))
    v = np.where(terminal, 0.0, soft_value(q, alpha))
    return SoftSolution(q, v, soft_policy(q, alpha), len(residuals), residuals[-1],
                        error_bound, converged, np.array(residuals))  # fmt: skip


def _evaluate(P, R, pi, gamma, alpha, terminal):
    """Eq. (5) on validated inputs: v_π by one linear solve, then q_π = R + γ·P v_π."""
    num_states = P.shape[0]
    pi_transitions = np.einsum("sa,sat->st", pi, P)  # P_π[s, s′]
    pi_reward = (pi * R).sum(axis=1) + alpha * policy_entropy(pi)  # r_π + α·H(π(·|s))
    # A terminal state's row becomes v(s) = 0: the episode is over.
    pi_transitions[terminal] = 0.0
    pi_reward[terminal] = 0.0
    v = np.linalg.solve(np.eye(num_states) - gamma * pi_transitions, pi_reward)
    q = R + gamma * (P.reshape(-1, num_states) @ v).reshape(R.shape)
    return np.where(terminal[:, None], 0.0, q), v


def soft_policy_evaluation(P, R, pi, gamma, alpha, terminal=None):
    """(q_π, v_π) of a given policy π [S, A] exactly, eq. (5)."""
    P, R, terminal = _validate_mdp(P, R, gamma, alpha, terminal)
    pi = np.asarray(pi, dtype=float)
    if pi.shape != R.shape:
        raise ValueError(f"pi must have shape [S, A] = {R.shape}; got {pi.shape}")
    if not np.isfinite(pi).all() or pi.min() < 0:
        raise ValueError("pi must hold finite, non-negative probabilities")
    if not np.allclose(pi.sum(axis=1), 1.0, rtol=0, atol=1e-8):
        raise ValueError("every row pi[s, :] must sum to 1")
    return _evaluate(P, R, pi, gamma, alpha, terminal)


def soft_policy_iteration(
    P, R, gamma, alpha, tol=1e-10, max_iterations=1_000, terminal=None
) -> SoftSolution:
    """Alternate evaluation (5) and improvement π ← softmax(q_π/α) from the uniform policy."""
    P, R, terminal = _validate_mdp(P, R, gamma, alpha, terminal)
    if not tol > 0 or max_iterations < 1:
        raise ValueError(f"need tol > 0 and max_iterations >= 1; got {tol}, {max_iterations}")
    transitions = P.reshape(-1, P.shape[0])
    pi = np.full(R.shape, 1.0 / R.shape[1])
    residuals = []
    for _ in range(max_iterations):
        q, _ = _evaluate(P, R, pi, gamma, alpha, terminal)
        residuals.append(
            float(np.abs(_backup(q, transitions, R, gamma, alpha, terminal) - q).max())
        )
        pi = soft_policy(q, alpha)  # the improvement step (SAC Lemma 2)
        if residuals[-1] <= tol * (1 - gamma) or residuals[-1] <= _resolution(q):
            break
    error_bound = residuals[-1] / (1 - gamma)  # eq. (4) for Q = q_π
    converged = bool(error_bound <= tol or residuals[-1] <= _resolution(q))
    v = np.where(terminal, 0.0, soft_value(q, alpha))
    return SoftSolution(q, v, pi, len(residuals), residuals[-1], error_bound, converged,
                        np.array(residuals))  # fmt: skip


def discounted_visitation(P, pi, gamma, initial, terminal) -> np.ndarray:
    """d(s) = (1 − γ)·Σ_t γ^t Pr(s_t = s, episode not over), s_0 ∼ initial: the states where
    the agent acts, weighted as the objective weighs them; dᵀ = (1 − γ)·μᵀ (I − γ·P_π)⁻¹."""
    pi_transitions = np.einsum("sa,sat->st", pi, P)
    pi_transitions[terminal] = 0.0  # the episode ends on arrival: no time is spent there
    visits = np.linalg.solve((np.eye(len(initial)) - gamma * pi_transitions).T, initial)
    return (1 - gamma) * np.where(terminal, 0.0, visits)


# ------------------------------------------------------------------------------- gymnasium side
class TabularMDP(NamedTuple):
    P: np.ndarray
    """[S, A, S] transition probabilities P[s, a, s′]"""
    R: np.ndarray
    """[S, A] expected reward"""
    terminal: np.ndarray
    """[S] bool: the episode ends on arrival (absorbing, zero reward, V = 0)"""
    initial: np.ndarray
    """[S] the distribution of the first state"""


def mdp_from_env(env: gym.Env) -> TabularMDP:
    """Read (P, R, terminal, initial) from a toy-text env's `unwrapped.P` table.

    gymnasium stores P[s][a] = [(probability, next_state, reward, terminated), ...]. A state that
    some transition enters with terminated=True becomes terminal: absorbing, zero reward, V = 0.
    Its own table entries never happen in the env and are dropped. That is only right if no
    state the agent can reach enters it *without* termination, which is checked.
    """
    base = env.unwrapped
    table = getattr(base, "P", None)
    spaces = (base.observation_space, base.action_space)
    if not isinstance(table, dict) or not all(isinstance(x, gym.spaces.Discrete) for x in spaces):
        raise ValueError(
            f"{type(base).__name__} has no transition table `unwrapped.P` over Discrete states "
            "and actions; tabular solvers need a toy-text env such as FrozenLake-v1, "
            "CliffWalking-v1 or Taxi-v4"
        )
    initial = getattr(base, "initial_state_distrib", None)
    if initial is None:
        raise ValueError(f"{type(base).__name__} has no start distribution `initial_state_distrib`")
    num_states, num_actions = int(base.observation_space.n), int(base.action_space.n)
    P = np.zeros((num_states, num_actions, num_states))
    R = np.zeros((num_states, num_actions))
    ends = np.zeros(num_states, bool)
    moves_on = np.zeros((num_states, num_states), bool)  # s → s′ possible without termination
    for s in range(num_states):  # building the table once; the solvers themselves never loop
        for a in range(num_actions):
            for probability, next_state, reward, terminated in table[s][a]:
                P[s, a, next_state] += probability
                R[s, a] += probability * reward
                if terminated:
                    ends[next_state] = True
                elif probability > 0:
                    moves_on[s, next_state] = True
    # States reachable from the start without ending the episode (Taxi, e.g., has unreachable
    # states that walk into its terminal states; they do not matter).
    reachable = np.asarray(initial) > 0
    while True:
        grown = reachable | moves_on[reachable & ~ends].any(axis=0)
        if (grown == reachable).all():
            break
        reachable = grown
    clash = ends & moves_on[reachable & ~ends].any(axis=0)
    if clash.any():
        raise ValueError(
            f"state {np.flatnonzero(clash)[0]} is entered both with and without termination, "
            "so it cannot be made an absorbing terminal state"
        )
    P[ends] = np.eye(num_states)[ends][:, None, :]
    R[ends] = 0.0
    return TabularMDP(P, R, ends, np.asarray(initial, dtype=float))


def rollout_horizon(mdp: TabularMDP, gamma: float, alpha: float, tail: float = 1e-6) -> int:
    """Steps after which the discounted tail γ^H·max|r + α·H|/(1 − γ) is below `tail`."""
    bound = np.abs(mdp.R).max() + alpha * math.log(mdp.R.shape[1])
    if gamma == 0 or bound * gamma <= tail * (1 - gamma):
        return 1
    return math.ceil(math.log(tail * (1 - gamma) / bound) / math.log(gamma))


def rollout(env: gym.Env, pi, episodes, seed, gamma, alpha, label=""):
    """Run policy `pi` [S, A] in the real env for `episodes` episodes (episode k resets with
    seed + 100_000 + k, as every evaluation here). Returns per-episode arrays of the discounted
    soft return G = Σ_t γ^t (r_t − α·log π(a_t|s_t)), the undiscounted return Σ_t r_t, the length.

    −log π(a_t|s_t) is a one-sample estimate of the entropy H(π(·|s_t)), so E[G] = V_π(s0). It
    is a better estimate than Σ_t γ^t (r_t + α·H(π(·|s_t))): under π* every action has
    Q*(s,a) − α·log π*(a|s) = V*(s), so the choice of action adds no variance — only the env's own
    randomness does (path consistency, Nachum et al. 2017, arXiv 1702.08892) — and rare, costly
    actions that a finite sample never shows cannot bias the mean (CliffWalking's cliff).
    """
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(pi, axis=1)  # sample a ∼ π(·|s) as the first a with cdf > u
    log_pi = np.log(np.where(pi > 0, pi, 1.0))  # actions with π = 0 are never sampled
    soft_returns, returns, lengths = [], [], []
    last_print = time.time()
    for k in range(episodes):
        state, _ = env.reset(seed=seed + 100_000 + k)
        soft_return, total, discount, length, done = 0.0, 0.0, 1.0, 0, False
        while not done:
            u = rng.random() * cumulative[state, -1]
            action = min(int(np.searchsorted(cumulative[state], u, side="right")), pi.shape[1] - 1)
            next_state, reward, terminated, truncated, _ = env.step(action)
            soft_return += discount * (reward - alpha * log_pi[state, action])
            total += reward
            discount *= gamma
            length += 1
            state, done = next_state, terminated or truncated
        soft_returns.append(soft_return), returns.append(total), lengths.append(length)
        if time.time() - last_print > 5:
            print(f"  {label}: episode {k + 1}/{episodes} ({100 * (k + 1) / episodes:.0f}%)")
            last_print = time.time()
    return np.array(soft_returns), np.array(returns), np.array(lengths)


ARROWS = {"FrozenLakeEnv": "←↓→↑", "CliffWalkingEnv": "↑→↓←"}  # each env's action order


def draw_policy(env: gym.Env, pi: np.ndarray, terminal: np.ndarray) -> str | None:
    """Grid worlds only: each cell shows the most probable action and its probability."""
    base = env.unwrapped
    arrows = ARROWS.get(type(base).__name__)
    if arrows is None:
        return None
    if hasattr(base, "desc"):  # FrozenLake: S start, F frozen, H hole, G goal
        letters = base.desc.astype(str)
    else:  # CliffWalking: 4x12, start bottom-left, goal bottom-right, cliff in between
        letters = np.full(base.shape, " ")
        letters[getattr(base, "_cliff", np.zeros(base.shape, bool))] = "C"
        letters[3, 0], letters[3, -1] = "S", "G"
    lines = []
    for row in range(letters.shape[0]):
        cells = []
        for col in range(letters.shape[1]):
            s = row * letters.shape[1] + col
            mark = letters[row, col] if letters[row, col] in "SGHC" else " "
            if terminal[s] or mark == "C":  # no action is ever taken here
                cells.append(f" {mark}    ")
            else:
                best = int(np.argmax(pi[s]))
                cells.append(f"{mark}{arrows[best]}{pi[s, best]:.2f}")
        lines.append("  " + " ".join(cells))
    return "\n".join(lines)


def solve(mdp: TabularMDP, gamma: float, alpha: float, args: Args) -> SoftSolution:
    solver = soft_value_iteration if args.method == "value-iteration" else soft_policy_iteration
    with np.errstate(over="raise", invalid="raise"):
        try:
            return solver(mdp.P, mdp.R, gamma, alpha, args.tol, args.max_iterations, mdp.terminal)
        except FloatingPointError:
            raise UsageError(f"values overflow float64 at alpha={alpha}; lower --alpha") from None


def describe(mdp: TabularMDP, gamma: float, solution: SoftSolution) -> dict:
    """Exact numbers about π*, all from the start distribution μ: V*(s0) = μᵀV*, the entropy of
    π* averaged over the states it visits (discounted), and the expected discounted *reward*
    (no entropy) of π* and of the greedy policy argmax_a Q*(s,a), by evaluation (5) at α = 0."""
    visits = discounted_visitation(mdp.P, solution.pi, gamma, mdp.initial, mdp.terminal)
    greedy = soft_policy(solution.q, 0.0)
    reward_value = _evaluate(mdp.P, mdp.R, solution.pi, gamma, 0.0, mdp.terminal)[1]
    greedy_value = _evaluate(mdp.P, mdp.R, greedy, gamma, 0.0, mdp.terminal)[1]
    return {
        "v_start": float(mdp.initial @ solution.v),
        "mean_policy_entropy": float(
            visits @ policy_entropy(solution.pi) / max(visits.sum(), 1e-300)
        ),
        "policy_reward_return": float(mdp.initial @ reward_value),
        "greedy_reward_return": float(mdp.initial @ greedy_value),
    }


def validate_args(args: Args) -> None:
    if not 0 <= args.gamma < 1:
        raise UsageError(f"--gamma must be in [0, 1) (the MDP is discounted), got {args.gamma}")
    if not (math.isfinite(args.alpha) and args.alpha >= 0):
        raise UsageError(f"--alpha must be a finite number >= 0 (0 = hard VI), got {args.alpha}")
    if not args.tol > 0:
        raise UsageError(f"--tol must be positive, got {args.tol}")
    if args.max_iterations < 1:
        raise UsageError(f"--max-iterations must be at least 1, got {args.max_iterations}")
    if args.eval_episodes < 0:
        raise UsageError(f"--eval-episodes must be >= 0, got {args.eval_episodes}")


def load_mdp(env_id: str) -> tuple[TabularMDP, gym.Env]:
    try:
        env = gym.make(env_id)
    except Exception as err:  # unknown id, missing extra, broken registration, ...
        raise UsageError(f"cannot make env {env_id!r}: {err}".replace("\n", " ")) from None
    try:
        return mdp_from_env(env), env
    except ValueError as err:
        env.close()
        raise UsageError(f"{env_id} is not a tabular env: {err}") from None


def make_run_dir(args: Args) -> str:
    run_dir = f"runs/{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}"
    suffix = 1
    while os.path.exists(run_dir + (f"_{suffix}" if suffix > 1 else "")):
        suffix += 1  # two runs started in the same second: never write into another run
    run_dir += f"_{suffix}" if suffix > 1 else ""
    os.makedirs(run_dir)
    return run_dir


def write_json(path: str, data: dict) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(data, f, indent=2)
    os.replace(path + ".tmp", path)


def main(args: Args) -> dict:
    validate_args(args)
    mdp, env = load_mdp(args.env_id)  # everything that can reject the input comes first
    num_states, num_actions = mdp.R.shape
    print(f"{args.env_id}: {num_states} states ({mdp.terminal.sum()} terminal), {num_actions} "
          f"actions; soft {args.method}, gamma={args.gamma}, alpha={args.alpha}")  # fmt: skip
    start = time.perf_counter()
    solution = solve(mdp, args.gamma, args.alpha, args)
    train_time = time.perf_counter() - start
    run_dir = make_run_dir(args)
    wandb = None
    if args.track:
        import wandb

        wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, dir=run_dir,
                   config=asdict(args), name=os.path.basename(run_dir))  # fmt: skip
    # The deep-RL keys keep their meaning: no env step or gradient is used to learn here.
    summary = {"algorithm": "tabular_soft_vi", "env_id": args.env_id, "seed": args.seed,
               "global_step": 0, "gradient_updates": 0,
               "policy_updates": solution.iterations if args.method == "policy-iteration" else 0,
               "train_time_s": train_time, "learn_sps": None, "episodic_return_last": None,
               "eval_return_mean": None, "eval_return_std": None,
               "eval_episodes": args.eval_episodes, "alpha": args.alpha, "gamma": args.gamma,
               "method": args.method, "num_states": num_states, "num_actions": num_actions}  # fmt: skip
    with open(os.path.join(run_dir, "metrics.jsonl"), "a") as metrics_file:

        def log(metrics: dict) -> None:  # no env step is taken to learn: global_step stays 0
            metrics_file.write(json.dumps({"global_step": 0, **metrics}) + "\n")
            if wandb:
                wandb.log(metrics)

        try:
            report(args, mdp, env, solution, run_dir, summary, log)
        finally:  # also after Ctrl-C: whatever was computed is written down
            env.close()
            write_json(os.path.join(run_dir, "summary.json"), summary)
            if wandb:
                wandb.summary.update(
                    {k: v for k, v in summary.items() if isinstance(v, float | int | str)}
                )
                wandb.finish()
            print(f"run directory: {run_dir}")
    return summary | {"run_dir": run_dir}


def report(args: Args, mdp: TabularMDP, env: gym.Env, solution: SoftSolution, run_dir: str,
           summary: dict, log) -> None:  # fmt: skip
    """Print the solution, sweep α, roll out; results go into `summary` as soon as they exist."""
    num_states, num_actions = mdp.R.shape
    facts = describe(mdp, args.gamma, solution)
    summary.update(iterations=solution.iterations, residual=solution.residual,
                   error_bound=solution.error_bound, converged=solution.converged, **facts)  # fmt: skip
    every = max(1, solution.iterations // 200)  # at most ~200 convergence events
    for k in range(0, solution.iterations, every):
        log({"solver/iteration": k + 1, "losses/bellman_residual": solution.residuals[k]})
    print(f"{'converged' if solution.converged else 'NOT converged'} after {solution.iterations} "
          f"iterations ({1000 * summary['train_time_s']:.1f} ms): ‖TQ − Q‖∞ = "
          f"{solution.residual:.2e}, so ‖Q − Q*‖∞ ≤ {solution.error_bound:.2e}")  # fmt: skip
    print(f"V*(s0) = {facts['v_start']:.6g}; π* has mean entropy {facts['mean_policy_entropy']:.3f} "
          f"nats (max {math.log(num_actions):.3f}) and expected discounted reward "
          f"{facts['policy_reward_return']:.6g} (greedy argmax Q*: {facts['greedy_reward_return']:.6g})")  # fmt: skip
    grid = draw_policy(env, solution.pi, mdp.terminal)
    if grid:
        print("policy (most probable action, its probability):\n" + grid)
    if args.save_model:
        np.savez(os.path.join(run_dir, "model.npz"), q=solution.q, v=solution.v, pi=solution.pi,
                 terminal=mdp.terminal, args=json.dumps(asdict(args)))  # fmt: skip

    if args.alpha_sweep:
        summary["alpha_sweep"] = []
        print("alpha sweep (exact, from s0; returns are expected discounted reward, no entropy):")
        print("     alpha     V*(s0)  entropy  return of π*  greedy return  iterations")
        for alpha in (0.0, 0.001, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0):
            swept = solve(mdp, args.gamma, alpha, args)
            row = {
                "alpha": alpha,
                **describe(mdp, args.gamma, swept),
                "iterations": swept.iterations,
            }
            summary["alpha_sweep"].append(row)
            log({f"sweep/{key}": value for key, value in row.items()})
            print(f"  {alpha:8g} {row['v_start']:10.4f} {row['mean_policy_entropy']:8.3f} "
                  f"{row['policy_reward_return']:13.4f} {row['greedy_reward_return']:14.4f} "
                  f"{swept.iterations:11d}")  # fmt: skip

    if args.eval_episodes == 0:
        return
    # Monte-Carlo check of V*(s0): π* in the real env without its time limit (the MDP solved is
    # untruncated), stopped where the discounted tail can change the mean by < 1e-6.
    horizon = rollout_horizon(mdp, args.gamma, args.alpha)
    mc_env = gym.make(args.env_id, max_episode_steps=horizon)
    soft_returns, _, lengths = rollout(mc_env, solution.pi, args.eval_episodes, args.seed,
                                       args.gamma, args.alpha, "Monte-Carlo check")  # fmt: skip
    mc_env.close()
    mean = float(soft_returns.mean())
    # 99% normal interval mean ± z·s/√n, z = 2.5758; the 1e-6 allows for the truncated tail
    spread = float(soft_returns.std(ddof=1)) if len(soft_returns) > 1 else math.inf
    half_width = 2.5758 * spread / math.sqrt(len(soft_returns)) + 1e-6
    inside = abs(mean - facts["v_start"]) <= half_width
    summary.update(mc_soft_return_mean=mean, mc_soft_return_ci99=[mean - half_width, mean + half_width],
                   mc_v_start_inside_ci99=inside, mc_horizon=horizon,
                   mc_episode_length_mean=float(lengths.mean()))  # fmt: skip
    print(f"Monte-Carlo soft return Σ γ^t (r_t − α·log π*(a_t|s_t)) over {args.eval_episodes} "
          f"episodes (mean length {lengths.mean():.1f}): {mean:.6g} ± {half_width:.2g} (99%) — "
          f"V*(s0) = {facts['v_start']:.6g} is {'inside' if inside else 'OUTSIDE'}")  # fmt: skip

    # Evaluation as in the deep-RL scripts: greedy policy, the env's own time limit (capped at
    # the horizon when it has none), undiscounted episodic return.
    video_dir = os.path.join(run_dir, "videos") if args.capture_video else None
    eval_env = gym.make(args.env_id, max_episode_steps=env.spec.max_episode_steps or horizon,
                        render_mode="rgb_array" if video_dir else None)  # fmt: skip
    if video_dir:
        eval_env = gym.wrappers.RecordVideo(
            eval_env, video_dir, lambda k: k == 0, disable_logger=True
        )
    greedy = np.eye(num_actions)[np.argmax(solution.q, axis=1)]
    _, returns, _ = rollout(
        eval_env, greedy, args.eval_episodes, args.seed, 1.0, 0.0, "greedy eval"
    )
    eval_env.close()
    summary.update(eval_return_mean=float(returns.mean()), eval_return_std=float(returns.std()))
    log({"eval/episodic_return": summary["eval_return_mean"], "eval/mc_soft_return": mean,
         "losses/soft_value": facts["v_start"], "charts/policy_entropy": facts["mean_policy_entropy"]})  # fmt: skip
    print(f"greedy policy argmax Q* in {args.env_id} (its time limit, undiscounted): return "
          f"{returns.mean():.3f} ± {returns.std():.3f} over {args.eval_episodes} episodes")  # fmt: skip


if __name__ == "__main__":
    try:
        main(tyro.cli(Args))
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
