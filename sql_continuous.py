"""Soft Q-learning (SQL) for continuous actions, with an amortized SVGD sampling network, in one file.

Haarnoja, Tang, Abbeel, Levine (2017), "Reinforcement Learning with Deep Energy-Based Policies",
arXiv 1702.08165; hyperparameters from the authors' reference code, haarnoja/softqlearning.

Maximum-entropy objective (eq. 2):  J(π) = Σ_t E[ r̂(s_t, a_t) + α H(π(·|s_t)) ],  r̂ = reward_scale·r.
Its optimal policy is energy-based: π(a|s) ∝ exp(Q(s, a)/α) (Theorem 1), with no parametric form.

Soft Q. One soft Q-network Q and a target Q̄ (a hard copy every --target-network-frequency updates,
as in the paper). The soft value of the next state is an importance-sampled log-partition function
with a uniform proposal over the action box [−1, 1]^d (density 2^−d; eq. 10):
    V(s′) = α log ∫ exp(Q̄(s′, a)/α) da ≈ α [ logsumexp_j(Q̄(s′, a_j)/α) − log M + d log 2 ],
    a_j ~ U[−1, 1]^d, j = 1..M (--value-n-particles),
    y   = r̂ + γ (1 − terminated) V(s′),        J_Q = E[ ½ (Q(s, a) − y)² ]        (eq. 11).
Only *termination* stops the bootstrap; a time-limit truncation bootstraps from the true last obs.

Sampling network. a = tanh(u), u = f_φ(s, ξ), ξ ~ N(0, I_d): any distribution the network can push ξ
to. It is trained by amortized Stein variational gradient descent (eq. 13, 14): for each state draw
K particles (--kernel-n-particles), split them into K_f fixed particles u′_j (the expectation over j)
and K_u updated particles u_i (--kernel-update-ratio), and move each u_i along
    Δu_i = (1/K_f) Σ_j [ κ(u′_j, u_i) ∇_{u′} log p(u′_j|s) + ∇_{u′} κ(u′_j, u_i) ],
the direction that most quickly lowers KL(sampler ‖ p) in the kernel's function space: the first
term pulls particles uphill on log p, the second pushes them apart (eq. 13 is this times α). The step is passed into φ
through the network's Jacobian:  ∇_φ J ≈ −E_s Σ_i Δu_i ∂u_i/∂φ  (implemented as the surrogate loss
−Σ_i ⟨stop_grad(Δu_i), u_i⟩). The target density of u is π's density pulled back through tanh:
    log p(u|s) = Q(s, tanh u)/α + Σ_k log(1 − tanh² u_k) + const,
    log(1 − tanh² u) = 2 (log 2 − u − softplus(−2u))                   (stable for large |u|),
so a = tanh(u) is distributed as exp(Q(s, a)/α) on the box. The kernel is the RBF kernel with the
median-heuristic bandwidth of the reference code (Liu & Wang 2016):
    κ(x, y) = exp(−‖x − y‖² / h),   h = median_{j,i} ‖u′_j − u_i‖² / log K_f,
    ∇_x κ(x, y) = −2 (x − y) / h · κ(x, y).
Each update takes the Q step, then the sampler step against the just-updated online Q, then the
target update (the order of the paper's Algorithm 1).

Temperature and reward scale. Only the ratio α / reward_scale shapes π (scaling rewards by c scales
Q by c): it is the effective temperature, in units of the env's own reward, and it is what the
progress line, losses/alpha and the summary's "alpha" report (the summary adds "reward_scale").
The reference code keeps α = 1 and sets the temperature through the reward scale, per env:
    MultiGoal 0.1 (examples/multigoal_sql.py), Swimmer/Hopper/HalfCheetah 30, Walker2d 10, Ant 300,
    Humanoid 100 (examples/mujoco_all_sql.py). Pendulum 5 was chosen here (not in the reference).
Other reference values used as defaults: 2 hidden layers of 128 units, Adam 3e-4 for both networks,
batch 128, 16 value particles, 16 kernel particles with update ratio 0.5, target copy every 1000
updates, γ = 0.99, one gradient step per env step. For MultiGoal-v0 the defaults of --batch-size,
--kernel-n-particles and --learning-starts become the reference's 64, 32 and 100 (a flag you set
wins), and its episodes last 30 steps (the env below has that time limit).

Evaluation (--eval-policy). SQL's policy is a sampler with no mode or mean to read off. `greedy`
(the default) takes the best of --eval-n-particles sampled actions, a = argmax_j Q(s, tanh f_φ(s, ξ_j)),
the max-Q action within the policy's support; `sampler` evaluates the sampler itself, one
a = tanh f_φ(s, ξ) per step. Either way the noise comes from torch's RNG, seeded per episode and
restored afterwards, so evaluation is repeatable and leaves training alone. On MultiGoal-v0 every
evaluation also rolls out the *stochastic* sampler 50 times from the origin and counts the goals it
reaches (goals_reached, rollouts_at_goal), since multimodality is Figure 1's point; with --plot it
also draws that figure (runs/<run>/multigoal.png), in training or with --eval-checkpoint.

Departures from the paper and the reference code, and why:
- Evaluation is greedy by default, where the reference evaluates the sampler (--eval-policy
  sampler): like SAC's deterministic policy, it measures what Q has learned without the entropy's
  noise, so returns compare across the family; the sampler's return also carries that noise.
- SVGD runs on the pre-tanh u, with the kernel and ∇ log p both in u-space. The reference adds the
  tanh term to Q but differentiates and measures distances in a-space, a mix whose fixed point is
  exp(Q/α)·Π_k(1 − a_k²) rather than exp(Q/α). On the known bimodal density of
  tests/test_sql_continuous.py this sampler's variance is within 10% of the truth; the
  reference's mix comes out 24-32% too narrow.
- Uniform-random actions for --learning-starts steps (1000, the reference's minimum pool size for
  MuJoCo) instead of the untrained sampler; importance-sampling particles are drawn per next-state
  rather than shared by the batch; the SVGD surrogate is averaged (not summed) over particles and
  states, which Adam's per-parameter scaling makes equivalent.
- With --num-envs N every loop iteration takes N env steps and does N gradient updates.
- --compile (off by default): torch.compile turns the whole update (losses, the SVGD direction and
  the gradients by traced torch.autograd.grad, torch's functional Adam on the optimizers' own
  state, the target update) into one graph with no breaks. It pays little on a 2-core CPU
  (Walker2d-v4: 157 vs 142 SPS eager; the 128-wide networks leave little to fuse); CUDA: unmeasured.
- --cudagraphs (CUDA only; implies --compile): torch.compile's CUDA-graph mode replays the
  compiled update as CUDA graphs, with Adam "capturable" (its step count on the
  GPU) and the tensors the update changes in place marked static; on a CPU it prints a notice and
  runs as --compile. Written and checked for its plumbing on CPU, not yet run on a GPU.

Usage (see --help for every flag):
    python sql_continuous.py --env-id HalfCheetah-v4     # the paper's MuJoCo setting, 1M steps
    python sql_continuous.py --env-id MultiGoal-v0 --total-timesteps 10000 --plot
    python sql_continuous.py --env-id Pendulum-v1 --total-timesteps 10000 --hidden-dim 64 --tau 0.005 --target-network-frequency 1 --q-lr 1e-3 --policy-lr 1e-3
The second draws Figure 1 (runs/<run>/multigoal.png); the third is a quick check (−200 by 8k steps).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import random
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, fields, replace
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro
from torch.optim.adam import adam as functional_adam

ALGORITHM = "sql_continuous"


@dataclass
class Args:
    env_id: str = "HalfCheetah-v4"
    """the id of a gymnasium environment with a Box action space (MultiGoal-v0 is defined here)"""
    total_timesteps: int = 1_000_000
    """total environment steps, summed over all envs"""
    num_envs: int = 1
    """number of parallel environments (gymnasium SyncVectorEnv)"""
    buffer_size: int = 1_000_000
    """replay buffer capacity, in transitions"""
    gamma: float = 0.99
    """discount factor γ"""
    tau: float = 1.0
    """target update weight: Q̄ ← (1 − τ) Q̄ + τ Q every --target-network-frequency updates (1 = copy)"""
    batch_size: int | None = None
    """minibatch size of each gradient update; None: the reference's 64 on MultiGoal-v0, else 128"""
    learning_starts: int | None = None
    """env steps of uniform-random actions before the first update; None: 100 on MultiGoal-v0, else 1000"""
    target_network_frequency: int = 1_000
    """gradient updates between target-network updates (1000 and a hard copy in the reference code)"""
    policy_lr: float = 3e-4
    """Adam learning rate of the sampling network"""
    q_lr: float = 3e-4
    """Adam learning rate of the soft Q-network"""
    hidden_dim: int = 128
    """width of the two hidden layers of every network"""
    alpha: float = 1.0
    """the temperature α (fixed); the reference code keeps α = 1 and tunes --reward-scale instead"""
    reward_scale: float | None = None
    """r̂ = reward_scale·r; None: the reference code's per-env value (MultiGoal 0.1, Swimmer/Hopper/HalfCheetah 30, Walker2d 10, Ant 300, Humanoid 100; Pendulum 5, chosen here), else 1"""
    value_n_particles: int = 16
    """M, uniform action samples per next state in the importance-sampled soft value V(s′)"""
    kernel_n_particles: int | None = None
    """K, sampler particles per state in each SVGD update; None: the reference's 32 on MultiGoal-v0, else 16"""
    kernel_update_ratio: float = 0.5
    """fraction of the K particles that are updated; the others are the fixed particles u′_j"""
    eval_policy: Literal["greedy", "sampler"] = "greedy"
    """evaluate the best of --eval-n-particles sampled actions by Q (greedy), or the sampler itself (the reference's choice)"""
    eval_n_particles: int = 32
    """sampled actions per state from which greedy evaluation takes the one with the highest Q"""

    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (part of the run directory's name)"""
    seed: int = 1
    """seed of the experiment (python, numpy, torch and the environments)"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=True`"""
    cuda: bool = True
    """use CUDA when it is available (falls back to CPU with a notice)"""
    torch_threads: int = 0
    """CPU threads of torch's operators (0 = half the cores, at most 4, so that runs sharing the
    machine do not fight over cores; README has the measurements)"""
    track: bool = False
    """log the run to Weights & Biases (`WANDB_MODE=offline` works without network)"""
    wandb_project_name: str = "softrl"
    """the wandb project name"""
    wandb_entity: str | None = None
    """the wandb entity (team); None means your default entity"""
    capture_video: bool = False
    """record the first episode of every evaluation to runs/<run>/videos (MuJoCo uses MUJOCO_GL=egl)"""
    eval_frequency: int = 10_000
    """env steps between evaluations of the --eval-policy (0 = only at the end)"""
    eval_episodes: int = 10
    """episodes per evaluation"""
    log_frequency: int = 1_000
    """env steps between logging losses to metrics.jsonl (the only host syncs of the update)"""
    save_model: bool = False
    """save the networks to runs/<run>/model.pt at the end"""
    checkpoint_frequency: int = 0
    """env steps between full checkpoints to runs/<run>/checkpoint.pt (0 = off; Ctrl-C/SIGTERM also save)"""
    resume: str | None = None
    """path of a checkpoint.pt to continue (its run keeps its settings; a typed --total-timesteps extends it)"""
    eval_checkpoint: str | None = None
    """path of a model.pt or checkpoint.pt: evaluate that policy, write summary.json, train nothing"""
    compile: bool = False
    """torch.compile the whole update into one graph (2-core CPU: 1.1x SPS; CUDA: unmeasured)"""
    cudagraphs: bool = False
    """CUDA only, implies --compile: replay the compiled update as a CUDA graph (on CPU: a notice, then --compile)"""
    plot: bool = False
    """MultiGoal-v0 only: draw runs/<run>/multigoal.png at each evaluation (Q at the origin, 50 sampled trajectories)"""

    def __post_init__(self):
        """A None default becomes the reference code's value for this env, once, when Args is built."""
        multigoal = self.env_id == "MultiGoal-v0"
        for name, value in (MULTIGOAL_SETTINGS if multigoal else OTHER_SETTINGS).items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.reward_scale is None:
            family = self.env_id.split("/")[-1].split("-")[0]
            self.reward_scale = REFERENCE_REWARD_SCALES.get(family, 1.0)


# The reference code's env-dependent settings (haarnoja/softqlearning examples/): MultiGoal's from
# multigoal_sql.py, the rest from mujoco_all_sql.py; Pendulum's reward scale was chosen here.
MULTIGOAL_SETTINGS = dict(batch_size=64, kernel_n_particles=32, learning_starts=100)
OTHER_SETTINGS = dict(batch_size=128, kernel_n_particles=16, learning_starts=1_000)
REFERENCE_REWARD_SCALES = {"MultiGoal": 0.1, "Swimmer": 30.0, "Hopper": 30.0, "HalfCheetah": 30.0}
REFERENCE_REWARD_SCALES |= {"Walker2d": 10.0, "Ant": 300.0, "Humanoid": 100.0, "Pendulum": 5.0}


def check_args(args: Args) -> None:
    positive = ["policy_lr", "q_lr", "hidden_dim", "alpha", "reward_scale", "value_n_particles"]
    for name in [*positive, "eval_n_particles", "target_network_frequency"]:
        if not getattr(args, name) > 0:
            raise UsageError(
                f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}"
            )
    num_updated = int(args.kernel_n_particles * args.kernel_update_ratio)
    if num_updated < 1 or args.kernel_n_particles - num_updated < 2:
        raise UsageError(
            f"--kernel-n-particles {args.kernel_n_particles} with --kernel-update-ratio "
            f"{args.kernel_update_ratio} gives {num_updated} updated and "
            f"{args.kernel_n_particles - num_updated} fixed particles; SVGD needs at least 1 and 2"
        )
    if args.eval_policy not in ("greedy", "sampler"):
        raise UsageError(f"--eval-policy must be greedy or sampler, got {args.eval_policy!r}")
    if args.plot and args.env_id != "MultiGoal-v0" and not (args.resume or args.eval_checkpoint):
        raise UsageError(f"--plot draws the MultiGoal-v0 figure; it cannot plot {args.env_id}")
    if args.plot:
        try:
            import matplotlib  # noqa: F401 (only checks, before training, that --plot can work)
        except ImportError:
            raise UsageError("--plot needs matplotlib: pip install matplotlib") from None


