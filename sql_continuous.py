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

Temperature and reward scale. Only the ratio α / reward_scale shapes π (scaling rewards by c scales
Q by c); the reference code keeps α = 1 and sets the temperature through the reward scale, per env:
    MultiGoal 0.1 (examples/multigoal_sql.py), Swimmer/Hopper/HalfCheetah 30, Walker2d 10, Ant 300,
    Humanoid 100 (examples/mujoco_all_sql.py). Pendulum 5 was chosen here (not in the reference).
Other reference values used as defaults: 2 hidden layers of 128 units, Adam 3e-4 for both networks,
batch 128, 16 value particles, 16 kernel particles with update ratio 0.5, target copy every 1000
updates, γ = 0.99, one gradient step per env step. For MultiGoal the reference uses batch 64,
32 kernel particles, 100 warm-up steps and 30-step episodes (the env below has that time limit).

Evaluation policy: SQL's policy is a sampler with no mode or mean to read off, so evaluation takes
the greedy choice among --eval-n-particles sampled actions: a = argmax_j Q(s, tanh f_φ(s, ξ_j)),
the max-Q action within the policy's support. Its noise comes from a generator seeded per episode,
so evaluation is deterministic and never consumes the training RNG. The MultiGoal diagnostic
"goals reached" rolls out the *stochastic* sampler, since multimodality is what it measures.

Departures from the paper and the reference code, and why:
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

Usage (see --help for every flag):
    python sql_continuous.py --env-id HalfCheetah-v4     # the paper's MuJoCo setting, 1M steps
    python sql_continuous.py --env-id MultiGoal-v0 --total-timesteps 10000 --batch-size 64 --kernel-n-particles 32 --learning-starts 100 --plot
    python sql_continuous.py --env-id Pendulum-v1 --total-timesteps 10000 --hidden-dim 64 --tau 0.005 --target-network-frequency 1 --q-lr 1e-3 --policy-lr 1e-3
The second draws Figure 1 (runs/<run>/multigoal.png); the third is a quick check (−200 by 8k steps).
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro

ALGORITHM = "sql_continuous"


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (part of the run directory's name)"""
    seed: int = 1
    """seed of the experiment (python, numpy, torch and the environments)"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=True`"""
    cuda: bool = True
    """use CUDA when it is available (falls back to CPU with a notice)"""
    track: bool = False
    """log the run to Weights & Biases (`WANDB_MODE=offline` works without network)"""
    wandb_project_name: str = "softrl"
    """the wandb project name"""
    wandb_entity: str | None = None
    """the wandb entity (team); None means your default entity"""
    capture_video: bool = False
    """record videos of evaluation episodes to runs/<run>/videos (MuJoCo renders with MUJOCO_GL=egl)"""

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
    target_network_frequency: int = 1_000
    """gradient updates between target-network updates (1000 and a hard copy in the reference code)"""
    batch_size: int = 128
    """minibatch size of each gradient update"""
    learning_starts: int = 1_000
    """env steps of uniform-random actions before the first gradient update"""
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
    kernel_n_particles: int = 16
    """K, sampler particles per state in each SVGD update"""
    kernel_update_ratio: float = 0.5
    """fraction of the K particles that are updated; the others are the fixed particles u′_j"""
    eval_n_particles: int = 32
    """sampled actions per state from which evaluation takes the one with the highest Q"""
    plot: bool = False
    """MultiGoal-v0 only: write runs/<run>/multigoal.png (Q contours at the origin, 50 sampled trajectories)"""

    eval_frequency: int = 10_000
    """env steps between evaluations of the greedy policy (0 = only at the end)"""
    eval_episodes: int = 10
    """episodes per evaluation"""
    log_frequency: int = 1_000
    """env steps between logging losses to metrics.jsonl (the only host syncs of the update)"""
    save_model: bool = False
    """save the networks to runs/<run>/model.pt at the end"""
    checkpoint_frequency: int = 0
    """env steps between full checkpoints to runs/<run>/checkpoint.pt (0 = off; Ctrl-C/SIGTERM also save)"""
    resume: str | None = None
    """path of a checkpoint.pt to continue (its run keeps its settings; --total-timesteps may extend it)"""
    eval_checkpoint: str | None = None
    """path of a model.pt or checkpoint.pt: evaluate that policy, write summary.json, train nothing"""
    compile: bool = False
    """torch.compile the loss computations of the update"""


class UsageError(Exception):
    """Bad input from the user: reported as one line on stderr with exit status 2."""


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite: reported with exit status 1, last good checkpoint kept."""


# Reward scales of the reference code (haarnoja/softqlearning examples/), keyed by env family;
# Pendulum's was chosen here. Any other env gets 1.
REFERENCE_REWARD_SCALES = {
    "MultiGoal": 0.1,
    "Swimmer": 30.0,
    "Hopper": 30.0,
    "HalfCheetah": 30.0,
    "Walker2d": 10.0,
    "Ant": 300.0,
    "Humanoid": 100.0,
    "Pendulum": 5.0,
}


def default_reward_scale(env_id: str) -> float:
    family = env_id.split("/")[-1].split("-")[0]
    return REFERENCE_REWARD_SCALES.get(family, 1.0)


# ----------------------------------------------------------------------------------------------
# Soft-Q and SVGD math (pure functions; tests check them against independent oracles)
# ----------------------------------------------------------------------------------------------
def uniform_soft_value(q_values: torch.Tensor, alpha: float, act_dim: int) -> torch.Tensor:
    """V = α[logsumexp_j(Q_j/α) − log M + d log 2] (eq. 10) from Q at M actions a_j ~ U[−1, 1]^d.

    exp(V/α) is an unbiased estimate of ∫ exp(Q/α) da: the mean of exp(Q_j/α)/q(a_j) with
    q = 2^−d the uniform density; logsumexp keeps it finite when Q/α is large.
    """
    num_particles = q_values.shape[-1]
    log_mean = torch.logsumexp(q_values / alpha, dim=-1) - math.log(num_particles)
    return alpha * (log_mean + act_dim * math.log(2.0))


def soft_q_target(
    scaled_reward: torch.Tensor, terminated: torch.Tensor, next_value: torch.Tensor, gamma: float
) -> torch.Tensor:
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


def rbf_kernel(
    fixed: torch.Tensor, updated: torch.Tensor, bandwidth: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """κ(x_j, y_i) = exp(−‖x_j − y_i‖²/h) and its gradient in x_j, −2(x_j − y_i)/h · κ.

    Returns κ [..., K_f, K_u] and ∇_x κ [..., K_f, K_u, d]; h [...] is treated as a constant.
    """
    difference = fixed[..., :, None, :] - updated[..., None, :, :]
    h = bandwidth[..., None, None]
    kappa = torch.exp(-difference.pow(2).sum(-1) / h)
    return kappa, -2.0 * difference / h[..., None] * kappa[..., None]


def stein_direction(
    fixed: torch.Tensor, updated: torch.Tensor, grad_log_p_fixed: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Δy_i = mean_j [κ(x_j, y_i) ∇ log p(x_j) + ∇_{x_j} κ(x_j, y_i)] (eq. 13), and the bandwidth.

    fixed x [..., K_f, d] with ∇ log p at them [..., K_f, d]; updated y [..., K_u, d] → [..., K_u, d].
    """
    bandwidth = median_bandwidth(fixed, updated)
    kappa, kappa_grad = rbf_kernel(fixed, updated, bandwidth)
    attraction = kappa[..., None] * grad_log_p_fixed[..., :, None, :]
    return (attraction + kappa_grad).mean(dim=-3), bandwidth


@torch.no_grad()
def update_target(target: nn.Module, online: nn.Module, tau: float) -> None:
    """θ̄ ← (1 − τ) θ̄ + τ θ, in place; τ = 1 is the paper's hard copy θ̄ ← θ."""
    if tau == 1.0:
        torch._foreach_copy_(list(target.parameters()), list(online.parameters()))
    else:
        torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), tau)


