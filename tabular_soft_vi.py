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

Numerics: (2) is computed as m + α·log Σ_a exp((Q − m)/α), m = max_a Q: nothing overflows for
α from 1e-4 to 1e4 and rewards of any scale. float64 holds Q only to about eps·‖Q‖∞, so each bound
(4) reported adds δ/(1 − γ), δ = 8·eps·‖Q‖∞ for the rounding of one backup, and `converged` means
exactly: this bound ≤ tol. A smaller tol (large rewards, γ near 1) cannot be certified in float64:
the solvers stop once the residual is down to δ, with stop_reason "float64 floor".

Episode ends: a goal or a hole of a toy-text env is a terminal state, absorbing with zero reward
*and* V = 0 (the mask `terminal`): the agent no longer acts there, so it earns no entropy bonus
either (else an absorbing state would be worth α·log|A|/(1 − γ) and FrozenLake's holes would beat
its goal). So α·H also rewards staying alive: on FrozenLake at γ = 0.99, from α ≈ 0.03 up the
greedy policy of Q* never walks to the goal's +1 and π* reaches it less and less; α → ∞ gives the
policy that keeps the episode going longest, not the uniform one. The default α = 0.01 keeps the
goal; when α costs the greedy policy reward, the command line says so and sweeps α.

The command line solves a toy-text env (FrozenLake-v1, CliffWalking-v1, Taxi-v4, ...), draws π*
on grid worlds and rolls it out in the real env without a time limit (the MDP solved has none): the
mean discounted soft return must match V*(s0) within its 99% interval. Evaluation (eval_return_*) is
the greedy policy argmax_a Q*, the env's time limit, undiscounted return, as in the deep-RL scripts.
A solve takes milliseconds to seconds: there is nothing to checkpoint or resume.

Usage: python tabular_soft_vi.py --env-id FrozenLake-v1 --alpha 0.01 --gamma 0.99 [--alpha-sweep]
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
    env_id: str = "FrozenLake-v1"
    """a gymnasium toy-text env with a transition table (FrozenLake-v1, CliffWalking-v1, Taxi-v4)"""
    gamma: float = 0.99
    """the discount factor γ, in [0, 1)"""
    alpha: float = 0.01
    """the temperature α ≥ 0 (0 = hard VI; on FrozenLake α ≳ 0.03 trades the goal for entropy)"""
    method: Literal["value-iteration", "policy-iteration"] = "value-iteration"
    """the solver: soft value iteration (4) or soft policy iteration (5)"""
    tol: float = 1e-10
    """stop once ‖Q − Q*‖∞ ≤ tol is guaranteed by the contraction bound (4)"""
    max_iterations: int = 100_000
    """give up after this many iterations (reported as not converged)"""
    alpha_sweep: bool = False
    """if toggled, also tabulate V*(s0), policy entropy and returns for α from 0 upward"""
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
    eval_episodes: int = 1000
    """episodes of the Monte-Carlo check and of the greedy evaluation (0 = no rollouts)"""
    save_model: bool = False
    """if toggled, save q, v, pi to `runs/<run>/model.npz`"""


class UsageError(Exception):
    """Bad command-line input: reported as one line on stderr, exit status 2."""


# ---------------------------------------------------------------------------------- soft math
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


class TabularMDP(NamedTuple):
    P: np.ndarray  # [S, A, S] transition probabilities P[s, a, s′]
    R: np.ndarray  # [S, A] expected reward
    terminal: np.ndarray  # [S] bool: the episode ends on arrival (absorbing, zero reward, V = 0)
    initial: np.ndarray  # [S] the distribution of the first state