# ---- Soft-Q and SVGD math (pure functions; tests check them against independent oracles)
def uniform_soft_value(q_values: torch.Tensor, alpha: float, act_dim: int) -> torch.Tensor:
    """V = α[logsumexp_j(Q_j/α) − log M + d log 2] (eq. 10) from Q at M actions a_j ~ U[−1, 1]^d.

    exp(V/α) is an unbiased estimate of ∫ exp(Q/α) da: the mean of exp(Q_j/α)/q(a_j) with
    q = 2^−d the uniform density; logsumexp keeps it finite when Q/α is large.
    """
    num_particles = q_values.shape[-1]
    log_mean = torch.logsumexp(q_values / alpha, dim=-1) - math.log(num_particles)
    return alpha * (log_mean + act_dim * math.log(2.0))


def soft_q_target(scaled_reward, terminated, next_value, gamma: float) -> torch.Tensor:
    """y = r̂ + γ(1 − terminated) V(s′): the soft Bellman backup (eq. 11)."""
    return scaled_reward + gamma * (1.0 - terminated) * next_value


def tanh_log_det(pre_tanh: torch.Tensor) -> torch.Tensor:
    """Σ_k log(1 − tanh² u_k) = Σ_k 2(log 2 − u_k − softplus(−2u_k)), finite for any u."""
    return (2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))).sum(-1)


def median_bandwidth(fixed: torch.Tensor, updated: torch.Tensor, h_min: float = 1e-3):
    """h = median_{j,i} ‖x_j − y_i‖² / log K_f per set of particles, at least h_min.

    fixed [..., K_f, d], updated [..., K_u, d] → h [...]. With h the kernel's value at the median
    distance is 1/K_f, so each particle's neighbours (not all K_f of them) dominate its update
    (Liu & Wang 2016). For an even count the lower of the two middle values is taken.
    """
    squared_distances = (fixed[..., :, None, :] - updated[..., None, :, :]).pow(2).sum(-1)
    median = squared_distances.flatten(-2).median(dim=-1).values
    return (median / math.log(fixed.shape[-2])).clamp(min=h_min)


def rbf_kernel(fixed: torch.Tensor, updated: torch.Tensor, bandwidth: torch.Tensor):
    """κ(x_j, y_i) = exp(−‖x_j − y_i‖²/h) and its gradient in x_j, −2(x_j − y_i)/h · κ.

    Returns κ [..., K_f, K_u] and ∇_x κ [..., K_f, K_u, d]; h [...] is treated as a constant.
    """
    difference = fixed[..., :, None, :] - updated[..., None, :, :]
    h = bandwidth[..., None, None]
    kappa = torch.exp(-difference.pow(2).sum(-1) / h)
    return kappa, -2.0 * difference / h[..., None] * kappa[..., None]