# ----------------------------------------------------------------------------------------------
# The multi-goal task of the paper's Figure 1
# ----------------------------------------------------------------------------------------------
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
        self.observation_space = gym.spaces.Box(-self.BOUND, self.BOUND, (2,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.state = np.zeros(2)  # the position; an ndarray `state` lets checkpoints capture it

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        start = 0.1 * self.np_random.standard_normal(2)
        self.state = np.clip(start, -self.BOUND, self.BOUND)
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


# ----------------------------------------------------------------------------------------------
# Environments, networks, replay buffer
# ----------------------------------------------------------------------------------------------
def make_env(env_id: str, render_mode: str | None = None):
    def thunk():
        return (
            gym.make(env_id) if render_mode is None else gym.make(env_id, render_mode=render_mode)
        )

    return thunk


def check_env_spaces(env: gym.Env, env_id: str) -> None:
    """SQL needs a flat Box observation and a bounded Box action space."""
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


def mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim),
        nn.ReLU(),
        nn.Linear(hidden_dim, hidden_dim),
        nn.ReLU(),
        nn.Linear(hidden_dim, out_dim),
    )


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

    def particles(
        self, obs: torch.Tensor, num: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`num` pre-squash particles per state: obs [B, obs_dim] → (obs repeated, u) [B, num, ·]."""
        noise = torch.randn(obs.shape[0], num, self.act_dim, device=obs.device, generator=generator)
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
        self.position = 0  # next row to write
        self.size = 0

    def add(self, obs, action, reward, terminated, next_obs) -> None:
        """Add one transition per env; every argument has a leading num_envs dimension."""
        batch = torch.cat([obs, action, reward[:, None], terminated[:, None], next_obs], dim=1)
        rows = (self.position + torch.arange(len(batch))) % self.capacity
        self.rows[rows.to(self.rows.device)] = batch.to(self.rows.device)
        self.position = (self.position + len(batch)) % self.capacity
        self.size = min(self.size + len(batch), self.capacity)

    def sample(self, batch_size: int):
        """Returns (obs, action, reward, terminated, next_obs) views of one gathered minibatch."""
        index = torch.randint(self.size, (batch_size,), device=self.rows.device)
        batch = self.rows.index_select(0, index)
        o, a = self.obs_dim, self.act_dim
        return batch.split([o, a, 1, 1, o], dim=1)

    def state_dict(self) -> dict:
        return {"rows": self.rows[: self.size].cpu(), "position": self.position, "size": self.size}

    def load_state_dict(self, state: dict) -> None:
        self.size, self.position = state["size"], state["position"]
        self.rows[: self.size] = state["rows"].to(self.rows.device)


# ----------------------------------------------------------------------------------------------
# Losses of one update (each loss reaches only its own network's parameters)
# ----------------------------------------------------------------------------------------------
def critic_loss(
    qf, qf_target, batch, alpha: float, gamma: float, reward_scale: float, value_n_particles: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """J_Q = E[½(Q(s,a) − y)²] with y from Q̄ and uniformly sampled next actions (eq. 10, 11)."""
    obs, action, reward, terminated, next_obs = batch
    with torch.no_grad():
        batch_size, act_dim = action.shape
        uniform_actions = torch.rand(batch_size, value_n_particles, act_dim, device=obs.device)
        repeated_next_obs = next_obs[:, None, :].expand(-1, value_n_particles, -1)
        next_q = qf_target(repeated_next_obs, uniform_actions * 2.0 - 1.0)
        next_value = uniform_soft_value(next_q, alpha, act_dim)
        target = soft_q_target(
            reward_scale * reward.squeeze(1), terminated.squeeze(1), next_value, gamma
        )
    q_values = qf(obs, action)
    loss = 0.5 * (q_values - target).pow(2).mean()
    return loss, q_values.detach(), next_value


def squashed_log_density(qf, alpha: float):
    """log p(u|s) = Q(s, tanh u)/α + Σ log(1 − tanh² u): the density of u whose tanh is π."""

    def log_density(obs: torch.Tensor, pre_tanh: torch.Tensor) -> torch.Tensor:
        return qf(obs, torch.tanh(pre_tanh)) / alpha + tanh_log_det(pre_tanh)

    return log_density


def svgd_sampler_loss(
    sampler, obs: torch.Tensor, log_density, num_particles: int, update_ratio: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The amortized SVGD surrogate −mean_i ⟨stop_grad(Δu_i), u_i⟩ (eq. 13, 14).

    Its gradient in φ is −mean_i Δu_i ∂u_i/∂φ: one step moves every updated particle along its Stein
    direction. The fixed particles only define the direction, so they and log p are detached
    from φ; ∇ log p is taken with respect to the particles alone, so no gradient reaches Q.
    Returns (loss, mean ‖Δu‖, mean bandwidth h).
    """
    num_updated = int(num_particles * update_ratio)
    with torch.no_grad():  # the fixed particles never need ∂u/∂φ: no graph through the sampler
        fixed_obs, fixed = sampler.particles(obs, num_particles - num_updated)
    fixed.requires_grad_(True)
    grad_log_p = torch.autograd.grad(log_density(fixed_obs, fixed).sum(), fixed)[0]
    # drawn after autograd.grad, so that under --compile the graph autograd.grad frees is not
    # the one loss.backward() needs
    updated = sampler.particles(obs, num_updated)[1]
    direction, bandwidth = stein_direction(fixed.detach(), updated.detach(), grad_log_p)
    loss = -(direction * updated).sum(-1).mean()
    return loss, direction.norm(dim=-1).mean(), bandwidth.mean()


# ----------------------------------------------------------------------------------------------
# Checkpointable environment state (so that --resume continues the exact trajectory)
# ----------------------------------------------------------------------------------------------
def find_wrapper(env: gym.Env, wrapper_type: type):
    while isinstance(env, gym.Wrapper):
        if isinstance(env, wrapper_type):
            return env
        env = env.env
    return None


def get_env_state(env: gym.Env) -> dict | None:
    """Everything `step()` depends on, for MuJoCo, classic-control and MultiGoal; None for others."""
    base = env.unwrapped
    state = {"np_random": base.np_random.bit_generator.state}
    if hasattr(base, "model") and hasattr(base, "data"):  # MuJoCo: its full integration state
        import mujoco

        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        physics = np.empty(mujoco.mj_stateSize(base.model, spec))
        mujoco.mj_getState(base.model, base.data, physics, spec)
        state["mujoco"] = torch.from_numpy(physics)
    elif isinstance(getattr(base, "state", None), np.ndarray | tuple | list):  # classic control
        state["state"] = torch.as_tensor(np.asarray(base.state, dtype=np.float64))
    else:
        return None
    time_limit = find_wrapper(env, gym.wrappers.TimeLimit)
    state["elapsed_steps"] = time_limit._elapsed_steps if time_limit else 0
    return state


def set_env_state(env: gym.Env, state: dict) -> None:
    base = env.unwrapped
    base.np_random.bit_generator.state = state["np_random"]
    if "mujoco" in state:
        import mujoco

        physics = state["mujoco"].numpy()
        mujoco.mj_setState(base.model, base.data, physics, mujoco.mjtState.mjSTATE_INTEGRATION)
        mujoco.mj_forward(base.model, base.data)
    else:
        base.state = state["state"].numpy().copy()
    time_limit = find_wrapper(env, gym.wrappers.TimeLimit)
    if time_limit:
        time_limit._elapsed_steps = state["elapsed_steps"]


# ----------------------------------------------------------------------------------------------
# Evaluation, the multi-goal figure, run bookkeeping, argument checks
# ----------------------------------------------------------------------------------------------
def greedy_action(sampler, qf, obs: torch.Tensor, num: int, generator) -> torch.Tensor:
    """argmax over `num` sampled actions of Q(s, a): obs [B, obs_dim] → a in [−1, 1], [B, d]."""
    repeated_obs, pre_tanh = sampler.particles(obs, num, generator)
    actions = torch.tanh(pre_tanh)
    best = qf(repeated_obs, actions).argmax(dim=1)
    return actions[torch.arange(len(actions), device=actions.device), best]


@torch.inference_mode()
def evaluate(
    sampler, qf, env: gym.Env, episodes: int, seed: int, device: torch.device, num: int
) -> list[float]:
    """Undiscounted returns of the greedy policy; episode k resets env and noise with seed + k."""
    generator = torch.Generator(device=device)
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        generator.manual_seed(seed + episode)
        done, episode_return = False, 0.0
        while not done:
            obs_tensor = torch.as_tensor(obs, dtype=torch.float32, device=device)[None]
            action = sampler.to_env_action(greedy_action(sampler, qf, obs_tensor, num, generator))
            obs, reward, terminated, truncated, _ = env.step(action[0])
            episode_return += float(reward)
            done = terminated or truncated
        returns.append(episode_return)
    return returns


@torch.inference_mode()
def multigoal_rollouts(sampler, episodes: int, seed: int, device: torch.device):
    """Rollouts of the *stochastic* sampler on MultiGoal-v0 from (near) the origin.

    Returns (positions of each episode [T + 1, 2], how many episodes ended at each of the 4 goals).
    """
    env = gym.make("MultiGoal-v0")
    generator = torch.Generator(device=device)
    paths, goal_counts = [], np.zeros(len(MultiGoalEnv.GOALS), dtype=np.int64)
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        generator.manual_seed(seed + episode)
        positions, done = [obs], False
        while not done:
            obs_tensor = torch.as_tensor(obs, dtype=torch.float32, device=device)[None]
            pre_tanh = sampler.particles(obs_tensor, 1, generator)[1][:, 0]
            obs, _, terminated, truncated, _ = env.step(sampler.to_env_action(pre_tanh.tanh())[0])
            positions.append(obs)
            done = terminated or truncated
        distances = np.linalg.norm(MultiGoalEnv.GOALS - obs, axis=1)
        if distances.min() < MultiGoalEnv.GOAL_RADIUS:
            goal_counts[distances.argmin()] += 1
        paths.append(np.array(positions))
    env.close()
    return paths, goal_counts


def goal_statistics(goal_counts: np.ndarray) -> dict:
    """Distinct goals reached, and how many rollouts ended at any goal (chance: ~13 of 50)."""
    return {
        "goals_reached": int(np.count_nonzero(goal_counts)),
        "rollouts_at_goal": int(goal_counts.sum()),
    }


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401 (only checks that --plot can work, before training)
    except ImportError:
        raise UsageError(
            "--plot needs matplotlib, which is not installed: pip install matplotlib"
        ) from None


@torch.inference_mode()
def plot_multigoal(
    sampler, qf, path: str, seed: int, device: torch.device, caption: str
) -> np.ndarray:
    """The paper's Figure 1: 50 sampled trajectories, and Q(s = 0, ·) with sampled actions.

    Returns how many of the 50 rollouts ended at each goal."""
    from matplotlib.figure import Figure  # imported only here: --plot is the one use

    paths, goal_counts = multigoal_rollouts(sampler, 50, seed, device)
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
    stats = goal_statistics(goal_counts)
    states_axis.set_title(
        f"50 sampled trajectories: {stats['rollouts_at_goal']} end at a goal, "
        f"{stats['goals_reached']} of 4 goals reached",
        fontsize=10,
    )

    unit = torch.linspace(-1.0, 1.0, 101, device=device)
    a1, a2 = torch.meshgrid(unit, unit, indexing="xy")
    actions = torch.stack([a1, a2], dim=-1).reshape(-1, 2)
    origin = torch.zeros(1, 2, device=device)
    q = qf(origin.expand(len(actions), -1), actions).reshape(a1.shape).cpu().numpy()
    filled = actions_axis.contourf(a1.cpu().numpy(), a2.cpu().numpy(), q, levels=20, cmap="viridis")
    figure.colorbar(filled, ax=actions_axis, label="Q(s = (0, 0), a)")
    generator = torch.Generator(device=device).manual_seed(seed)
    samples = torch.tanh(sampler.particles(origin, 200, generator)[1][0]).cpu().numpy()
    actions_axis.plot(samples[:, 0], samples[:, 1], ".", color="white", ms=4, alpha=0.8)
    actions_axis.set(xlim=(-1, 1), ylim=(-1, 1), aspect="equal", xlabel="a₁", ylabel="a₂")
    actions_axis.set_title("Q at the origin, 200 sampled actions", fontsize=10)
    figure.savefig(path, dpi=110)
    return goal_counts


def validate_args(args: Args) -> None:
    positive = ["total_timesteps", "num_envs", "buffer_size", "batch_size", "eval_episodes"]
    positive += ["hidden_dim", "log_frequency", "policy_lr", "q_lr", "alpha"]
    positive += ["value_n_particles", "eval_n_particles", "target_network_frequency"]
    for name in positive:
        if not getattr(args, name) > 0:
            raise UsageError(
                f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}"
            )
    for name in ["learning_starts", "eval_frequency", "checkpoint_frequency"]:
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if args.batch_size > args.buffer_size:
        raise UsageError(
            f"--batch-size {args.batch_size} exceeds --buffer-size {args.buffer_size}; "
            "make the buffer at least one batch large"
        )
    if not 0.0 <= args.gamma < 1.0:
        raise UsageError(f"--gamma must be in [0, 1), got {args.gamma}")
    if not 0.0 < args.tau <= 1.0:
        raise UsageError(f"--tau must be in (0, 1], got {args.tau}")
    if args.reward_scale is not None and not args.reward_scale > 0:
        raise UsageError(f"--reward-scale must be positive, got {args.reward_scale}")
    num_updated = int(args.kernel_n_particles * args.kernel_update_ratio)
    if num_updated < 1 or args.kernel_n_particles - num_updated < 2:
        raise UsageError(
            f"--kernel-n-particles {args.kernel_n_particles} with --kernel-update-ratio "
            f"{args.kernel_update_ratio} gives {num_updated} updated and "
            f"{args.kernel_n_particles - num_updated} fixed particles; SVGD needs at least 1 and 2"
        )
    if args.plot and args.env_id != "MultiGoal-v0" and not (args.resume or args.eval_checkpoint):
        raise UsageError(f"--plot draws the MultiGoal-v0 figure; it cannot plot {args.env_id}")
    if args.plot:
        require_matplotlib()