def _validate_mdp(P, R, gamma, alpha, terminal, tol=1.0, max_iterations=1):
    """Check the inputs of every solver; return P, R as float64 and terminal as a bool mask."""
    P, R = np.asarray(P, dtype=float), np.asarray(R, dtype=float)
    if P.ndim != 3 or P.shape[0] != P.shape[2] or R.shape != P.shape[:2]:
        raise ValueError(f"P must have shape [S, A, S] and R [S, A]; got {P.shape}, {R.shape}")
    if not (np.isfinite(P).all() and np.isfinite(R).all()):
        raise ValueError("P and R must be finite; found NaN or inf")
    if P.min() < 0:
        raise ValueError(f"P has negative transition probabilities (min {P.min():.3g})")
    if not np.allclose(row_sums := P.sum(axis=2), 1.0, rtol=0, atol=1e-8):
        s, a = np.unravel_index(np.argmax(np.abs(row_sums - 1)), row_sums.shape)
        raise ValueError(f"P[{s}, {a}, :] sums to {row_sums[s, a]:.10g}; rows must sum to 1")
    if not 0 <= gamma < 1:
        raise ValueError(f"gamma must be in [0, 1) for the discounted MDP; got {gamma}")
    if not (math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha must be a finite number >= 0; got {alpha}")
    if not tol > 0 or max_iterations < 1:
        raise ValueError(f"need tol > 0 and max_iterations >= 1; got {tol}, {max_iterations}")
    terminal = np.zeros(P.shape[0], dtype=bool) if terminal is None else np.asarray(terminal)
    if terminal.shape != (P.shape[0],) or terminal.dtype != bool:
        raise ValueError(f"terminal must be a bool mask of shape [S] = ({P.shape[0]},)")
    return P, R, terminal


def mdp_from_env(env: gym.Env) -> TabularMDP:
    """Read (P, R, terminal, initial) from a toy-text env's `unwrapped.P[s][a] = [(probability,
    next_state, reward, terminated), ...]`. A state entered with terminated=True becomes terminal
    (see Episode ends) and its own entries, which never happen, are dropped: right only if no
    reachable state enters it *without* termination, which is checked."""
    base = env.unwrapped
    table, initial = getattr(base, "P", None), getattr(base, "initial_state_distrib", None)
    spaces = (base.observation_space, base.action_space)
    tabular = isinstance(table, dict) and initial is not None
    if not tabular or not all(isinstance(x, gym.spaces.Discrete) for x in spaces):
        raise ValueError(f"{type(base).__name__} has no transition table `unwrapped.P` and start "
                         "distribution over Discrete states and actions; tabular solvers need a "
                         "toy-text env (FrozenLake-v1, CliffWalking-v1, Taxi-v4)")  # fmt: skip
    num_states, num_actions = int(base.observation_space.n), int(base.action_space.n)
    P, R = np.zeros((num_states, num_actions, num_states)), np.zeros((num_states, num_actions))
    ends, moves_on = np.zeros(num_states, bool), np.zeros((num_states, num_states), bool)
    for s in range(num_states):  # building the table once; the solvers themselves never loop
        for a in range(num_actions):
            for probability, next_state, reward, terminated in table[s][a]:
                P[s, a, next_state] += probability
                R[s, a] += probability * reward
                if terminated:
                    ends[next_state] = True
                elif probability > 0:  # s → s′ without termination
                    moves_on[s, next_state] = True
    # Grow the states reachable without ending the episode (Taxi's others walk into terminals)
    reachable = np.asarray(initial) > 0
    for _ in range(num_states):
        reachable = reachable | moves_on[reachable & ~ends].any(axis=0)
    clash = ends & moves_on[reachable & ~ends].any(axis=0)
    if clash.any():
        raise ValueError(f"state {np.flatnonzero(clash)[0]} is entered with and without "
                         "termination: it cannot be an absorbing terminal state")  # fmt: skip
    P[ends], R[ends] = np.eye(num_states)[ends][:, None, :], 0.0
    return TabularMDP(P, R, ends, np.asarray(initial, dtype=float))


# ------------------------------------------------------------------------------------- solvers
class SoftSolution(NamedTuple):
    q: np.ndarray  # [S, A] soft action values Q
    v: np.ndarray  # [S] soft values V = α·logsumexp(Q/α), eq. (2); 0 in terminal states
    pi: np.ndarray  # [S, A] policy softmax(Q/α), eq. (3); uniform in terminal states
    iterations: int  # backups (value iteration) or evaluation + improvement rounds (policy it.)
    residual: float  # ‖TQ − Q‖∞ at the last iteration
    error_bound: float  # guaranteed ‖Q − Q*‖∞: bound (4) plus float64's rounding δ/(1 − γ)
    converged: bool  # error_bound ≤ tol, and nothing else: the guarantee holds
    stop_reason: str  # "tolerance" (converged), "float64 floor" (see Numerics), "max iterations"
    residuals: np.ndarray  # the residual of every iteration (the contraction made visible)


def _stop(step: float, q: np.ndarray, gamma: float, tol: float) -> tuple[float, str | None]:
    """The bound (4) on ‖Q − Q*‖∞ from `step`, the computed ‖TQ − Q‖∞, plus δ/(1 − γ) with
    δ = 8·eps·‖Q‖∞ for float64's rounding of one backup; and why to stop now (None: go on)."""
    rounding = 8 * np.finfo(float).eps * max(1.0, float(np.abs(q).max()))
    bound = (step + rounding) / (1 - gamma)  # below δ/(1 − γ), float64 cannot resolve Q
    return bound, "tolerance" if bound <= tol else "float64 floor" if step <= rounding else None


def _solution(q, pi, residuals, bound, reason, alpha, terminal) -> SoftSolution:
    v, reason = np.where(terminal, 0.0, soft_value(q, alpha)), reason or "max iterations"
    return SoftSolution(q, v, pi, len(residuals), residuals[-1], bound, reason == "tolerance",
                        reason, np.array(residuals))  # fmt: skip


def soft_bellman_backup(q, P, R, gamma, alpha, terminal=None, check=True) -> np.ndarray:
    """T Q = R + γ·P V(Q), eqs. (2) then (1): one soft Bellman backup, [S, A]. The solvers check
    their inputs once and pass check=False inside their loops."""
    if check:
        P, R, terminal = _validate_mdp(P, R, gamma, alpha, terminal)
        q = np.asarray(q, dtype=float)
        if q.shape != R.shape:
            raise ValueError(f"q must have shape [S, A] = {R.shape}; got {q.shape}")
    v = np.where(terminal, 0.0, soft_value(q, alpha))  # the episode is over: no reward, no entropy
    q_next = R + gamma * (P.reshape(-1, len(v)) @ v).reshape(R.shape)  # all (s, a) in one product
    return np.where(terminal[:, None], 0.0, q_next)


def soft_value_iteration(P, R, gamma, alpha, tol=1e-10, max_iterations=100_000, terminal=None):
    """Iterate Q ← T Q from Q = 0 until the bound (4) guarantees ‖Q − Q*‖∞ ≤ tol."""
    P, R, terminal = _validate_mdp(P, R, gamma, alpha, terminal, tol, max_iterations)
    q, residuals = np.zeros_like(R), []
    for _ in range(max_iterations):
        q_next = soft_bellman_backup(q, P, R, gamma, alpha, terminal, check=False)
        residuals.append(float(np.abs(q_next - q).max()))
        q = q_next
        bound, reason = _stop(gamma * residuals[-1], q, gamma, tol)  # (4) for Q_{k+1}
        if reason:
            break
    return _solution(q, soft_policy(q, alpha), residuals, bound, reason, alpha, terminal)


def soft_policy_evaluation(P, R, pi, gamma, alpha, terminal=None, check=True):
    """(q_π, v_π) of a policy π [S, A], eq. (5): one linear solve, then q_π = R + γ·P v_π."""
    if check:
        P, R, terminal = _validate_mdp(P, R, gamma, alpha, terminal)
        pi = np.asarray(pi, dtype=float)
        if pi.shape != R.shape:
            raise ValueError(f"pi must have shape [S, A] = {R.shape}; got {pi.shape}")
        if not np.isfinite(pi).all() or pi.min() < 0:
            raise ValueError("pi must hold finite, non-negative probabilities")
        if not np.allclose(pi.sum(axis=1), 1.0, rtol=0, atol=1e-8):
            raise ValueError("every row pi[s, :] must sum to 1")
    pi_transitions = np.einsum("sa,sat->st", pi, P)  # P_π[s, s′]
    pi_reward = (pi * R).sum(axis=1) + alpha * policy_entropy(pi)  # r_π + α·H(π(·|s))
    pi_transitions[terminal], pi_reward[terminal] = 0.0, 0.0  # v(s) = 0: the episode is over
    v = np.linalg.solve(np.eye(len(pi_reward)) - gamma * pi_transitions, pi_reward)
    q = R + gamma * (P.reshape(-1, len(v)) @ v).reshape(R.shape)
    return np.where(terminal[:, None], 0.0, q), v


def soft_policy_iteration(P, R, gamma, alpha, tol=1e-10, max_iterations=1_000, terminal=None):
    """Alternate evaluation (5) and improvement π ← softmax(q_π/α) from the uniform policy."""
    P, R, terminal = _validate_mdp(P, R, gamma, alpha, terminal, tol, max_iterations)
    pi, residuals = np.full(R.shape, 1.0 / R.shape[1]), []
    for _ in range(max_iterations):
        q, _ = soft_policy_evaluation(P, R, pi, gamma, alpha, terminal, check=False)
        backup = soft_bellman_backup(q, P, R, gamma, alpha, terminal, check=False)
        residuals.append(float(np.abs(backup - q).max()))
        pi = soft_policy(q, alpha)  # the improvement step (SAC Lemma 2)
        bound, reason = _stop(residuals[-1], q, gamma, tol)  # (4) for Q = q_π
        if reason:
            break
    return _solution(q, pi, residuals, bound, reason, alpha, terminal)


def rollout(env: gym.Env, pi, episodes, seed, gamma, alpha, label=""):
    """Run `pi` [S, A] in the real env for `episodes` episodes (episode k resets with seed +
    100_000 + k); return per-episode arrays of the discounted soft return
    G = Σ_t γ^t (r_t − α·log π(a_t|s_t)), the undiscounted return Σ_t r_t and the length.
    E[G] = V_π(s0) since −log π(a_t|s_t) estimates H(π(·|s_t)), better than Σ_t γ^t (r_t +
    α·H(π(·|s_t))) does: under π* every action has Q*(s,a) − α·log π*(a|s) = V*(s), so only the
    env's own randomness adds variance (path consistency, Nachum et al. 2017, arXiv 1702.08892),
    and rare, costly actions that a finite sample never shows cannot bias the mean (the cliff)."""
    rng, results, last_print = np.random.default_rng(seed), np.zeros((episodes, 3)), time.time()
    cumulative = np.cumsum(pi, axis=1)  # sample a ∼ π(·|s) as the first a with cdf > u
    log_pi = np.log(np.where(pi > 0, pi, 1.0))  # actions with π = 0 are never sampled
    for k in range(episodes):
        (state, _), discount, done = env.reset(seed=seed + 100_000 + k), 1.0, False
        while not done:
            u = rng.random() * cumulative[state, -1]
            action = min(int(np.searchsorted(cumulative[state], u, side="right")), pi.shape[1] - 1)
            next_state, reward, terminated, truncated, _ = env.step(action)
            results[k] += discount * (reward - alpha * log_pi[state, action]), reward, 1
            state, done, discount = next_state, terminated or truncated, discount * gamma
        if time.time() - last_print > 5:
            print(f"  {label}: episode {k + 1}/{episodes} ({100 * (k + 1) / episodes:.0f}%)")
            last_print = time.time()
    return results.T  # soft returns, returns, lengths


def draw_policy(env: gym.Env, pi: np.ndarray, terminal: np.ndarray) -> str | None:
    """Grid worlds only: each cell shows the most probable action and its probability."""
    base = env.unwrapped
    arrows = {"FrozenLakeEnv": "←↓→↑", "CliffWalkingEnv": "↑→↓←"}.get(type(base).__name__)
    if arrows is None:  # (each env's own action order)
        return None
    if hasattr(base, "desc"):  # FrozenLake: S start, F frozen, H hole, G goal
        letters = base.desc.astype(str)
    else:  # CliffWalking: 4x12, start bottom-left, goal bottom-right, cliff in between
        letters = np.full(base.shape, " ")
        letters[getattr(base, "_cliff", np.zeros(base.shape, bool))] = "C"
        letters[3, 0], letters[3, -1] = "S", "G"
    marks = [letter if letter in "SGHC" else " " for letter in letters.ravel()]
    cells = [f" {mark}    " if terminal[s] or mark == "C" else f"{mark}{arrows[a]}{pi[s, a]:.2f}"
             for s, (mark, a) in enumerate(zip(marks, pi.argmax(axis=1), strict=True))]  # fmt: skip
    return "\n".join("  " + " ".join(row) for row in np.array(cells).reshape(letters.shape))


def solve(mdp: TabularMDP, gamma: float, alpha: float, args: Args) -> SoftSolution:
    solver = soft_value_iteration if args.method == "value-iteration" else soft_policy_iteration
    with np.errstate(over="raise", invalid="raise"):
        try:
            return solver(mdp.P, mdp.R, gamma, alpha, args.tol, args.max_iterations, mdp.terminal)
        except FloatingPointError:
            raise UsageError(f"values overflow float64 at alpha={alpha}; lower --alpha") from None


def describe(mdp: TabularMDP, gamma: float, solution: SoftSolution) -> dict:
    """Exact numbers about π*, from the start distribution μ: V*(s0) = μᵀV*; the entropy of π*
    averaged over the discounted visitation d(s) = (1 − γ)·Σ_t γ^t Pr(s_t = s, episode not over),
    dᵀ = (1 − γ)·μᵀ (I − γ·P_π)⁻¹; the expected discounted *reward* (no entropy) of π* and of the
    greedy policy argmax_a Q*(s,a), by evaluation (5) at α = 0."""
    pi_transitions = np.einsum("sa,sat->st", solution.pi, mdp.P)
    pi_transitions[mdp.terminal] = 0.0  # the episode ends on arrival: no time is spent there
    visits = np.linalg.solve((np.eye(len(mdp.initial)) - gamma * pi_transitions).T, mdp.initial)
    visits = np.where(mdp.terminal, 0.0, visits)  # (the factor 1 − γ cancels in the average)
    reward, greedy = (soft_policy_evaluation(mdp.P, mdp.R, pi, gamma, 0.0, mdp.terminal)[1]
                      for pi in (solution.pi, soft_policy(solution.q, 0.0)))  # fmt: skip
    entropy = visits @ policy_entropy(solution.pi) / max(visits.sum(), 1e-300)
    return {"v_start": float(mdp.initial @ solution.v), "mean_policy_entropy": float(entropy),
            "policy_reward_return": float(mdp.initial @ reward),
            "greedy_reward_return": float(mdp.initial @ greedy)}  # fmt: skip


def report(args: Args, mdp: TabularMDP, env: gym.Env, solution: SoftSolution, run_dir: str,
           summary: dict, log) -> None:  # fmt: skip
    """Print the solution, sweep α, roll out; results go into `summary` as soon as they exist.
    When α costs the greedy policy reward, say why, sweep α and name an α that keeps it."""
    facts = describe(mdp, args.gamma, solution)
    best = float(mdp.initial @ solve(mdp, args.gamma, 0.0, args).v)  # reward-optimal: α = 0
    enough = best - 0.01 * abs(best) - 1e-9  # a greedy return that keeps the reward (to 1 %)
    bites = facts["greedy_reward_return"] < enough
    scalars = {key: value for key, value in solution._asdict().items() if np.ndim(value) == 0}
    summary.update(scalars, **facts, reward_optimal_return=best, alpha_note=None)
    log({"losses/soft_value": facts["v_start"],
         "charts/policy_entropy": facts["mean_policy_entropy"]})  # fmt: skip
    for k in range(0, solution.iterations, max(1, solution.iterations // 200)):  # ≤ ~200 events
        log({"solver/iteration": k + 1, "losses/bellman_residual": solution.residuals[k]})
    print(f"{'converged' if solution.converged else 'NOT converged'} ({solution.stop_reason}) "
          f"after {solution.iterations} iterations ({1000 * summary['train_time_s']:.1f} ms): "
          f"‖TQ − Q‖∞ = {solution.residual:.2e}, so ‖Q − Q*‖∞ ≤ {solution.error_bound:.2e} "
          f"(--tol {args.tol:g})")  # fmt: skip
    print("V*(s0) = {v_start:.6g}; π* has mean entropy {mean_policy_entropy:.3f} nats (max {:.3f}) "
          "and expected discounted reward {policy_reward_return:.6g} (greedy argmax Q*: "
          "{greedy_reward_return:.6g})".format(math.log(mdp.R.shape[1]), **facts))  # fmt: skip
    if grid := draw_policy(env, solution.pi, mdp.terminal):
        print("policy (most probable action, its probability):\n" + grid)
    if args.save_model:
        np.savez(os.path.join(run_dir, "model.npz"), q=solution.q, v=solution.v, pi=solution.pi,
                 terminal=mdp.terminal, args=json.dumps(asdict(args)))  # fmt: skip
    if args.alpha_sweep or bites:
        summary["alpha_sweep"] = []
        print("alpha sweep (exact, from s0; returns are expected discounted reward, no entropy):")
        print("     alpha     V*(s0)  entropy  return of π*  greedy return  iterations")
        for alpha in (0.0, 0.001, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0):
            swept = solve(mdp, args.gamma, alpha, args)
            row = dict(alpha=alpha, **describe(mdp, args.gamma, swept), iterations=swept.iterations)
            summary["alpha_sweep"].append(row)
            log({f"sweep/{key}": value for key, value in row.items()})
            print("  {:8g} {:10.4f} {:8.3f} {:13.4f} {:14.4f} {:11d}".format(*row.values()))
            if alpha < args.alpha and row["greedy_reward_return"] >= enough:
                keeper = alpha  # the largest α < --alpha that keeps the reward (α = 0 always does)
    if args.eval_episodes > 0:
        # Monte-Carlo check without the time limit, for H steps: γ^H·max|r + α·H|/(1 − γ) < 1e-6
        tail = (np.abs(mdp.R).max() + args.alpha * math.log(mdp.R.shape[1])) / (1 - args.gamma)
        horizon = math.ceil(math.log(1e-6 / tail, args.gamma)) if args.gamma * tail > 1e-6 else 1
        with gym.make(args.env_id, max_episode_steps=horizon) as mc_env:
            soft_returns, _, lengths = rollout(mc_env, solution.pi, args.eval_episodes, args.seed,
                                               args.gamma, args.alpha, "Monte-Carlo")  # fmt: skip
        mean, n = float(soft_returns.mean()), len(soft_returns)
        # 99% normal interval mean ± z·s/√n, z = 2.5758; the 1e-6 allows for the truncated tail
        half_width = 2.5758 * soft_returns.std(ddof=1) / math.sqrt(n) + 1e-6 if n > 1 else math.inf
        inside = bool(abs(mean - facts["v_start"]) <= half_width)
        summary.update(mc_soft_return_mean=mean, mc_v_start_inside_ci99=inside, mc_horizon=horizon,
                       mc_soft_return_ci99=[mean - half_width, mean + half_width],
                       mc_episode_length_mean=float(lengths.mean()))  # fmt: skip
        print(f"Monte-Carlo soft return Σ γ^t (r_t − α·log π*(a_t|s_t)) over {n} episodes (mean "
              f"length {lengths.mean():.1f}): {mean:.6g} ± {half_width:.2g} (99%) — V*(s0) = "
              f"{facts['v_start']:.6g} is {'inside' if inside else 'OUTSIDE'}")  # fmt: skip
        video_dir = os.path.join(run_dir, "videos") if args.capture_video else None
        eval_env = gym.make(args.env_id, max_episode_steps=env.spec.max_episode_steps or horizon,
                            render_mode="rgb_array" if video_dir else None)  # fmt: skip
        if video_dir:
            eval_env = gym.wrappers.RecordVideo(
                eval_env, video_dir, lambda k: k == 0, name_prefix="eval"
            )
        with eval_env:
            greedy = np.eye(mdp.R.shape[1])[np.argmax(solution.q, axis=1)]
            _, returns, _ = rollout(eval_env, greedy, n, args.seed, 1.0, 0.0, "greedy eval")
        summary.update(eval_return_mean=float(returns.mean()), eval_return_std=float(returns.std()))
        log({"eval/episodic_return": summary["eval_return_mean"], "eval/mc_soft_return": mean})
        print(f"greedy policy argmax Q* in {args.env_id} (its time limit, undiscounted): return "
              f"{returns.mean():.3f} ± {returns.std():.3f} over {n} episodes")  # fmt: skip
    if bites:
        summary["alpha_note"] = (
            f"note: at alpha={args.alpha:g} the entropy bonus outweighs the reward: greedy argmax "
            f"Q* expects {facts['greedy_reward_return']:.4g} discounted reward, the reward-optimal "
            f"policy {best:.4g}\nnote: α·H is earned on every step until the episode ends, so a "
            "large alpha pays for long episodes more than the reward pays for ending them\nnote: "
            f"--alpha {keeper:g} keeps the reward-optimal greedy policy here (see the sweep above)"
        )
        print(summary["alpha_note"])


def main(args: Args) -> dict:
    for ok, problem in [  # everything that can reject the input comes first
        (0 <= args.gamma < 1, f"--gamma must be in [0, 1) (a discounted MDP), got {args.gamma}"),
        (0 <= args.alpha < math.inf, f"--alpha must be a finite number >= 0, got {args.alpha}"),
        (args.tol > 0, f"--tol must be positive, got {args.tol}"),
        (args.max_iterations >= 1, f"--max-iterations must be >= 1, got {args.max_iterations}"),
        (args.eval_episodes >= 0, f"--eval-episodes must be >= 0, got {args.eval_episodes}"),
    ]:  # fmt: skip
        if not ok:
            raise UsageError(problem)
    try:
        env = gym.make(args.env_id)
    except Exception as err:  # unknown id, missing extra, broken registration, ...
        raise UsageError(f"cannot make env {args.env_id!r}: {err}".replace("\n", " ")) from None
    try:
        mdp = mdp_from_env(env)
    except ValueError as err:
        env.close()
        raise UsageError(f"{args.env_id} is not a tabular env: {err}") from None
    num_states, num_actions = mdp.R.shape
    print(f"{args.env_id}: {num_states} states ({mdp.terminal.sum()} terminal), {num_actions} "
          f"actions; soft {args.method}, gamma={args.gamma}, alpha={args.alpha}")  # fmt: skip
    start = time.perf_counter()
    solution = solve(mdp, args.gamma, args.alpha, args)
    train_time, stamp = time.perf_counter() - start, int(time.time())
    while os.path.exists(run_dir := f"runs/{args.env_id}__{args.exp_name}__{args.seed}__{stamp}"):
        stamp += 1  # two runs started in the same second: never share a directory
    os.makedirs(run_dir)
    wandb = __import__("wandb") if args.track else None  # imported only when asked for
    if wandb:
        wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, dir=run_dir,
                   config=asdict(args), name=os.path.basename(run_dir))  # fmt: skip
    # The deep-RL keys keep their meaning: no env step or gradient is used to learn here.
    summary = {"algorithm": "tabular_soft_vi", "env_id": args.env_id, "seed": args.seed,
               "status": "crashed", "global_step": 0, "gradient_updates": 0,
               "policy_updates": solution.iterations if args.method == "policy-iteration" else 0,
               "train_time_s": train_time, "learn_sps": None, "episodic_return_last": None,
               "eval_return_mean": None, "eval_return_std": None, "alpha": args.alpha,
               "eval_episodes": args.eval_episodes, "gamma": args.gamma, "method": args.method,
               "num_states": num_states, "num_actions": num_actions}  # fmt: skip
    events = []  # metrics.jsonl rows, written at the end like summary.json (Ctrl-C included)
    try:
        report(args, mdp, env, solution, run_dir, summary, events.append)
        summary["status"] = "finished"  # "crashed" stays only if an exception escapes
    except KeyboardInterrupt:
        summary["status"] = "interrupted"
        raise
    finally:  # whatever was computed is written down; summary.json atomically
        env.close()
        with open(os.path.join(run_dir, "metrics.jsonl"), "w") as f:  # no env step: global_step 0
            f.writelines(json.dumps({"global_step": 0, **event}) + "\n" for event in events)
        with open(os.path.join(run_dir, "summary.json.tmp"), "w") as f:
            json.dump(summary, f, indent=2)
        os.replace(f.name, os.path.join(run_dir, "summary.json"))
        if wandb:
            for event in events:
                wandb.log(event)
            wandb.summary.update({k: v for k, v in summary.items() if np.isscalar(v)})
            wandb.finish()
        print(f"{summary['status']}: results in {run_dir}")
    return summary | {"run_dir": run_dir}


if __name__ == "__main__":
    try:
        main(tyro.cli(Args))
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:  # summary.json, once there is a run, says "interrupted"
        raise SystemExit(130) from None