def stein_direction(fixed: torch.Tensor, updated: torch.Tensor, grad_log_p_fixed: torch.Tensor):
    """Δy_i = mean_j [κ(x_j, y_i) ∇ log p(x_j) + ∇_{x_j} κ(x_j, y_i)] (eq. 13), and the bandwidth.

    fixed x [..., K_f, d] with ∇ log p at them [..., K_f, d]; updated y [..., K_u, d] → [..., K_u, d].
    """
    bandwidth = median_bandwidth(fixed, updated)
    kappa, kappa_grad = rbf_kernel(fixed, updated, bandwidth)
    attraction = kappa[..., None] * grad_log_p_fixed[..., :, None, :]
    return (attraction + kappa_grad).mean(dim=-3), bandwidth


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """θ̄ ← (1 − τ) θ̄ + τ θ, in place; τ = 1 is the paper's hard copy θ̄ ← θ, bit for bit."""
    if tau == 1.0:
        torch._foreach_copy_(list(target.parameters()), list(online.parameters()))
    else:
        torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), tau)


# ---- The multi-goal task of the paper's Figure 1
class MultiGoalEnv(gym.Env):
    """A 2-D point mass that should reach any one of four goals (paper Section 6.1, Figure 1).

    The reference task, haarnoja/softqlearning softqlearning/environments/multigoal.py:
    position p ∈ [−7, 7]², starting at N(0, 0.1² I); action = velocity a ∈ [−1, 1]²;
    p′ = clip(p + a, −7, 7) (no noise); goals g ∈ {(5, 0), (−5, 0), (0, 5), (0, −5)};
    r = −30 ‖a‖² − min_g ‖p′ − g‖², plus 10 and termination once min_g ‖p′ − g‖ < 1;
    registered below with a 30-step time limit (max_path_length in examples/multigoal_sql.py).
    """

    GOALS = np.array([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0], [0.0, -5.0]])
    GOAL_RADIUS, BOUND = 1.0, 7.0
    ACTION_COST, DISTANCE_COST, GOAL_REWARD = 30.0, 1.0, 10.0
    metadata = {"render_modes": []}

    def __init__(self, render_mode=None):
        self.render_mode = render_mode  # none is supported: check_env_spaces says so
        self.observation_space = gym.spaces.Box(-self.BOUND, self.BOUND, (2,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.state = np.zeros(2)  # the position; an ndarray `state` lets checkpoints capture it

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = np.clip(0.1 * self.np_random.standard_normal(2), -self.BOUND, self.BOUND)
        return self.state.astype(np.float32), {}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
        self.state = np.clip(self.state + action, -self.BOUND, self.BOUND)
        goal_distance = np.linalg.norm(self.state - self.GOALS, axis=1).min()
        reward = -self.ACTION_COST * np.sum(action**2) - self.DISTANCE_COST * goal_distance**2
        terminated = bool(goal_distance < self.GOAL_RADIUS)
        reward += self.GOAL_REWARD if terminated else 0.0
        return self.state.astype(np.float32), float(reward), terminated, False, {}


if "MultiGoal-v0" not in gym.registry:
    gym.register("MultiGoal-v0", entry_point=MultiGoalEnv, max_episode_steps=30)


# ---- Environment check, networks, replay buffer
def check_env_spaces(env: gym.Env, env_id: str) -> None:
    """SQL needs a flat Box observation and a bounded Box action space (and video, a render mode)."""
    obs_space, act_space = env.observation_space, env.action_space
    if not isinstance(act_space, gym.spaces.Box):
        raise UsageError(
            f"{env_id} has a {type(act_space).__name__} action space; this script needs continuous "
            "(Box) actions. For discrete actions use sql_discrete.py."
        )
    if not (np.all(np.isfinite(act_space.low)) and np.all(np.isfinite(act_space.high))):
        raise UsageError(f"{env_id} has unbounded actions; SQL squashes into a bounded box.")
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        raise UsageError(
            f"{env_id} has observation space {obs_space}; this script needs a flat Box "
            "(wrap the env, e.g. FlattenObservation, to use it)."
        )
    if env.render_mode is not None and env.render_mode not in env.metadata.get("render_modes", []):
        raise UsageError(f"{env_id} cannot render videos (no '{env.render_mode}' mode)")


def mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim), nn.ReLU(),
        nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
        nn.Linear(hidden_dim, out_dim),
    )  # fmt: skip


class SoftQNetwork(nn.Module):
    """Q(s, a) for a in [−1, 1]^d; any leading dims (batch, particles) broadcast through."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int):
        super().__init__()
        self.net = mlp(obs_dim + act_dim, hidden_dim, 1)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, action], dim=-1)).squeeze(-1)


class SamplingNetwork(nn.Module):
    """u = f_φ(s, ξ), a = tanh(u) in [−1, 1]^d; see `to_env_action` for the env's units."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int, action_low, action_high):
        super().__init__()
        self.act_dim = act_dim
        self.net = mlp(obs_dim + act_dim, hidden_dim, act_dim)
        low = torch.as_tensor(action_low, dtype=torch.float32)
        high = torch.as_tensor(action_high, dtype=torch.float32)
        # buffers move with .to(device) and are saved in state_dict, but are not trained
        self.register_buffer("action_scale", (high - low) / 2.0)
        self.register_buffer("action_bias", (high + low) / 2.0)

    def forward(self, obs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The pre-squash particle u = f_φ(s, ξ)."""
        return self.net(torch.cat([obs, noise], dim=-1))

    def particles(self, obs: torch.Tensor, num: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`num` pre-squash particles per state: obs [B, obs_dim] → (obs repeated, u) [B, num, ·]."""
        noise = torch.randn(obs.shape[0], num, self.act_dim, device=obs.device)
        repeated_obs = obs[:, None, :].expand(-1, num, -1)
        return repeated_obs, self(repeated_obs, noise)

    def to_env_action(self, unit_action: torch.Tensor) -> np.ndarray:
        return (unit_action * self.action_scale + self.action_bias).detach().cpu().numpy()


class ReplayBuffer:
    """Circular buffer preallocated on the training device.

    A transition is stored as one row [s, a, r, terminated, s′] of a single tensor, so a minibatch
    is one `index_select` with one random index tensor (sampled with replacement, torch's RNG).
    """

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, device: torch.device):
        self.capacity, self.obs_dim, self.act_dim = capacity, obs_dim, act_dim
        self.rows = torch.zeros(capacity, 2 * obs_dim + act_dim + 2, device=device)
        self.position, self.size = 0, 0  # next row to write, rows filled

    def add(self, obs, action, reward, terminated, next_obs) -> None:
        """Add one transition per env; arrays or tensors with a leading num_envs dimension."""
        columns = [
            torch.as_tensor(x, dtype=torch.float32).reshape(len(obs), -1).to(self.rows.device)
            for x in (obs, action, reward, terminated, next_obs)
        ]
        rows = (self.position + torch.arange(len(obs), device=self.rows.device)) % self.capacity
        self.rows[rows] = torch.cat(columns, dim=1)
        self.position = (self.position + len(obs)) % self.capacity
        self.size = min(self.size + len(obs), self.capacity)

    def sample(self, batch_size: int):
        """Returns (obs, action, reward, terminated, next_obs) views of one gathered minibatch."""
        index = torch.randint(self.size, (batch_size,), device=self.rows.device)
        batch = self.rows.index_select(0, index)
        return batch.split([self.obs_dim, self.act_dim, 1, 1, self.obs_dim], dim=1)

    def state_dict(self) -> dict:
        # A copy of the filled rows: torch.save of a slice would write the whole buffer's storage.
        rows = self.rows[: self.size].to("cpu", copy=True)
        return {"rows": rows, "position": self.position, "size": self.size}

    def load_state_dict(self, state: dict) -> None:
        self.size, self.position = state["size"], state["position"]
        self.rows[: self.size] = state["rows"].to(self.rows.device)


# ---- One update: soft Q (eq. 10, 11), then the sampler (eq. 13, 14), then the target
def critic_loss(qf, qf_target, batch, alpha: float, gamma: float, reward_scale: float, num: int):
    """J_Q = E[½(Q(s,a) − y)²] with y from Q̄ at `num` uniform next actions (eq. 10, 11).
    Returns (J_Q, Q(s, a), V(s′)), the last two detached."""
    obs, action, reward, terminated, next_obs = batch
    with torch.no_grad():
        batch_size, act_dim = action.shape
        uniform_actions = torch.rand(batch_size, num, act_dim, device=obs.device) * 2.0 - 1.0
        next_q = qf_target(next_obs[:, None, :].expand(-1, num, -1), uniform_actions)
        next_value = uniform_soft_value(next_q, alpha, act_dim)
        target = soft_q_target(
            reward_scale * reward.squeeze(1), terminated.squeeze(1), next_value, gamma
        )
    q_values = qf(obs, action)
    return 0.5 * (q_values - target).pow(2).mean(), q_values.detach(), next_value