def make_checked_env(env_id: str, render_mode: str | None = None) -> gym.Env:
    """gym.make with the failure modes a user can cause turned into one-line UsageErrors."""
    try:
        env = make_env(env_id)()
    except gym.error.DependencyNotInstalled as err:
        raise UsageError(f"{env_id} needs a missing dependency: {err}") from None
    except gym.error.Error as err:  # NameNotFound, VersionNotFound, NamespaceNotFound, ...
        raise UsageError(f"unknown environment '{env_id}' ({err})") from None
    check_env_spaces(env, env_id)
    if render_mode is not None:
        if render_mode not in env.metadata.get("render_modes", []):
            raise UsageError(f"{env_id} cannot render videos (no '{render_mode}' mode)")
        env.close()
        env = make_env(env_id, render_mode)()
    return env


def load_checkpoint_file(path: str, what: str) -> dict:
    if not os.path.isfile(path):
        raise UsageError(f"{what} file '{path}' does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a torch file, or holds arbitrary objects
        raise UsageError(f"{what} file '{path}' cannot be read ({type(err).__name__})") from None
    if not isinstance(data, dict) or data.get("algorithm") != ALGORITHM or "sampler" not in data:
        raise UsageError(f"'{path}' is not a {ALGORITHM} model.pt or checkpoint.pt")
    return data


class RunLog:
    """metrics.jsonl, summary.json, stdout and (with --track) wandb for one run directory."""

    def __init__(self, run_dir: str, args: Args, resuming: bool):
        self.run_dir = run_dir
        os.makedirs(run_dir, exist_ok=True)
        mode = "a" if resuming else "w"  # a resumed run continues its metrics file
        self.metrics = open(os.path.join(run_dir, "metrics.jsonl"), mode)  # noqa: SIM115 (closed in close())
        self.wandb = None
        if args.track:
            import wandb

            self.wandb = wandb.init(
                project=args.wandb_project_name,
                entity=args.wandb_entity,
                config=asdict(args),
                name=os.path.basename(run_dir),
                dir=run_dir,
                resume="allow" if resuming else None,
                id=os.path.basename(run_dir)[-64:],
            )

    def log(self, global_step: int, values: dict) -> None:
        self.metrics.write(json.dumps({"global_step": global_step, **values}) + "\n")
        self.metrics.flush()
        if self.wandb is not None:
            self.wandb.log(values, step=global_step)

    def write_summary(self, summary: dict) -> None:
        path = os.path.join(self.run_dir, "summary.json")
        with open(path + ".tmp", "w") as f:
            json.dump(summary, f, indent=2)
        os.replace(path + ".tmp", path)

    def close(self) -> None:
        self.metrics.close()
        if self.wandb is not None:
            self.wandb.finish()


def new_run_dir(env_id: str, exp_name: str, seed: int) -> str:
    return f"runs/{env_id.replace('/', '-')}__{exp_name}__{seed}__{int(time.time())}"


def save_atomically(payload: dict, path: str) -> None:
    torch.save(payload, path + ".tmp")
    os.replace(path + ".tmp", path)


def pick_device(args: Args) -> torch.device:
    if args.cuda and torch.cuda.is_available():
        return torch.device("cuda")
    if args.cuda:
        print("notice: CUDA is not available, running on CPU", flush=True)
    return torch.device("cpu")


def build_networks(env: gym.Env, hidden_dim: int, device: torch.device):
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    low, high = env.action_space.low, env.action_space.high
    sampler = SamplingNetwork(obs_dim, act_dim, hidden_dim, low, high).to(device)
    return sampler, SoftQNetwork(obs_dim, act_dim, hidden_dim).to(device)


# Settings a resumed run takes from the command line; everything else comes from the checkpoint.
RESUME_OVERRIDES = ["total_timesteps", "checkpoint_frequency", "eval_frequency", "track", "cuda"]
RESUME_OVERRIDES += ["plot"]  # so that a resumed MultiGoal run can still draw its figure


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
def main(args: Args) -> dict:
    validate_args(args)
    checkpoint = None
    if args.eval_checkpoint:
        return evaluate_checkpoint(args)
    if args.resume:
        checkpoint = load_checkpoint_file(args.resume, "--resume")
        if "buffer" not in checkpoint:
            raise UsageError(f"'{args.resume}' is a model.pt; --resume needs a checkpoint.pt")
        defaults = Args()
        saved = {**checkpoint["args"], "resume": args.resume}
        for name in RESUME_OVERRIDES:
            if getattr(args, name) != getattr(defaults, name):
                saved[name] = getattr(args, name)
        args = Args(**saved)
        validate_args(args)
    if args.plot and args.env_id != "MultiGoal-v0":
        raise UsageError(f"--plot draws the MultiGoal-v0 figure; it cannot plot {args.env_id}")
    reward_scale = args.reward_scale
    if reward_scale is None:
        reward_scale = default_reward_scale(args.env_id)

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    device = pick_device(args)

    # Envs are built (and so the env id checked) before anything is written.
    if args.capture_video:
        os.environ.setdefault("MUJOCO_GL", "egl")  # headless MuJoCo rendering
    eval_env = make_checked_env(args.env_id, "rgb_array" if args.capture_video else None)
    envs = gym.vector.SyncVectorEnv(
        [make_env(args.env_id) for _ in range(args.num_envs)],
        # SAME_STEP: an ending env resets inside step(); the true last obs is in infos["final_obs"]
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    obs_dim = envs.single_observation_space.shape[0]
    act_dim = envs.single_action_space.shape[0]

    sampler, qf = build_networks(eval_env, args.hidden_dim, device)
    qf_target = SoftQNetwork(obs_dim, act_dim, args.hidden_dim).to(device)
    qf_target.load_state_dict(qf.state_dict())
    qf_target.requires_grad_(False)  # targets move only by update_target
    # fused Adam: one kernel for all parameters instead of a loop of small ops
    q_optimizer = torch.optim.Adam(qf.parameters(), lr=args.q_lr, fused=True)
    sampler_optimizer = torch.optim.Adam(sampler.parameters(), lr=args.policy_lr, fused=True)
    buffer = ReplayBuffer(args.buffer_size, obs_dim, act_dim, device)
    log_density = squashed_log_density(qf, args.alpha)

    compute_critic_loss, compute_sampler_loss = critic_loss, svgd_sampler_loss
    if args.compile:
        compute_critic_loss = torch.compile(critic_loss)
        compute_sampler_loss = torch.compile(svgd_sampler_loss)

    # Loop state: everything a checkpoint must carry to continue the same trajectory.
    global_step, gradient_updates = 0, 0
    episode_returns = np.zeros(args.num_envs)
    episode_lengths = np.zeros(args.num_envs, dtype=np.int64)
    recent_returns: deque[float] = deque(maxlen=10)
    obs, _ = envs.reset(seed=args.seed)
    run_dir = new_run_dir(args.env_id, args.exp_name, args.seed)
    if checkpoint is not None:  # a resumed run continues in its own directory
        run_dir = os.path.dirname(args.resume) or "."
        sampler.load_state_dict(checkpoint["sampler"])
        qf.load_state_dict(checkpoint["qf"])
        qf_target.load_state_dict(checkpoint["qf_target"])
        q_optimizer.load_state_dict(checkpoint["q_optimizer"])
        sampler_optimizer.load_state_dict(checkpoint["sampler_optimizer"])
        buffer.load_state_dict(checkpoint["buffer"])
        loop = checkpoint["loop"]
        global_step, gradient_updates = loop["global_step"], loop["gradient_updates"]
        episode_returns = np.array(loop["episode_returns"], dtype=np.float64)
        episode_lengths = np.array(loop["episode_lengths"], dtype=np.int64)
        recent_returns.extend(loop["recent_returns"])
        obs = checkpoint["obs"].numpy()
        if loop["env_states"] is None:
            print("notice: this env's state cannot be restored; resuming from fresh episodes")
            obs, _ = envs.reset(seed=args.seed + global_step)
            episode_returns[:], episode_lengths[:] = 0.0, 0
        else:
            for env, state in zip(envs.envs, loop["env_states"], strict=True):
                set_env_state(env, state)
        torch.set_rng_state(checkpoint["torch_rng_state"])
    run_log = RunLog(run_dir, args, resuming=checkpoint is not None)
    if args.capture_video:
        eval_env = gym.wrappers.RecordVideo(
            eval_env,
            os.path.join(run_dir, "videos"),
            # film the first episode of every evaluation
            episode_trigger=lambda episode: episode % args.eval_episodes == 0,
            name_prefix="eval",
            disable_logger=True,
        )

    def make_checkpoint() -> dict:
        networks = [sampler, qf, qf_target]
        if not all(torch.isfinite(p).all() for net in networks for p in net.parameters()):
            raise TrainingDiverged(f"non-finite network weights at step {global_step}")
        env_states = [get_env_state(env) for env in envs.envs]
        return {
            "algorithm": ALGORITHM,
            "args": asdict(args),
            "sampler": sampler.state_dict(),
            "qf": qf.state_dict(),
            "qf_target": qf_target.state_dict(),
            "q_optimizer": q_optimizer.state_dict(),
            "sampler_optimizer": sampler_optimizer.state_dict(),
            "buffer": buffer.state_dict(),
            "obs": torch.as_tensor(obs),
            "torch_rng_state": torch.get_rng_state(),
            "loop": {
                "global_step": global_step,
                "gradient_updates": gradient_updates,
                "episode_returns": episode_returns.tolist(),
                "episode_lengths": episode_lengths.tolist(),
                "recent_returns": list(recent_returns),
                "env_states": None if None in env_states else env_states,
            },
        }

    # Ctrl-C or SIGTERM (a cluster's preemption): finish the current step, then save a checkpoint
    # and the summary and stop. A second Ctrl-C stops at once.
    interrupted = False
    stop_signals = [signal.SIGINT, signal.SIGTERM]
    previous_handlers = {sig: signal.getsignal(sig) for sig in stop_signals}
    handle_signals = threading.current_thread() is threading.main_thread()  # only it gets them

    def on_stop_signal(signum, frame):
        nonlocal interrupted
        interrupted = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    if handle_signals:
        for sig in stop_signals:
            signal.signal(sig, on_stop_signal)

    def log_losses(losses: dict) -> None:
        values = {key: value.item() for key, value in losses.items()}
        if not all(math.isfinite(v) for v in values.values()):
            bad = ", ".join(k for k, v in values.items() if not math.isfinite(v))
            raise TrainingDiverged(f"non-finite loss ({bad}) at step {global_step}")
        values["losses/alpha"] = args.alpha
        values["charts/SPS"] = (global_step - learn_start_step) / (time.time() - learn_start_time)
        run_log.log(global_step, values)

    def evaluation_row() -> dict:
        returns = evaluate(
            sampler, qf, eval_env, args.eval_episodes, args.seed + 100_000, device,
            args.eval_n_particles,
        )  # fmt: skip
        row = {"eval/episodic_return": float(np.mean(returns))}
        row["eval/episodic_return_std"] = float(np.std(returns))
        if args.env_id == "MultiGoal-v0":  # the paper's point: several goals stay reachable
            goal_counts = multigoal_rollouts(sampler, 50, args.seed + 100_000, device)[1]
            row.update({f"eval/{k}": v for k, v in goal_statistics(goal_counts).items()})
        run_log.log(global_step, row)
        return row

    def crossed(every: int) -> bool:
        """True when this iteration's env steps crossed a multiple of `every` (0 = never).
        Tied to global_step alone, so a resumed run logs, evaluates and saves on the same steps."""
        return every > 0 and global_step // every > (global_step - args.num_envs) // every

    start_time, start_step = time.time(), global_step
    learn_start_step, learn_start_time = None, None
    last_print = 0.0
    last_eval, last_eval_step = None, None
    status, loop_end_time = "crashed", None  # "crashed" stays only if an exception escapes
    try:
        while global_step < args.total_timesteps and not interrupted:
            # --- act: one particle of the sampler per env ----------------------------------------
            if global_step < args.learning_starts:
                unit_action = torch.rand(args.num_envs, act_dim) * 2.0 - 1.0
            else:
                with torch.inference_mode():
                    obs_tensor = torch.as_tensor(obs, dtype=torch.float32, device=device)
                    unit_action = torch.tanh(sampler.particles(obs_tensor, 1)[1][:, 0])
            next_obs, reward, terminated, truncated, infos = envs.step(
                sampler.to_env_action(unit_action.to(device))
            )
            # --- store: an ended episode's true last obs is final_obs, never the reset obs -----
            ended = terminated | truncated
            real_next_obs = next_obs.copy()
            for i in np.flatnonzero(ended):
                real_next_obs[i] = infos["final_obs"][i]
            buffer.add(
                torch.as_tensor(obs, dtype=torch.float32),
                unit_action.cpu(),
                torch.as_tensor(reward, dtype=torch.float32),
                torch.as_tensor(terminated, dtype=torch.float32),
                torch.as_tensor(real_next_obs, dtype=torch.float32),
            )
            obs = next_obs
            global_step += args.num_envs

            episode_returns += reward
            episode_lengths += 1
            for i in np.flatnonzero(ended):
                recent_returns.append(float(episode_returns[i]))
                run_log.log(
                    global_step,
                    {
                        "charts/episodic_return": float(episode_returns[i]),
                        "charts/episodic_length": int(episode_lengths[i]),
                    },
                )
                episode_returns[i], episode_lengths[i] = 0.0, 0

            # --- learn: one gradient step per env step ----------------------------------------
            if global_step > args.learning_starts:
                if learn_start_step is None:
                    learn_start_step, learn_start_time = global_step, time.time()
                for _ in range(args.num_envs):
                    batch = buffer.sample(args.batch_size)
                    qf_loss, q_values, next_value = compute_critic_loss(
                        qf, qf_target, batch, args.alpha, args.gamma, reward_scale,
                        args.value_n_particles,
                    )  # fmt: skip
                    q_optimizer.zero_grad(set_to_none=True)
                    qf_loss.backward()
                    q_optimizer.step()

                    sampler_loss, stein_norm, bandwidth = compute_sampler_loss(
                        sampler, batch[0], log_density, args.kernel_n_particles,
                        args.kernel_update_ratio,
                    )  # fmt: skip
                    sampler_optimizer.zero_grad(set_to_none=True)
                    sampler_loss.backward()
                    sampler_optimizer.step()

                    gradient_updates += 1
                    if gradient_updates % args.target_network_frequency == 0:
                        update_target(qf_target, qf, args.tau)

                if crossed(args.log_frequency):
                    log_losses(
                        {
                            "losses/qf_loss": qf_loss.detach(),
                            "losses/qf_values": q_values.mean(),
                            "losses/soft_value": next_value.mean(),
                            "losses/actor_loss": sampler_loss.detach(),
                            "losses/stein_direction_norm": stein_norm,
                            "losses/kernel_bandwidth": bandwidth,
                        }
                    )

            # --- evaluate, checkpoint, report ---------------------------------------------------
            if crossed(args.eval_frequency):
                last_eval, last_eval_step = evaluation_row(), global_step
            if crossed(args.checkpoint_frequency):
                save_atomically(make_checkpoint(), os.path.join(run_dir, "checkpoint.pt"))
            if time.time() - last_print > 5.0:
                last_print = time.time()
                sps = (global_step - start_step) / (last_print - start_time)
                eta = (args.total_timesteps - global_step) / max(sps, 1e-9)
                recent = f"{np.mean(recent_returns):9.1f}" if recent_returns else "      n/a"
                print(
                    f"step {global_step:>9,}/{args.total_timesteps:,} "
                    f"({100 * global_step / args.total_timesteps:5.1f}%) | ETA {eta / 60:6.1f} min | "
                    f"return {recent} | SPS {sps:6.0f} | alpha {args.alpha:g} "
                    f"(reward scale {reward_scale:g})",
                    flush=True,
                )
        loop_end_time = time.time()  # learn_sps excludes the final evaluation below
        if interrupted:
            status = "interrupted"
        else:
            if last_eval_step != global_step:  # always end with an evaluation of the final policy
                last_eval = evaluation_row()
            if args.plot:
                caption = (
                    f"soft Q-learning on MultiGoal-v0: seed {args.seed}, {global_step:,} env steps"
                )
                plot_path = os.path.join(run_dir, "multigoal.png")
                plot_multigoal(sampler, qf, plot_path, args.seed + 100_000, device, caption)
            status = "finished"
    except TrainingDiverged:
        status = "diverged"
        raise
    finally:
        if handle_signals:
            for sig, handler in previous_handlers.items():
                signal.signal(sig, handler)
        train_time = time.time() - start_time
        learn_sps = None
        if learn_start_time is not None and global_step > learn_start_step:
            learn_time = (loop_end_time or time.time()) - learn_start_time
            learn_sps = (global_step - learn_start_step) / learn_time
        if status != "diverged" and (args.checkpoint_frequency or interrupted):
            save_atomically(make_checkpoint(), os.path.join(run_dir, "checkpoint.pt"))
        if args.save_model and status != "diverged":
            model = {"algorithm": ALGORITHM, "args": asdict(args), "sampler": sampler.state_dict()}
            model.update(qf=qf.state_dict(), qf_target=qf_target.state_dict())
            model["global_step"] = global_step
            save_atomically(model, os.path.join(run_dir, "model.pt"))
        summary = {
            "algorithm": ALGORITHM,
            "env_id": args.env_id,
            "seed": args.seed,
            "status": status,
            "global_step": global_step,
            "gradient_updates": gradient_updates,
            "policy_updates": gradient_updates,
            "train_time_s": train_time,
            "learn_sps": learn_sps,
            "episodic_return_last": float(np.mean(recent_returns)) if recent_returns else None,
            "eval_return_mean": last_eval["eval/episodic_return"] if last_eval else None,
            "eval_return_std": last_eval["eval/episodic_return_std"] if last_eval else None,
            "eval_episodes": args.eval_episodes if last_eval else 0,
            "alpha": args.alpha,
            "reward_scale": reward_scale,
        }
        if last_eval and "eval/goals_reached" in last_eval:
            summary["goals_reached"] = last_eval["eval/goals_reached"]
            summary["rollouts_at_goal"] = last_eval["eval/rollouts_at_goal"]
        run_log.write_summary(summary)
        run_log.close()
        envs.close()
        eval_env.close()
    print(
        f"{status}: {global_step:,} steps in {train_time:.0f} s; results in {run_dir}", flush=True
    )
    return {**summary, "run_dir": run_dir}


def evaluate_checkpoint(args: Args) -> dict:
    """--eval-checkpoint: evaluate a saved policy (optionally on video or --plot); train nothing."""
    saved = load_checkpoint_file(args.eval_checkpoint, "--eval-checkpoint")
    env_id = saved["args"]["env_id"]
    if args.plot and env_id != "MultiGoal-v0":
        raise UsageError(f"--plot draws the MultiGoal-v0 figure; it cannot plot {env_id}")
    if args.capture_video:
        os.environ.setdefault("MUJOCO_GL", "egl")  # headless MuJoCo rendering
    env = make_checked_env(env_id, "rgb_array" if args.capture_video else None)
    device = pick_device(args)
    sampler, qf = build_networks(env, saved["args"]["hidden_dim"], device)
    try:
        sampler.load_state_dict(saved["sampler"])
        qf.load_state_dict(saved["qf"])
    except RuntimeError as err:
        raise UsageError(f"the networks in '{args.eval_checkpoint}' do not fit {env_id}") from err
    run_dir = new_run_dir(env_id, f"{args.exp_name}-eval", args.seed)
    run_log = RunLog(run_dir, args, resuming=False)
    if args.capture_video:
        env = gym.wrappers.RecordVideo(env, os.path.join(run_dir, "videos"), disable_logger=True)
    start = time.time()
    returns = evaluate(
        sampler, qf, env, args.eval_episodes, args.seed + 100_000, device, args.eval_n_particles
    )
    global_step = saved.get("global_step", saved.get("loop", {}).get("global_step", None))
    summary = {
        "algorithm": ALGORITHM,
        "env_id": env_id,
        "seed": args.seed,
        "status": "evaluated",
        "checkpoint": os.path.abspath(args.eval_checkpoint),
        "global_step": global_step,
        "gradient_updates": 0,
        "policy_updates": 0,
        "train_time_s": time.time() - start,
        "learn_sps": None,
        "episodic_return_last": None,
        "eval_return_mean": float(np.mean(returns)),
        "eval_return_std": float(np.std(returns)),
        "eval_episodes": args.eval_episodes,
        "alpha": saved["args"]["alpha"],
    }
    if env_id == "MultiGoal-v0":
        if args.plot:
            trained = f", {global_step:,} env steps" if global_step is not None else ""
            caption = f"soft Q-learning on MultiGoal-v0: seed {saved['args']['seed']}{trained}"
            plot_path = os.path.join(run_dir, "multigoal.png")
            goal_counts = plot_multigoal(
                sampler, qf, plot_path, args.seed + 100_000, device, caption
            )
        else:
            goal_counts = multigoal_rollouts(sampler, 50, args.seed + 100_000, device)[1]
        summary.update(goal_statistics(goal_counts))
    run_log.log(global_step or 0, {"eval/episodic_return": summary["eval_return_mean"]})
    run_log.write_summary(summary)
    run_log.close()
    env.close()
    print(
        f"eval of {args.eval_checkpoint}: return {summary['eval_return_mean']:.1f} "
        f"± {summary['eval_return_std']:.1f} over {args.eval_episodes} episodes; results in {run_dir}"
    )
    return {**summary, "run_dir": run_dir}


if __name__ == "__main__":
    try:
        main(tyro.cli(Args))
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except TrainingDiverged as err:
        print(f"error: training diverged: {err}; the last good checkpoint is kept", file=sys.stderr)
        raise SystemExit(1) from None