def squashed_log_density(qf, alpha: float):
    """log p(u|s) = Q(s, tanh u)/α + Σ log(1 − tanh² u): the density of u whose tanh is π."""
    return lambda obs, pre_tanh: qf(obs, torch.tanh(pre_tanh)) / alpha + tanh_log_det(pre_tanh)


def svgd_sampler_loss(sampler, obs: torch.Tensor, log_density, num_particles: int, ratio: float):
    """The amortized SVGD surrogate −mean_i ⟨stop_grad(Δu_i), u_i⟩ (eq. 13, 14).

    Its gradient in φ is −mean_i Δu_i ∂u_i/∂φ: one step moves every updated particle along its Stein
    direction. The fixed particles only define the direction, so they and log p are detached
    from φ; ∇ log p is taken with respect to the particles alone, so no gradient reaches Q.
    Returns (loss, mean ‖Δu‖, mean bandwidth h).
    """
    num_updated = int(num_particles * ratio)
    with torch.no_grad():  # the fixed particles never need ∂u/∂φ: no graph through the sampler
        fixed_obs, fixed = sampler.particles(obs, num_particles - num_updated)
    fixed.requires_grad_(True)
    grad_log_p = torch.autograd.grad(log_density(fixed_obs, fixed).sum(), fixed)[0]
    # drawn after autograd.grad, so that under --compile the graph that autograd.grad frees is
    # not the one the sampler's own gradient (adam_step) needs
    updated = sampler.particles(obs, num_updated)[1]
    direction, bandwidth = stein_direction(fixed.detach(), updated.detach(), grad_log_p)
    loss = -(direction * updated).sum(-1).mean()
    return loss, direction.norm(dim=-1).mean(), bandwidth.mean()


def init_adam_state(optimizer: torch.optim.Adam, **form) -> None:
    """Give the optimizer this run's Adam form (fused, foreach, capturable, ...) and create its
    state (step, first and second moments) where it has none, as a first step would. On
    --resume, load_state_dict brings back the saved run's form: a typed --compile changes it."""
    for group in optimizer.param_groups:
        group.update(form)
        on_device = group["fused"] or group["capturable"]  # else torch keeps `step` on the CPU
        for param in group["params"]:
            state = optimizer.state[param] or {
                "step": torch.zeros(()),
                "exp_avg": torch.zeros_like(param),
                "exp_avg_sq": torch.zeros_like(param),
            }
            state["step"] = state["step"].to(param.device if on_device else "cpu")
            optimizer.state[param] = state


def adam_state_tensors(*optimizers: torch.optim.Adam) -> list[torch.Tensor]:
    """Every tensor of the optimizers' state (step counts, moments)."""
    return [
        tensor
        for optimizer in optimizers
        for state in optimizer.state.values()
        for tensor in state.values()
    ]


def adam_step(loss: torch.Tensor, *optimizers: torch.optim.Adam) -> None:
    """optimizer.step() for each optimizer on the gradient of `loss`, written so that torch.compile
    traces it into the update's graph: the gradient comes from torch.autograd.grad (no .grad fields
    to zero), the step is torch's own functional Adam on the optimizer's state. (zero_grad(),
    backward() and optimizer.step() each end a compiled graph; see `--compile`.)"""
    groups = [group for optimizer in optimizers for group in optimizer.param_groups]
    grads = iter(torch.autograd.grad(loss, [p for group in groups for p in group["params"]]))
    with torch.no_grad():
        for optimizer in optimizers:
            if not optimizer.state:  # a first step creates the state, as torch's Adam does
                init_adam_state(optimizer)
            for group in optimizer.param_groups:
                params = group["params"]
                state = [optimizer.state[param] for param in params]
                beta1, beta2 = group["betas"]
                functional_adam(
                    params, [next(grads) for _ in params], [s["exp_avg"] for s in state],
                    [s["exp_avg_sq"] for s in state], [], [s["step"] for s in state],
                    foreach=group["foreach"], fused=group["fused"], capturable=group["capturable"],
                    amsgrad=False, beta1=beta1, beta2=beta2, lr=group["lr"], weight_decay=0.0,
                    eps=group["eps"], maximize=False,
                )  # fmt: skip


def update(
    batch, sampler, qf, qf_target, q_optimizer, sampler_optimizer, args: Args, update_target: bool
) -> dict[str, torch.Tensor]:
    """One gradient step of Q, then of the sampler, then (when update_target) the target update;
    returns the losses and diagnostics as detached tensors (read them only when logging)."""
    qf_loss, q_values, next_value = critic_loss(
        qf, qf_target, batch, args.alpha, args.gamma, args.reward_scale, args.value_n_particles
    )
    adam_step(qf_loss, q_optimizer)

    # The sampler chases exp(Q/α) of the online Q, just updated (never the target Q̄).
    sampler_loss, stein_norm, bandwidth = svgd_sampler_loss(
        sampler, batch[0], squashed_log_density(qf, args.alpha), args.kernel_n_particles,
        args.kernel_update_ratio,
    )  # fmt: skip
    adam_step(sampler_loss, sampler_optimizer)

    if update_target:
        polyak_update(qf_target, qf, args.tau)
    return {
        "losses/qf_loss": qf_loss.detach(),
        "losses/qf_values": q_values.mean(),
        "losses/soft_value": next_value.mean(),
        "losses/actor_loss": sampler_loss.detach(),
        "losses/stein_direction_norm": stein_norm.detach(),
        "losses/kernel_bandwidth": bandwidth,
        "losses/alpha": torch.tensor(args.alpha / args.reward_scale),  # the effective temperature
    }


# ---- Evaluation policy, the multi-goal figure, the training loop
class EvaluationPolicy:
    """obs [B, obs_dim] → env actions [B, d]: the greedy action (argmax_j Q(s, a_j) over `num`
    sampled a_j) or one sample of the sampler; `diagnostics` adds MultiGoal's goal counts."""

    def __init__(self, sampler, qf, mode: str, num: int):
        self.sampler, self.qf, self.mode, self.num = sampler, qf, mode, num

    @torch.inference_mode()
    def __call__(self, obs: torch.Tensor) -> np.ndarray:
        if self.mode == "sampler":
            return self.sampler.to_env_action(torch.tanh(self.sampler.particles(obs, 1)[1][:, 0]))
        repeated_obs, pre_tanh = self.sampler.particles(obs, self.num)
        actions = torch.tanh(pre_tanh)
        best = self.qf(repeated_obs, actions).argmax(dim=1)
        return self.sampler.to_env_action(actions[torch.arange(len(obs), device=obs.device), best])

    def diagnostics(self, run: Run) -> dict:
        """On MultiGoal-v0: the goals that 50 rollouts of the sampler reach; --plot draws them."""
        if run.args.env_id != "MultiGoal-v0":
            return {}
        seed = run.args.seed + 100_000  # the seeds of the harness's evaluation episodes
        if not run.args.plot:
            return goal_statistics(multigoal_rollouts(self.sampler, 50, seed)[1])
        caption = f"soft Q-learning on MultiGoal-v0: seed {run.args.seed}, step {run.global_step:,}"
        path = os.path.join(run.dir, "multigoal.png")
        return goal_statistics(plot_multigoal(self.sampler, self.qf, path, seed, caption))


def forked_rng(device: torch.device):
    """Draws inside leave torch's RNG (the training run's stream) as they found it."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


@torch.inference_mode()
def multigoal_rollouts(sampler, episodes: int, seed: int):
    """Rollouts of the *stochastic* sampler on MultiGoal-v0 from (near) the origin, episode k with
    seed + k. Returns (positions of each episode [T + 1, 2], episodes ended at each of the goals)."""
    env, device = gym.make("MultiGoal-v0"), sampler.action_scale.device
    paths, goal_counts = [], np.zeros(len(MultiGoalEnv.GOALS), dtype=np.int64)
    for episode in range(episodes):
        with forked_rng(device):
            torch.manual_seed(seed + episode)
            obs, _ = env.reset(seed=seed + episode)
            positions, done = [obs], False
            while not done:
                obs_tensor = torch.as_tensor(obs, dtype=torch.float32, device=device)[None]
                unit_action = torch.tanh(sampler.particles(obs_tensor, 1)[1][:, 0])
                obs, _, terminated, truncated, _ = env.step(sampler.to_env_action(unit_action)[0])
                positions.append(obs)
                done = terminated or truncated
        distances = np.linalg.norm(MultiGoalEnv.GOALS - obs, axis=1)
        if distances.min() < MultiGoalEnv.GOAL_RADIUS:
            goal_counts[distances.argmin()] += 1
        paths.append(np.array(positions))
    return paths, goal_counts


def goal_statistics(counts: np.ndarray) -> dict:
    """Distinct goals reached, and how many rollouts ended at any goal (chance: ~13 of 50)."""
    return {"goals_reached": int(np.count_nonzero(counts)), "rollouts_at_goal": int(counts.sum())}


@torch.inference_mode()
def plot_multigoal(sampler, qf, path: str, seed: int, caption: str) -> np.ndarray:
    """The paper's Figure 1: 50 sampled trajectories, and Q(s = 0, ·) with 200 sampled actions.
    Returns how many of the 50 rollouts ended at each goal."""
    from matplotlib.figure import Figure  # imported only here: --plot is the one use

    paths, goal_counts = multigoal_rollouts(sampler, 50, seed)
    figure = Figure(figsize=(11, 5.3), layout="constrained")
    figure.suptitle(caption)
    states_axis, actions_axis = figure.subplots(1, 2)

    grid = np.linspace(-7.5, 7.5, 301)
    x, y = np.meshgrid(grid, grid)
    goal_cost = np.min([(x - gx) ** 2 + (y - gy) ** 2 for gx, gy in MultiGoalEnv.GOALS], axis=0)
    contours = states_axis.contour(x, y, goal_cost, levels=12, colors="0.7", linewidths=0.8)
    states_axis.clabel(contours, fontsize=7, fmt="%.0f")
    for positions in paths:
        states_axis.plot(positions[:, 0], positions[:, 1], color="tab:blue", lw=0.8, alpha=0.7)
    goals = MultiGoalEnv.GOALS
    states_axis.plot(goals[:, 0], goals[:, 1], "o", color="tab:red", ms=8)
    states_axis.set(xlim=(-7.5, 7.5), ylim=(-7.5, 7.5), aspect="equal", xlabel="x", ylabel="y")
    reached, at_goal = goal_statistics(goal_counts).values()
    title = f"50 sampled trajectories: {at_goal} end at a goal, {reached} of 4 goals reached"
    states_axis.set_title(title, fontsize=10)

    device = sampler.action_scale.device
    unit = torch.linspace(-1.0, 1.0, 101, device=device)
    a1, a2 = torch.meshgrid(unit, unit, indexing="xy")
    actions = torch.stack([a1, a2], dim=-1).reshape(-1, 2)
    origin = torch.zeros(1, 2, device=device)
    q = qf(origin.expand(len(actions), -1), actions).reshape(a1.shape).cpu().numpy()
    filled = actions_axis.contourf(a1.cpu().numpy(), a2.cpu().numpy(), q, levels=20, cmap="viridis")
    figure.colorbar(filled, ax=actions_axis, label="Q(s = (0, 0), a)")
    with forked_rng(device):
        torch.manual_seed(seed)
        samples = torch.tanh(sampler.particles(origin, 200)[1][0]).cpu().numpy()
    actions_axis.plot(samples[:, 0], samples[:, 1], ".", color="white", ms=4, alpha=0.8)
    actions_axis.set(xlim=(-1, 1), ylim=(-1, 1), aspect="equal", xlabel="a₁", ylabel="a₂")
    actions_axis.set_title("Q at the origin, 200 sampled actions", fontsize=10)
    figure.savefig(path, dpi=110)
    return goal_counts


def load_policy(saved: dict, args: Args, env: gym.Env, device: torch.device):
    """The saved networks, evaluated as this command line asks (--eval-policy, --eval-n-particles)."""
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    low, high, saved_args = env.action_space.low, env.action_space.high, saved["args"]
    sampler = SamplingNetwork(obs_dim, act_dim, saved_args["hidden_dim"], low, high)
    qf = SoftQNetwork(obs_dim, act_dim, saved_args["hidden_dim"])
    sampler.load_state_dict(saved["sampler"])
    qf.load_state_dict(saved["qf"])
    mode, num = args.eval_policy, args.eval_n_particles
    return EvaluationPolicy(sampler.to(device), qf.to(device), mode, num)


def train(args: Args, run: Run) -> None:
    envs, device = run.envs, run.device
    obs_dim = envs.single_observation_space.shape[0]
    act_dim = envs.single_action_space.shape[0]
    low, high = envs.single_action_space.low, envs.single_action_space.high

    sampler = SamplingNetwork(obs_dim, act_dim, args.hidden_dim, low, high).to(device)
    qf = SoftQNetwork(obs_dim, act_dim, args.hidden_dim).to(device)
    qf_target = SoftQNetwork(obs_dim, act_dim, args.hidden_dim).to(device)
    qf_target.load_state_dict(qf.state_dict())
    qf_target.requires_grad_(False)  # the target moves only by polyak_update
    compiled = args.compile or args.cudagraphs
    cuda_graphs = args.cudagraphs and device.type == "cuda"
    # Adam in one fused kernel per optimizer; under --compile in its foreach form, which inductor
    # fuses into the update's own kernels (the fused kernel cannot be traced); in a CUDA graph
    # "capturable": its step counter lives on the GPU, where a replayed graph can advance it
    adam_form = {"fused": not compiled, "foreach": compiled, "capturable": cuda_graphs}
    q_optimizer = torch.optim.Adam(qf.parameters(), lr=args.q_lr, **adam_form)
    sampler_optimizer = torch.optim.Adam(sampler.parameters(), lr=args.policy_lr, **adam_form)
    buffer = ReplayBuffer(args.buffer_size, obs_dim, act_dim, device)
    train_step = update
    if compiled:  # the whole update as one graph (both autograd.grad calls traced too)
        if hasattr(torch._dynamo.config, "trace_autograd_ops"):  # (older torch: a graph break)
            torch._dynamo.config.trace_autograd_ops = True
        # on CPU the kernels are called from C++, not Python (less overhead per call); not on
        # CUDA: untried there, and CUDA graphs do not support it
        torch._inductor.config.cpp_wrapper = device.type == "cpu"
        if args.cudagraphs and not cuda_graphs:
            print("notice: --cudagraphs needs CUDA; running with --compile alone", flush=True)
        mode = "reduce-overhead" if cuda_graphs else None  # torch.compile's CUDA-graph mode
        train_step = torch.compile(update, mode=mode)

    training = {
        "q_optimizer": q_optimizer,
        "sampler_optimizer": sampler_optimizer,
        "buffer": buffer,
    }
    obs = run.start(
        model={"sampler": sampler, "qf": qf, "qf_target": qf_target},
        training=training,
        policy=EvaluationPolicy(sampler, qf, args.eval_policy, args.eval_n_particles),
        # α/reward_scale is the temperature that shapes π, in units of the env's reward
        report=lambda: {"alpha": args.alpha / args.reward_scale, "reward_scale": args.reward_scale},
    )
    # this run's Adam form and state, over what --resume loaded (before any compiled update runs)
    for optimizer in (q_optimizer, sampler_optimizer):
        init_adam_state(optimizer, **adam_form)
    if cuda_graphs:  # a replayed graph works on fixed addresses: the optimizers' state (as
        # run.start resumed it), which the update changes in place, is marked, never copied in
        for tensor in adam_state_tensors(q_optimizer, sampler_optimizer):
            torch._dynamo.mark_static_address(tensor)
    while run.running():
        if cuda_graphs:  # the last iteration's graph outputs are used up: their memory is free
            torch.compiler.cudagraph_mark_step_begin()
        # act: uniform-random actions during warm-up, then one particle of the sampler per env
        if run.global_step < args.learning_starts:
            unit_action = torch.rand(args.num_envs, act_dim, device=device) * 2.0 - 1.0
        else:
            with torch.inference_mode():
                obs_tensor = torch.as_tensor(obs, dtype=torch.float32, device=device)
                unit_action = torch.tanh(sampler.particles(obs_tensor, 1)[1][:, 0])
        next_obs, reward, terminated, truncated, infos = envs.step(
            sampler.to_env_action(unit_action)
        )

        # store: an episode that ended stores its true last obs (final_obs), not the reset obs
        real_next_obs = next_obs.copy()
        for i in np.flatnonzero(terminated | truncated):
            real_next_obs[i] = infos["final_obs"][i]
        buffer.add(obs, unit_action, reward, terminated, real_next_obs)
        obs = next_obs
        run.record_step(reward, terminated, truncated)

        # learn: one gradient step per env step; the target every --target-network-frequency
        if run.global_step > args.learning_starts:
            for _ in range(args.num_envs):
                update_target = (run.gradient_updates + 1) % args.target_network_frequency == 0
                losses = train_step(
                    buffer.sample(args.batch_size), sampler, qf, qf_target, q_optimizer,
                    sampler_optimizer, args, update_target,
                )  # fmt: skip
                run.gradient_updates += 1
                run.policy_updates += 1
            run.log_losses(losses)
        run.end_iteration(obs)


# ==== run harness: the same text, byte for byte, in sac_v2, sac_v1, sql_discrete and sql_continuous
"""Everything a run needs besides its algorithm: run directory, metrics.jsonl / summary.json /
wandb, evaluation, atomic checkpoints and exact resume, Ctrl-C/SIGTERM, the shared flags' checks,
the device, --eval-checkpoint, and the command line's exit statuses (2 bad input, 1 diverged).

The algorithm above hands it:
  ALGORITHM                        the script's name, stamped into every summary and saved file
  Args                             the flags (the shared ones mean the same in every script)
  check_args(args)                 raises UsageError for the algorithm's own bad flags
  check_env_spaces(env, env_id)    raises UsageError for an env the algorithm cannot handle
  load_policy(saved, args, env, device)  the evaluation policy of a saved model.pt/checkpoint.pt
                                   (networks as saved, evaluation flags from `args`)
  train(args, run)                 the training loop, which drives the Run:
      obs = run.start(model, training, policy, report)   what to save (name -> module, optimizer,
          buffer or tensor; `model` also goes to model.pt), the evaluation policy (a batch of
          observations -> env actions; an optional `policy.diagnostics(run)` -> {name: value}
          adds eval/<name> to each eval row and <name> to the summary, and may write into
          run.dir) and
          report() -> {"alpha": ..., ...} for progress lines and the summary; restores all of it
          on --resume and returns the envs' current observations
      run.record_step(rewards, terminated, truncated)    count env steps, log finished episodes
      run.log_losses(losses)       every --log-frequency env steps: one host sync, NaN check
      run.end_iteration(obs)       evaluate, checkpoint and print as the step count crosses them
      run.running(), run.device, run.envs, run.global_step, run.gradient_updates, run.policy_updates
"""

STOP_REQUESTED = threading.Event()  # set by the command line's Ctrl-C/SIGTERM handler
# Flags a resumed run takes from the command line when typed; all others come from the checkpoint.
RESUME_OVERRIDES = {"total_timesteps", "checkpoint_frequency", "eval_frequency", "log_frequency"}
RESUME_OVERRIDES |= {"track", "cuda", "torch_threads", "eval_episodes", "save_model"}
RESUME_OVERRIDES |= {"compile", "cudagraphs"}


class UsageError(Exception):
    """Bad input from the user: one line on stderr, exit status 2, nothing written."""


class TrainingDiverged(RuntimeError):
    """A non-finite loss or weight: the run stops, the last good checkpoint stays, exit status 1."""


def check_shared_args(args: Args) -> None:
    """The shared flags' checks, then the algorithm's own (check_args)."""
    positive = ["total_timesteps", "num_envs", "buffer_size", "batch_size", "eval_episodes"]
    at_least_0 = ["learning_starts", "eval_frequency", "checkpoint_frequency", "torch_threads"]
    rules = [(name, "positive", getattr(args, name) > 0) for name in [*positive, "log_frequency"]]
    rules += [(name, ">= 0", getattr(args, name) >= 0) for name in at_least_0]
    rules += [("gamma", "in [0, 1)", 0 <= args.gamma < 1), ("tau", "in (0, 1]", 0 < args.tau <= 1)]
    for name, requirement, holds in rules:
        if not holds:
            raise UsageError(
                f"--{name.replace('_', '-')} must be {requirement}, got {getattr(args, name)}"
            )
    if args.batch_size > args.buffer_size:
        raise UsageError(f"--batch-size {args.batch_size} exceeds --buffer-size {args.buffer_size}")
    check_args(args)


def make_checked_env(env_id: str, render_mode: str | None = None) -> gym.Env:
    """gym.make, with the failures a user can cause turned into one-line UsageErrors."""
    try:
        env = gym.make(env_id, **({"render_mode": render_mode} if render_mode else {}))
    except gym.error.DependencyNotInstalled as err:
        raise UsageError(f"{env_id} needs a missing dependency: {err}") from None
    except gym.error.Error as err:  # NameNotFound, VersionNotFound, NamespaceNotFound, ...
        raise UsageError(f"unknown environment '{env_id}' ({err})") from None
    check_env_spaces(env, env_id)
    return env


def get_env_state(env: gym.Env) -> dict | None:
    """Everything step() depends on, for MuJoCo and envs with an array `state`; else None."""
    base, state = env.unwrapped, {"np_random": env.unwrapped.np_random.bit_generator.state}
    if hasattr(base, "model") and hasattr(base, "data"):  # MuJoCo: its full integration state
        import mujoco

        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        state["mujoco"] = torch.zeros(mujoco.mj_stateSize(base.model, spec), dtype=torch.float64)
        mujoco.mj_getState(base.model, base.data, state["mujoco"].numpy(), spec)
    elif isinstance(getattr(base, "state", None), np.ndarray | tuple | list):  # classic control
        state["state"] = torch.as_tensor(np.asarray(base.state, dtype=np.float64))
    else:
        return None
    state["elapsed_steps"] = env.get_wrapper_attr("_elapsed_steps")
    return state


def set_env_state(env: gym.Env, state: dict) -> None:
    base = env.unwrapped
    base.np_random.bit_generator.state = state["np_random"]
    if "mujoco" in state:
        import mujoco

        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        mujoco.mj_setState(base.model, base.data, state["mujoco"].numpy(), spec)
        mujoco.mj_forward(base.model, base.data)
    else:
        base.state = state["state"].numpy().copy()
    env.set_wrapper_attr("_elapsed_steps", state["elapsed_steps"])


def load_saved(path: str, flag: str) -> dict:
    """A model.pt / checkpoint.pt of this algorithm, loaded with weights_only=True and checked."""
    if not os.path.isfile(path):
        raise UsageError(f"{flag} file '{path}' does not exist")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a torch file, or holds arbitrary objects
        raise UsageError(f"{flag} file '{path}' cannot be read ({type(err).__name__})") from None
    if not isinstance(saved, dict) or saved.get("algorithm") != ALGORITHM:
        raise UsageError(f"'{path}' is not a {ALGORITHM} model.pt or checkpoint.pt")
    if flag == "--resume" and "loop" not in saved:
        raise UsageError(f"'{path}' is a model.pt; --resume needs a checkpoint.pt")
    return saved


def save_atomically(payload: dict, path: str) -> None:
    """Write to a temporary file, then rename: a crash mid-write leaves the previous file intact."""
    if path.endswith(".json"):
        with open(path + ".tmp", "w") as f:
            json.dump(payload, f, indent=2)
    else:
        torch.save(payload, path + ".tmp")
    os.replace(path + ".tmp", path)


@torch.inference_mode()
def evaluate(policy, env: gym.Env, episodes: int, seed: int, device: torch.device) -> list[float]:
    """Undiscounted returns of `policy`; episode k resets the env and torch's RNG with seed + k,
    inside fork_rng, so evaluating never changes the training run's random stream."""
    returns = []
    for episode in range(episodes):
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed + episode)
            obs, _ = env.reset(seed=seed + episode)
            done, episode_return = False, 0.0
            while not done:
                obs_tensor = torch.as_tensor(obs, dtype=torch.float32, device=device)[None]
                obs, reward, terminated, truncated, _ = env.step(policy(obs_tensor)[0])
                episode_return, done = episode_return + float(reward), terminated or truncated
        returns.append(episode_return)
    return returns


class Run:
    """One run's directory, envs, counters and logs; see the interface above."""

    def __init__(self, args: Args, saved: dict | None = None, run_dir: str | None = None):
        self.args, self.saved = args, saved
        random.seed(args.seed)
        np.random.seed(args.seed)
        torch.manual_seed(args.seed)
        torch.backends.cudnn.deterministic = args.torch_deterministic
        # More threads than free cores make torch's thread pool spin against other runs (a 10×
        # slowdown measured with three runs on 2 cores); small MLPs gain little past 4 threads.
        cores = os.cpu_count() or 1
        torch.set_num_threads(args.torch_threads or max(1, min(4, cores // 2)))
        self.device = torch.device("cuda" if args.cuda and torch.cuda.is_available() else "cpu")
        if args.cuda and self.device.type == "cpu":
            print("notice: CUDA is not available, running on CPU", flush=True)
        if args.capture_video:  # render off-screen: MuJoCo through EGL, pygame with no display
            os.environ.setdefault("MUJOCO_GL", "egl")
            os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # (and no SDL warning on stderr)
        # Envs are built, and so the env id checked, before anything is written.
        self.eval_env = make_checked_env(args.env_id, "rgb_array" if args.capture_video else None)
        self.envs = gym.vector.SyncVectorEnv(
            [lambda: gym.make(args.env_id)] * args.num_envs,
            # SAME_STEP: an ending env resets inside step(); its true last obs is infos["final_obs"]
            autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
        )
        name = f"{args.env_id.replace('/', '-')}__{args.exp_name}__{args.seed}__{int(time.time())}"
        self.dir = run_dir or os.path.join("runs", name)
        for copy in range(2, 1000):  # two runs started in the same second get their own directory
            try:
                os.makedirs(self.dir, exist_ok=bool(run_dir))
                break
            except FileExistsError:
                self.dir = os.path.join("runs", f"{name}-{copy}")
        if args.capture_video:  # film the first episode of every evaluation
            self.eval_env = gym.wrappers.RecordVideo(
                self.eval_env,
                os.path.join(self.dir, "videos"),
                episode_trigger=lambda episode: episode % args.eval_episodes == 0,
                name_prefix="eval",
                disable_logger=True,
            )
        metrics_path, rows = os.path.join(self.dir, "metrics.jsonl"), []
        if saved and os.path.exists(metrics_path):  # keep the rows logged up to the checkpoint
            with open(metrics_path) as f:
                rows = [row for row in f if json.loads(row)["global_step"] <= saved["global_step"]]
        self.metrics = open(metrics_path, "w")  # noqa: SIM115 (closed in finish)
        self.metrics.writelines(rows)
        self.wandb = None
        if args.track:
            import wandb

            run_id = os.path.basename(self.dir)[-64:]
            self.wandb = wandb.init(
                project=args.wandb_project_name, entity=args.wandb_entity, config=asdict(args),
                name=os.path.basename(self.dir), dir=self.dir, id=run_id, resume="allow",
            )  # fmt: skip
        self.global_step = self.gradient_updates = self.policy_updates = 0
        self.episode_returns = np.zeros(args.num_envs)
        self.episode_lengths = np.zeros(args.num_envs, dtype=np.int64)
        self.recent_returns: deque[float] = deque(maxlen=10)
        self.start_time = self.last_print = time.time()
        self.learn_start, self.eval_seconds, self.last_eval, self.report = None, 0.0, None, dict

    def start(self, model: dict, training: dict, policy, report) -> np.ndarray:
        self.model, self.training, self.policy, self.report = model, training, policy, report
        self.obs = self.envs.reset(seed=self.args.seed)[0]  # a resumed env, too, must be reset
        if self.saved is None:
            return self.obs
        for name, item in {**model, **training}.items():
            if isinstance(item, torch.Tensor):
                with torch.no_grad():
                    item.copy_(self.saved[name])
            else:
                item.load_state_dict(self.saved[name])
        loop = self.saved["loop"]
        self.global_step, self.gradient_updates = loop["global_step"], loop["gradient_updates"]
        self.policy_updates, self.last_eval = loop["policy_updates"], loop["last_eval"]
        self.episode_returns[:], self.episode_lengths[:] = loop["returns"], loop["lengths"]
        self.recent_returns.extend(loop["recent_returns"])
        torch.set_rng_state(self.saved["rng"]["torch"])
        if self.device.type == "cuda" and self.saved["rng"]["cuda"] is not None:
            torch.cuda.set_rng_state(self.saved["rng"]["cuda"])
        if loop["env_states"] is None:  # e.g. Box2D, whose state cannot be saved
            print("notice: this env's state cannot be restored; resuming with fresh episodes")
            self.episode_returns[:], self.episode_lengths[:] = 0.0, 0
            self.obs = self.envs.reset(seed=self.args.seed + self.global_step)[0]
            return self.obs
        for env, state in zip(self.envs.envs, loop["env_states"], strict=True):
            set_env_state(env, state)
        self.obs = loop["obs"].numpy()
        return self.obs

    def running(self) -> bool:
        return self.global_step < self.args.total_timesteps and not STOP_REQUESTED.is_set()

    def crossed(self, every: int) -> bool:
        """Did this iteration's env steps cross a multiple of `every` (0 = never)? Tied to
        global_step alone, so a resumed run logs, evaluates and saves on the same steps."""
        step = self.global_step
        return every > 0 and step // every > (step - self.args.num_envs) // every

    def log(self, values: dict) -> None:
        self.metrics.write(json.dumps({"global_step": self.global_step, **values}) + "\n")
        self.metrics.flush()
        if self.wandb is not None:
            self.wandb.log(values, step=self.global_step)

    def record_step(self, rewards, terminated, truncated) -> None:
        self.global_step += self.args.num_envs
        self.episode_returns += rewards
        self.episode_lengths += 1
        for i in np.flatnonzero(terminated | truncated):
            self.recent_returns.append(float(self.episode_returns[i]))
            self.log({"charts/episodic_return": float(self.episode_returns[i]),
                      "charts/episodic_length": int(self.episode_lengths[i])})  # fmt: skip
            self.episode_returns[i], self.episode_lengths[i] = 0.0, 0
        if self.learn_start is None and self.global_step > self.args.learning_starts:
            self.learn_start = (self.global_step, time.time())  # learn_sps counts from here

    def learn_sps(self) -> float | None:
        """Env steps per second since the first gradient update, evaluation time left out."""
        if self.learn_start is None or self.global_step <= self.learn_start[0]:
            return None
        seconds = time.time() - self.learn_start[1] - self.eval_seconds
        return (self.global_step - self.learn_start[0]) / seconds

    def log_losses(self, losses: dict) -> None:
        if not self.crossed(self.args.log_frequency):
            return
        values = {key: float(value) for key, value in losses.items()}
        if bad := [key for key, value in values.items() if not math.isfinite(value)]:
            raise TrainingDiverged(f"non-finite {', '.join(bad)} at step {self.global_step}")
        self.log({**values, "charts/SPS": self.learn_sps()})

    def evaluate(self) -> None:
        start = time.time()
        args = self.args
        returns = evaluate(
            self.policy, self.eval_env, args.eval_episodes, args.seed + 100_000, self.device
        )
        mean, std = float(np.mean(returns)), float(np.std(returns))
        row = {"eval/episodic_return": mean, "eval/episodic_return_std": std}
        diagnostics = self.policy.diagnostics(self) if hasattr(self.policy, "diagnostics") else {}
        row.update({f"eval/{name}": value for name, value in diagnostics.items()})
        self.log(row)
        self.last_eval = {"step": self.global_step, **row, "diagnostics": diagnostics}
        step, n = self.global_step, len(returns)
        print(f"eval  step {step:>9,}: return {mean:.1f} ± {std:.1f} over {n} episodes", flush=True)
        self.eval_seconds += time.time() - start if self.learn_start else 0.0

    def saved_model(self) -> dict:
        """model.pt's content: the `model` entries, args and report; raises on non-finite weights."""
        model = {name: item.state_dict() if isinstance(item, nn.Module) else item.detach().cpu()
                 for name, item in self.model.items()}  # fmt: skip
        tensors = [
            t
            for item in model.values()
            for t in (item.values() if isinstance(item, dict) else [item])
        ]
        if not all(torch.isfinite(t).all() for t in tensors if t.is_floating_point()):
            raise TrainingDiverged(f"non-finite network weights at step {self.global_step}")
        saved = {"algorithm": ALGORITHM, "args": asdict(self.args), "report": self.report()}
        return {**saved, "global_step": self.global_step, **model}

    def save_checkpoint(self, obs: np.ndarray) -> None:
        checkpoint = self.saved_model()
        checkpoint.update({name: item.state_dict() for name, item in self.training.items()})
        env_states = [get_env_state(env) for env in self.envs.envs]
        checkpoint["loop"] = {
            "global_step": self.global_step, "gradient_updates": self.gradient_updates,
            "policy_updates": self.policy_updates, "last_eval": self.last_eval,
            "returns": self.episode_returns.tolist(), "lengths": self.episode_lengths.tolist(),
            "recent_returns": list(self.recent_returns), "obs": torch.as_tensor(obs),
            "env_states": None if None in env_states else env_states,
        }  # fmt: skip
        cuda_rng = torch.cuda.get_rng_state() if self.device.type == "cuda" else None
        checkpoint["rng"] = {"torch": torch.get_rng_state(), "cuda": cuda_rng}
        save_atomically(checkpoint, os.path.join(self.dir, "checkpoint.pt"))

    def end_iteration(self, obs: np.ndarray) -> None:
        if self.crossed(self.args.eval_frequency) and self.global_step < self.args.total_timesteps:
            self.evaluate()
        if self.crossed(self.args.checkpoint_frequency):
            self.save_checkpoint(obs)
        if time.time() - self.last_print > 5.0:
            self.last_print, args, sps = time.time(), self.args, self.learn_sps()
            eta = (
                f"{(args.total_timesteps - self.global_step) / sps / 60:5.1f} min"
                if sps
                else "(warm-up)"
            )
            recent = f"{np.mean(self.recent_returns):9.1f}" if self.recent_returns else "      n/a"
            print(f"step {self.global_step:>9,}/{args.total_timesteps:,} ({100 * self.global_step / args.total_timesteps:5.1f}%)"
                  f" | ETA {eta} | train return {recent} | SPS {sps or 0:6.0f} | alpha {self.report()['alpha']:.4g}", flush=True)  # fmt: skip
        self.obs = obs

    def save_final(self, status: str) -> None:
        """The final evaluation, checkpoint and model.pt of a run that ended well."""
        model = self.saved_model()  # checks the weights first: a NaN model is never saved
        if status == "finished" and (self.last_eval or {}).get("step") != self.global_step:
            self.evaluate()  # always end with an evaluation of the final policy
        if self.args.checkpoint_frequency or status == "interrupted":
            self.save_checkpoint(self.obs)
        if self.args.save_model:
            save_atomically(model, os.path.join(self.dir, "model.pt"))

    def finish(self, status: str) -> dict:
        """summary.json, close everything, and the final console line."""
        args, learn_sps = self.args, self.learn_sps()
        last_eval = self.last_eval or {}
        summary = {
            "algorithm": ALGORITHM, "env_id": args.env_id, "seed": args.seed, "status": status,
            "global_step": self.global_step, "gradient_updates": self.gradient_updates,
            "policy_updates": self.policy_updates, "train_time_s": time.time() - self.start_time,
            "learn_sps": learn_sps,
            "episodic_return_last": float(np.mean(self.recent_returns)) if self.recent_returns else None,
            "eval_return_mean": last_eval.get("eval/episodic_return"),
            "eval_return_std": last_eval.get("eval/episodic_return_std"),
            "eval_episodes": args.eval_episodes if last_eval else 0, **self.report(),
            **last_eval.get("diagnostics", {}),
        }  # fmt: skip
        save_atomically(summary, os.path.join(self.dir, "summary.json"))
        self.metrics.close()
        if self.wandb is not None:
            self.wandb.finish()
        self.envs.close()
        self.eval_env.close()
        evaluation = (
            f"eval return {summary['eval_return_mean']:.1f} ± {summary['eval_return_std']:.1f}"
            if last_eval
            else "no evaluation"
        )
        print(f"{status}: {self.global_step:,} steps in {summary['train_time_s']:.0f} s | {evaluation} | results in {self.dir}", flush=True)  # fmt: skip
        if status == "interrupted":
            print(f"continue with: --resume {os.path.join(self.dir, 'checkpoint.pt')}", flush=True)
        return {**summary, "run_dir": self.dir}


def resumed_args(saved_args: dict, args: Args, typed: set[str] | None) -> Args:
    """A resumed run keeps its saved settings, except the RESUME_OVERRIDES flags the user typed.
    Called from Python (typed=None), a flag counts as typed when it differs from its default."""
    if typed is None:
        typed = {f.name for f in fields(Args) if getattr(args, f.name) != getattr(Args(), f.name)}
    merged = {**saved_args, "resume": args.resume}
    merged.update({name: getattr(args, name) for name in RESUME_OVERRIDES & typed})
    return Args(**{f.name: merged[f.name] for f in fields(Args) if f.name in merged})


def evaluate_checkpoint(args: Args) -> dict:
    """--eval-checkpoint: evaluate a saved policy on its env (with video if asked); train nothing."""
    saved = load_saved(args.eval_checkpoint, "--eval-checkpoint")
    args = replace(args, env_id=saved["args"]["env_id"], exp_name=f"{args.exp_name}-eval")
    try:  # a first load on CPU checks the file before anything is written
        load_policy(saved, args, make_checked_env(args.env_id), torch.device("cpu"))
    except (RuntimeError, KeyError) as err:
        raise UsageError(f"'{args.eval_checkpoint}' does not fit {args.env_id} ({err})") from None
    run = Run(replace(args, num_envs=1))
    policy = load_policy(saved, args, run.eval_env, run.device)
    run.start({}, {}, policy, lambda: saved["report"])
    run.global_step = saved["global_step"]
    run.evaluate()
    return run.finish("evaluated")


def main(args: Args, typed: set[str] | None = None) -> dict:
    """Train (or, with --eval-checkpoint, evaluate) as `args` say; returns the summary and run_dir.
    `typed` names the flags typed on the command line (it decides what a --resume overrides)."""
    check_shared_args(args)
    if args.eval_checkpoint:
        return evaluate_checkpoint(args)
    saved = None
    if args.resume:
        saved = load_saved(args.resume, "--resume")
        args = resumed_args(saved["args"], args, typed)
        check_shared_args(args)
    run_dir = (os.path.dirname(args.resume) or ".") if saved else None  # a resumed run stays put
    run = Run(args, saved, run_dir)
    status = "crashed"  # stays only if an unexpected exception escapes
    try:
        train(args, run)
        status = "interrupted" if STOP_REQUESTED.is_set() else "finished"
        run.save_final(status)
    except TrainingDiverged:
        status = "diverged"
        raise
    except KeyboardInterrupt:  # main() called from Python: Ctrl-C stops at once, as it should
        status = "aborted"
        raise
    finally:
        summary = run.finish(status)
    return summary


def typed_flags(argv: list[str]) -> set[str]:
    """The Args fields named on a command line: --total-timesteps 5, --no-cuda, --seed=3."""
    names = {token[2:].split("=")[0].replace("-", "_") for token in argv if token.startswith("--")}
    return names | {name[3:] for name in names if name.startswith("no_")}


def tyro_message(box: str) -> str:
    """The message in tyro's error box (unicode or ASCII-drawn): its first text after a rule."""
    rules = set("─-+")  # rule lines; the box's top and bottom borders start with ╭ and ╰
    message, after_rule = [], False
    for line in (line.strip().strip("│|").strip() for line in box.splitlines()):
        if line.startswith(("╭", "╰")) or (line and set(line) <= rules):
            if message:
                break
            after_rule = True
        elif line and after_rule:
            message.append(line)
        elif message:  # a blank line ends it too
            break
    return " ".join(message).removeprefix("Error ") or box.strip()


def command_line(argv: list[str] | None = None) -> int:
    """The script's entry: parse the flags, turn the first Ctrl-C/SIGTERM into a clean stop with
    a checkpoint (the second Ctrl-C aborts), and map errors to exit statuses."""
    argv = sys.argv[1:] if argv is None else argv
    tyro_errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(tyro_errors):
            args, unknown = tyro.cli(Args, args=argv, return_unknown_args=True)
    except SystemExit as stop:  # after --help (0), or a value tyro cannot parse (2)
        if stop.code == 2:  # one line, not tyro's box
            message = tyro_message(tyro_errors.getvalue())
            print(f"error: {message} (--help lists the flags)", file=sys.stderr)
        else:
            sys.stderr.write(tyro_errors.getvalue())
        return stop.code
    if unknown:  # a mistyped flag: one line, not tyro's box
        print(f"error: unknown flags {' '.join(unknown)} (--help lists them)", file=sys.stderr)
        return 2

    def request_stop(signum, frame):
        if STOP_REQUESTED.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        STOP_REQUESTED.set()
        print("stopping after this step, with a checkpoint (Ctrl-C again aborts)", flush=True)

    handlers = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        summary = main(args, typed_flags(argv))
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TrainingDiverged as err:
        print(f"error: training diverged: {err}; the last good checkpoint is kept", file=sys.stderr)
        return 1
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        STOP_REQUESTED.clear()
    return 130 if summary["status"] == "interrupted" else 0


if __name__ == "__main__":
    sys.exit(command_line())
