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
and K_u = int(K·--kernel-update-ratio) updated particles u_i, and move each u_i along
    Δu_i = (1/K_f) Σ_j [ κ(u′_j, u_i) ∇_{u′} log p(u′_j|s) + ∇_{u′} κ(u′_j, u_i) ],
the direction that most quickly lowers KL(sampler ‖ p) in the kernel's function space: the first
term pulls particles uphill on log p, the second pushes them apart (eq. 13 is this times α). The
step is passed into φ through the network's Jacobian:  ∇_φ J ≈ −E_s Σ_i Δu_i ∂u_i/∂φ  (eq. 14,
implemented as the surrogate loss −Σ_i ⟨stop_grad(Δu_i), u_i⟩). The target density of u is π's
density pulled back through tanh:
    log p(u|s) = Q(s, tanh u)/α + Σ_k log(1 − tanh² u_k) + const,
    log(1 − tanh² u) = 2 (log 2 − u − softplus(−2u))                   (stable for large |u|),
so a = tanh(u) is distributed as exp(Q(s, a)/α) on the box. The kernel is the RBF kernel with the
median-heuristic bandwidth of the reference code (Liu & Wang 2016):
    κ(x, y) = exp(−‖x − y‖² / h),   h = median_{j,i} ‖u′_j − u_i‖² / log K_f,
    ∇_x κ(x, y) = −2 (x − y) / h · κ(x, y).

One update (Algorithm 1): a gradient step of Q on J_Q, then a step of the sampler against the
just-updated online Q, then the target update. Each step is zero_grad(), backward(), step(), so the
optimizers' own settings hold. ∇ log p is taken by torch.autograd.grad with respect to the fixed
particles alone, and the surrogate's backward is restricted to the sampler's parameters
(`inputs=`), so the sampler step never leaves gradients in Q.

Temperature and reward scale. Only α / reward_scale shapes π (rewards scaled by c scale Q by c): it
is the effective temperature, in the env's own reward units, and what the progress line,
losses/alpha and the summary's "alpha" report (the summary adds "reward_scale"). The reference code
keeps α = 1 and sets the reward scale per env: MultiGoal 0.1 (examples/multigoal_sql.py),
Swimmer/Hopper/HalfCheetah 30, Walker2d 10, Ant 300, Humanoid 100 (examples/mujoco_all_sql.py);
Pendulum 5 was chosen here. Its other values are the defaults: 2 hidden layers of 128 units, Adam
3e-4 for both networks, batch 128, 16 value particles, 16 kernel particles with update ratio 0.5,
a target copy every 1000 updates, γ = 0.99, one gradient step per env step. On MultiGoal-v0
--batch-size, --kernel-n-particles and --learning-starts default to the reference's 64, 32 and 100
(a flag you set wins), and its episodes last 30 steps (the env below has that time limit).

Evaluation (--eval-policy). SQL's policy is a sampler with no mode or mean to read off. `greedy`
(the default) takes the best of --eval-n-particles sampled actions, a = argmax_j Q(s, tanh f_φ(s, ξ_j)),
the max-Q action within the policy's support; `sampler` evaluates the sampler itself, one
a = tanh f_φ(s, ξ) per step. Either way the noise comes from torch's RNG, seeded per episode and
restored afterwards, so evaluation is repeatable and leaves training alone. On MultiGoal-v0 every
evaluation also rolls out the *stochastic* sampler 50 times from the origin and counts the goals it
reaches (goals_reached, rollouts_at_goal), since multimodality is Figure 1's point;
benchmarks/multigoal_figure.py draws that figure from a saved model.pt.

Departures from the paper and the reference code, and why:
- Evaluation is greedy by default, where the reference evaluates the sampler (--eval-policy
  sampler): like SAC's deterministic policy, it measures what Q has learned without the entropy's
  noise, so returns compare across the family; the sampler's return also carries that noise.
- SVGD runs on the pre-tanh u, with the kernel and ∇ log p both in u-space. The reference adds the
  tanh term to Q but differentiates and measures distances in a-space, a mix whose fixed point is
  exp(Q/α)·Π_k(1 − a_k²) rather than exp(Q/α) (too narrow); tests/test_sql_continuous.py checks
  this sampler against a known bimodal density.
- Uniform-random actions for --learning-starts steps (1000, the reference's minimum pool size for
  MuJoCo) instead of the untrained sampler; importance-sampling particles are drawn per next-state
  rather than shared by the batch; the SVGD surrogate is averaged (not summed) over particles and
  states, which Adam's per-parameter scaling makes equivalent.
- With --num-envs N every loop iteration takes N env steps and does N gradient updates.
- `--compile` torch.compiles the update and the acting (LeanRL's recipe); `--cudagraphs` (CUDA)
  replays them as CUDA graphs through torch.compile's "reduce-overhead" mode, with Adam
  capturable. Both are meant for GPUs; README has the measurements.

Usage (see --help for every flag; the last line is a quick check on a small env):
    python sql_continuous.py --env-id HalfCheetah-v4     # the paper's MuJoCo setting, 1M steps
    python sql_continuous.py --env-id MultiGoal-v0 --total-timesteps 10000 --save-model
    python benchmarks/multigoal_figure.py runs/<run>/model.pt   # Figure 1 of that run
    python sql_continuous.py --env-id Pendulum-v1 --total-timesteps 10000 --hidden-dim 64 --tau 0.005 --target-network-frequency 1 --q-lr 1e-3 --policy-lr 1e-3
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
import warnings
from collections import deque
from dataclasses import asdict, dataclass, fields, replace
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro

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
    machine do not fight over cores)"""
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
    """path of a checkpoint.pt to continue: every learned and counted state comes back, episodes in
    flight restart (the run keeps its settings; a typed --total-timesteps extends it)"""
    eval_checkpoint: str | None = None
    """path of a model.pt or checkpoint.pt: evaluate that policy on its env, write summary.json, train nothing"""
    compile: bool = False
    """torch.compile the update and the acting; for CUDA (on a small CPU it does not pay: see README)"""
    cudagraphs: bool = False
    """CUDA only, implies --compile: replay the compiled update and acting as CUDA graphs"""

    def __post_init__(self):
        """A None default becomes the reference code's value for this env, once, when Args is built."""
        multigoal = self.env_id == "MultiGoal-v0"
        for name, value in (MULTIGOAL_SETTINGS if multigoal else OTHER_SETTINGS).items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.reward_scale is None:
            family = self.env_id.split("/")[-1].split("-")[0]
            self.reward_scale = REFERENCE_REWARD_SCALES.get(family, 1.0)

    @property
    def kernel_particle_split(self) -> tuple[int, int]:
        """(K_u, K_f): int(K·ratio) updated particles, the other K − K_u fixed."""
        num_updated = int(self.kernel_n_particles * self.kernel_update_ratio)
        return num_updated, self.kernel_n_particles - num_updated


# The reference code's env-dependent settings (haarnoja/softqlearning examples/): MultiGoal's from
# multigoal_sql.py, the rest from mujoco_all_sql.py; Pendulum's reward scale was chosen here.
MULTIGOAL_SETTINGS = dict(batch_size=64, kernel_n_particles=32, learning_starts=100)
OTHER_SETTINGS = dict(batch_size=128, kernel_n_particles=16, learning_starts=1_000)
REFERENCE_REWARD_SCALES = {"MultiGoal": 0.1, "Swimmer": 30.0, "Hopper": 30.0, "HalfCheetah": 30.0}
REFERENCE_REWARD_SCALES |= {"Walker2d": 10.0, "Ant": 300.0, "Humanoid": 100.0, "Pendulum": 5.0}

# The algorithm's own flag checks ({flag: (requirement, check)}, in this order); the harness adds
# the shared ones. SVGD's particle split depends on two flags: it is checked as the Args property
# that the update uses, after the ratio alone (a NaN ratio has no int(K·ratio)).
POSITIVE_FLAGS = ["policy_lr", "q_lr", "hidden_dim", "value_n_particles", "eval_n_particles"]
FLAG_RULES = {
    **dict.fromkeys([*POSITIVE_FLAGS, "target_network_frequency"], ("positive", lambda v: v > 0)),
    **dict.fromkeys(["alpha", "reward_scale"], ("finite and positive", lambda v: 0 < v < math.inf)),
    "eval_policy": ("greedy or sampler", lambda v: v in ("greedy", "sampler")),
    "kernel_update_ratio": ("in (0, 1)", lambda v: 0 < v < 1),
    "kernel_particle_split": (
        "at least 1 updated and 2 fixed SVGD particles (int(K·ratio) updated, the rest fixed): "
        "raise --kernel-n-particles or move --kernel-update-ratio",
        lambda split: split[0] >= 1 and split[1] >= 2,
    ),
}


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
    """θ̄ ← (1 − τ) θ̄ + τ θ, in place; τ = 1 is the paper's hard copy θ̄ ← θ, bit for bit (lerp
    computes θ − (θ − θ̄)(1 − τ) for τ ≥ ½)."""
    for target_param, param in zip(target.parameters(), online.parameters(), strict=True):
        target_param.lerp_(param, tau)


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
        self.state = np.zeros(2)  # the position

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

    def particles(self, obs: torch.Tensor, num: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`num` pre-squash particles per state: obs [B, obs_dim] → (obs repeated, u) [B, num, ·]."""
        noise = torch.randn(obs.shape[0], num, self.act_dim, device=obs.device)
        repeated_obs = obs[:, None, :].expand(-1, num, -1)
        return repeated_obs, self(repeated_obs, noise)

    def sample(self, obs: torch.Tensor) -> torch.Tensor:
        """One action a = tanh f_φ(s, ξ) ∈ [−1, 1]^d per state: the stochastic policy."""
        return torch.tanh(self.particles(obs, 1)[1][:, 0])

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
    """J_Q = E[½(Q(s,a) − y)²] with y from Q̄ at `num` uniform actions at s′ (eq. 10, 11).
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


def svgd_sampler_loss(sampler, obs: torch.Tensor, log_density, num_updated: int, num_fixed: int):
    """The amortized SVGD surrogate −mean_i ⟨stop_grad(Δu_i), u_i⟩ (eq. 13, 14).

    Its gradient in φ is −mean_i Δu_i ∂u_i/∂φ: one step moves every updated particle along its Stein
    direction. The fixed particles only define the direction, so they and log p are detached
    from φ; ∇ log p is taken with respect to the particles alone (autograd.grad, no .grad fields),
    so the loss's graph reaches Q nowhere. Returns (loss, mean ‖Δu‖, mean bandwidth h).
    """
    with torch.no_grad():  # the fixed particles never need ∂u/∂φ: no graph through the sampler
        fixed_obs, fixed = sampler.particles(obs, num_fixed)
    fixed.requires_grad_(True)
    grad_log_p = torch.autograd.grad(log_density(fixed_obs, fixed).sum(), fixed)[0]
    updated = sampler.particles(obs, num_updated)[1]
    direction, bandwidth = stein_direction(fixed.detach(), updated.detach(), grad_log_p)
    loss = -(direction * updated).sum(-1).mean()
    return loss, direction.norm(dim=-1).mean(), bandwidth.mean()


def update(
    batch, sampler, qf, qf_target, q_optimizer, sampler_optimizer, args: Args, update_target: bool
) -> dict[str, torch.Tensor]:
    """One gradient step of Q, then of the sampler, then (when update_target) the target update;
    returns the losses and diagnostics as detached tensors (read them only when logging)."""
    qf_loss, q_values, next_value = critic_loss(
        qf, qf_target, batch, args.alpha, args.gamma, args.reward_scale, args.value_n_particles
    )
    q_optimizer.zero_grad()
    qf_loss.backward()
    q_optimizer.step()

    # The sampler chases exp(Q/α) of the online Q, just updated (never the target Q̄).
    log_density = squashed_log_density(qf, args.alpha)
    sampler_loss, stein_norm, bandwidth = svgd_sampler_loss(
        sampler, batch[0], log_density, *args.kernel_particle_split
    )
    sampler_optimizer.zero_grad()
    sampler_loss.backward(inputs=list(sampler.parameters()))  # trains φ, never Q
    sampler_optimizer.step()

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


# ---- Evaluation policy, the multi-goal statistics, the training loop
class EvaluationPolicy:
    """obs [B, obs_dim] → env actions [B, d]: the greedy action (argmax_j Q(s, a_j) over `num`
    sampled a_j) or one sample of the sampler; `diagnostics` adds MultiGoal's goal counts."""

    def __init__(self, sampler, qf, mode: str, num: int):
        self.sampler, self.qf, self.mode, self.num = sampler, qf, mode, num

    @torch.inference_mode()
    def __call__(self, obs: torch.Tensor) -> np.ndarray:
        if self.mode == "sampler":
            return self.sampler.to_env_action(self.sampler.sample(obs))
        repeated_obs, pre_tanh = self.sampler.particles(obs, self.num)
        actions = torch.tanh(pre_tanh)
        best = self.qf(repeated_obs, actions).argmax(dim=1)
        return self.sampler.to_env_action(actions[torch.arange(len(obs), device=obs.device), best])

    def diagnostics(self, run: Run) -> dict:
        """On MultiGoal-v0: the goals that 50 rollouts of the stochastic sampler reach."""
        if run.args.env_id != "MultiGoal-v0":
            return {}
        seed = run.args.seed + 100_000  # the seeds of the harness's evaluation episodes
        return goal_statistics(multigoal_rollouts(self.sampler, 50, seed)[1])


@torch.inference_mode()
def multigoal_rollouts(sampler, episodes: int, seed: int):
    """Rollouts of the *stochastic* sampler on MultiGoal-v0 from (near) the origin, episode k with
    seed + k, inside fork_rng (the training run's stream is left as it was). Returns (positions
    of each episode [T + 1, 2], episodes ended at each of the goals)."""
    env, device = gym.make("MultiGoal-v0"), sampler.action_scale.device
    paths, goal_counts = [], np.zeros(len(MultiGoalEnv.GOALS), dtype=np.int64)
    for episode in range(episodes):
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed + episode)
            obs, _ = env.reset(seed=seed + episode)
            positions, done = [obs], False
            while not done:
                obs_tensor = torch.as_tensor(obs, dtype=torch.float32, device=device)[None]
                action = sampler.to_env_action(sampler.sample(obs_tensor))[0]
                obs, _, terminated, truncated, _ = env.step(action)
                positions.append(obs)
                done = terminated or truncated
        distances = np.linalg.norm(MultiGoalEnv.GOALS - obs, axis=1)
        if distances.min() < MultiGoalEnv.GOAL_RADIUS:
            goal_counts[distances.argmin()] += 1
        paths.append(np.array(positions))
    return paths, goal_counts


def goal_statistics(counts: np.ndarray) -> dict:
    """Distinct goals reached, and how many rollouts ended at any goal."""
    return {"goals_reached": int(np.count_nonzero(counts)), "rollouts_at_goal": int(counts.sum())}


def load_policy(saved: dict, args: Args, env: gym.Env, device: torch.device):
    """The saved networks, evaluated as this command line asks (--eval-policy, --eval-n-particles)."""
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    low, high, hidden_dim = env.action_space.low, env.action_space.high, saved["args"]["hidden_dim"]
    sampler = SamplingNetwork(obs_dim, act_dim, hidden_dim, low, high)
    qf = SoftQNetwork(obs_dim, act_dim, hidden_dim)
    sampler.load_state_dict(saved["sampler"])
    qf.load_state_dict(saved["qf"])
    sampler, qf = sampler.to(device), qf.to(device)
    return EvaluationPolicy(sampler, qf, args.eval_policy, args.eval_n_particles)


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
    # capturable: Adam's step count lives on the GPU, where a replayed CUDA graph can advance it
    q_optimizer = torch.optim.Adam(qf.parameters(), lr=args.q_lr, capturable=run.cuda_graphs)
    sampler_optimizer = torch.optim.Adam(
        sampler.parameters(), lr=args.policy_lr, capturable=run.cuda_graphs
    )
    buffer = ReplayBuffer(args.buffer_size, obs_dim, act_dim, device)
    train_step, sample_action = run.compiled(update), run.compiled(sampler.sample)

    obs = run.start(
        model=dict(sampler=sampler, qf=qf, qf_target=qf_target),
        training=dict(q_optimizer=q_optimizer, sampler_optimizer=sampler_optimizer, buffer=buffer),
        policy=EvaluationPolicy(sampler, qf, args.eval_policy, args.eval_n_particles),
        # α/reward_scale is the temperature that shapes π, in units of the env's reward
        report=lambda: {"alpha": args.alpha / args.reward_scale, "reward_scale": args.reward_scale},
    )
    while run.running():
        # act: uniform-random actions during warm-up, then one sample of the sampler per env
        if run.global_step < args.learning_starts:
            unit_action = torch.rand(args.num_envs, act_dim, device=device) * 2.0 - 1.0
        else:
            with torch.no_grad():
                obs_tensor = torch.as_tensor(obs, dtype=torch.float32, device=device)
                unit_action = sample_action(obs_tensor)
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
                batch = buffer.sample(args.batch_size)
                losses = train_step(
                    batch,
                    sampler,
                    qf,
                    qf_target,
                    q_optimizer,
                    sampler_optimizer,
                    args,
                    update_target,
                )
                run.gradient_updates += 1
                run.policy_updates += 1
            run.log_losses(losses)
        run.end_iteration()


# ==== run harness: the same text, byte for byte, in sac_v2, sac_v1, sql_discrete and sql_continuous
"""Run directory, metrics.jsonl, summary.json, wandb, evaluation, checkpoints, resume, Ctrl-C and
exit statuses (0 done, 1 diverged, 2 bad input, 130 interrupted with a checkpoint). It needs from
the algorithm: ALGORITHM, Args, FLAG_RULES, check_env_spaces, load_policy and train(args, run),
which drives a Run:
    obs = run.start(model, training, policy, report)  what to save ({name: module, optimizer, buffer
        or tensor}; `model` also goes to model.pt), the evaluation policy (observations -> env
        actions; an optional policy.diagnostics(run) adds summary keys and eval/ rows) and report()
        -> {"alpha": ...}. --resume restores them all, the counters and torch's RNG; episodes in
        flight start afresh (env internals are not saved).
    run.record_step(rewards, terminated, truncated); run.log_losses(losses) (every --log-frequency
    steps: one host sync and the NaN check); run.end_iteration() (evaluate, checkpoint, print);
    run.compiled(fn) (fn as --compile / --cudagraphs ask); run.running(), run.device, run.envs,
    run.cuda_graphs, run.global_step, run.gradient_updates, run.policy_updates.
"""

STOP_REQUESTED = threading.Event()  # set by the command line's Ctrl-C/SIGTERM handler
# The flags a resumed run takes from its command line when typed; all others from the checkpoint.
RESUME_OVERRIDES = {"total_timesteps", "checkpoint_frequency", "eval_frequency", "log_frequency"}
RESUME_OVERRIDES |= {"track", "cuda", "torch_threads", "eval_episodes", "save_model", "compile"}
POSITIVE, AT_LEAST_0 = ("positive", lambda v: v > 0), (">= 0", lambda v: v >= 0)
SHARED_FLAG_RULES = {
    **dict.fromkeys(["total_timesteps", "num_envs", "buffer_size", "batch_size"], POSITIVE),
    **dict.fromkeys(["eval_episodes", "log_frequency"], POSITIVE),
    **dict.fromkeys(["learning_starts", "eval_frequency", "checkpoint_frequency"], AT_LEAST_0),
    "torch_threads": AT_LEAST_0,
    "gamma": ("in [0, 1)", lambda v: 0 <= v < 1),
    "tau": ("in (0, 1]", lambda v: 0 < v <= 1),
}


class UsageError(Exception):
    """Bad input from the user: one line on stderr, exit status 2, nothing written."""


class TrainingDiverged(RuntimeError):
    """A non-finite loss or weight: the run stops, the last good checkpoint stays, exit status 1."""


def check_flags(args: Args) -> None:
    for name, (requirement, holds) in {**SHARED_FLAG_RULES, **FLAG_RULES}.items():
        if not holds(getattr(args, name)):
            flag = name.replace("_", "-")
            raise UsageError(f"--{flag} must be {requirement}, got {getattr(args, name)}")
    if args.batch_size > args.buffer_size:
        raise UsageError(f"--batch-size {args.batch_size} exceeds --buffer-size {args.buffer_size}")


def make_checked_env(env_id: str, render_mode: str | None = None) -> gym.Env:
    try:
        env = gym.make(env_id, render_mode=render_mode)
    except gym.error.DependencyNotInstalled as err:
        raise UsageError(f"{env_id} needs a missing dependency: {err}") from None
    except gym.error.Error as err:  # NameNotFound, VersionNotFound, NamespaceNotFound, ...
        raise UsageError(f"unknown environment '{env_id}' ({err})") from None
    check_env_spaces(env, env_id)
    return env


def load_saved(path: str, flag: str) -> dict:
    """A model.pt / checkpoint.pt of this algorithm, loaded with weights_only=True and checked."""
    wanted = "a checkpoint.pt" if flag == "--resume" else "a model.pt or checkpoint.pt"
    if os.path.isdir(path):
        raise UsageError(f"{flag} '{path}' is a directory; give {wanted} file, e.g. in runs/<run>/")
    if not os.path.isfile(path):
        raise UsageError(f"{flag} file '{path}' does not exist; give {wanted} of a {ALGORITHM} run")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a torch file, or holds arbitrary objects
        raise UsageError(f"{flag} '{path}' cannot be read by torch.load ({type(err).__name__}); "
                         f"give {wanted} of a {ALGORITHM} run") from None  # fmt: skip
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


class Run:
    """One run's directory, envs, counters and logs; see the interface above."""

    def __init__(self, args: Args, saved: dict | None = None):
        self.args, self.saved = args, saved
        random.seed(args.seed)
        np.random.seed(args.seed)
        torch.manual_seed(args.seed)
        torch.backends.cudnn.deterministic = args.torch_deterministic
        # More threads than free cores make the runs sharing a machine spin against each other.
        torch.set_num_threads(args.torch_threads or max(1, min(4, (os.cpu_count() or 1) // 2)))
        self.device = torch.device("cuda" if args.cuda and torch.cuda.is_available() else "cpu")
        if args.cuda and self.device.type == "cpu":
            print("notice: CUDA is not available, running on CPU", flush=True)
        self.cuda_graphs = args.cudagraphs and self.device.type == "cuda"
        if args.cudagraphs and not self.cuda_graphs:
            print("notice: --cudagraphs needs CUDA; running with --compile alone", flush=True)
        if args.capture_video:  # render off-screen: MuJoCo through EGL, pygame with no display
            os.environ.setdefault("MUJOCO_GL", "egl")
            os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        # The envs are built, and so the env id checked, before anything is written.
        self.eval_env = make_checked_env(args.env_id, "rgb_array" if args.capture_video else None)
        self.envs = gym.vector.SyncVectorEnv(
            [lambda: gym.make(args.env_id)] * args.num_envs,
            # SAME_STEP: an ending env resets inside step(); its true last obs is infos["final_obs"]
            autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
        )
        name = f"{args.env_id.replace('/', '-')}__{args.exp_name}__{args.seed}__{int(time.time())}"
        self.dir = (os.path.dirname(args.resume) or ".") if saved else os.path.join("runs", name)
        for copy in range(2, 1000):  # two runs started in the same second get a directory each
            try:
                os.makedirs(self.dir, exist_ok=bool(saved))
                break
            except FileExistsError:
                self.dir = os.path.join("runs", f"{name}-{copy}")
        if args.capture_video:  # film the first episode of every evaluation
            self.eval_env = gym.wrappers.RecordVideo(
                self.eval_env, os.path.join(self.dir, "videos"), name_prefix="eval",
                episode_trigger=lambda episode: episode % args.eval_episodes == 0,
                disable_logger=True,
            )  # fmt: skip
        metrics_path, rows = os.path.join(self.dir, "metrics.jsonl"), []
        if saved and os.path.exists(metrics_path):  # keep the rows logged up to the checkpoint
            with open(metrics_path) as f:
                rows = [row for row in f if json.loads(row)["global_step"] <= saved["global_step"]]
        self.metrics = open(metrics_path, "w")  # noqa: SIM115 (closed in finish)
        self.metrics.writelines(rows)
        self.wandb = None
        if args.track:
            import wandb

            run_name = os.path.basename(self.dir)
            self.wandb = wandb.init(
                project=args.wandb_project_name, entity=args.wandb_entity, config=asdict(args),
                name=run_name, dir=self.dir, id=run_name[-64:], resume="allow",
            )  # fmt: skip
        self.global_step = self.gradient_updates = self.policy_updates = 0
        self.episode_returns = np.zeros(args.num_envs)
        self.episode_lengths = np.zeros(args.num_envs, dtype=np.int64)
        self.recent_returns: deque[float] = deque(maxlen=10)
        self.start_time = self.last_print = time.time()
        self.time_before, self.eval_seconds, self.learn_start, self.last_eval = 0.0, 0.0, None, None

    def start(self, model: dict, training: dict, policy, report) -> np.ndarray:
        self.model, self.training, self.policy, self.report = model, training, policy, report
        if self.saved is None:
            return self.envs.reset(seed=self.args.seed)[0]
        for name, item in {**model, **training}.items():
            if isinstance(item, torch.Tensor):
                with torch.no_grad():
                    item.copy_(self.saved[name])
            else:
                item.load_state_dict(self.saved[name])
        loop, rng = self.saved["loop"], self.saved["rng"]
        self.global_step, self.gradient_updates = loop["global_step"], loop["gradient_updates"]
        self.policy_updates, self.last_eval = loop["policy_updates"], loop["last_eval"]
        self.time_before = loop["train_time_s"]
        self.recent_returns.extend(loop["recent_returns"])
        torch.set_rng_state(rng["torch"])
        if self.device.type == "cuda" and rng["cuda"] is not None:
            torch.cuda.set_rng_state_all(rng["cuda"])
        print(f"resumed {self.args.resume} at step {self.global_step:,} of "
              f"{self.args.total_timesteps:,}; episodes in flight start afresh", flush=True)  # fmt: skip
        return self.envs.reset(seed=self.args.seed + self.global_step)[0]

    def compiled(self, fn):
        """fn, torch.compile(fn) with --compile, and in its CUDA-graph mode with --cudagraphs."""
        if not (self.args.compile or self.args.cudagraphs):
            return fn
        return torch.compile(fn, mode="reduce-overhead" if self.cuda_graphs else None)

    def running(self) -> bool:
        return self.global_step < self.args.total_timesteps and not STOP_REQUESTED.is_set()

    def crossed(self, every: int) -> bool:
        """Did this iteration's env steps cross a multiple of `every` (0 = never)?"""
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
            self.log({"charts/episodic_return": self.recent_returns[-1],
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
        if self.crossed(self.args.log_frequency):
            values = {key: float(value) for key, value in losses.items()}
            if bad := [key for key, value in values.items() if not math.isfinite(value)]:
                raise TrainingDiverged(f"non-finite {', '.join(bad)} at step {self.global_step}")
            self.log({**values, "charts/SPS": self.learn_sps()})

    @torch.inference_mode()
    def evaluate(self) -> None:
        """Episode k resets the eval env and torch's RNG with seed + k inside fork_rng, so
        evaluating never changes the training run's random stream."""
        start, returns, seed = time.time(), [], self.args.seed + 100_000
        for episode in range(self.args.eval_episodes):
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                torch.manual_seed(seed + episode)
                obs, _ = self.eval_env.reset(seed=seed + episode)
                done, returns = False, [*returns, 0.0]
                while not done:
                    obs_tensor = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
                    obs, reward, terminated, truncated, _ = self.eval_env.step(
                        self.policy(obs_tensor[None])[0]
                    )
                    returns[-1], done = returns[-1] + float(reward), terminated or truncated
        row = {"eval/episodic_return": float(np.mean(returns))}
        row["eval/episodic_return_std"] = float(np.std(returns))
        diagnostics = self.policy.diagnostics(self) if hasattr(self.policy, "diagnostics") else {}
        self.log(row | {f"eval/{name}": value for name, value in diagnostics.items()})
        self.last_eval = {"step": self.global_step, **row, "diagnostics": diagnostics}
        print(f"eval  step {self.global_step:>9,}: return {row['eval/episodic_return']:.1f} ± "
              f"{row['eval/episodic_return_std']:.1f} over {len(returns)} episode"
              + "s" * (len(returns) > 1), flush=True)  # fmt: skip
        self.eval_seconds += time.time() - start if self.learn_start else 0.0

    def saved_model(self) -> dict:
        """model.pt's content: the `model` entries, args and report; raises on non-finite weights."""
        model = {name: item.state_dict() if isinstance(item, nn.Module) else item.detach().cpu()
                 for name, item in self.model.items()}  # fmt: skip
        tensors = [t for i in model.values() for t in (i.values() if isinstance(i, dict) else [i])]
        if not all(torch.isfinite(t).all() for t in tensors if t.is_floating_point()):
            raise TrainingDiverged(f"non-finite network weights at step {self.global_step}")
        saved = {"algorithm": ALGORITHM, "args": asdict(self.args), "report": self.report()}
        return {**saved, "global_step": self.global_step, **model}

    def save_checkpoint(self) -> None:
        checkpoint = self.saved_model()
        checkpoint.update({name: item.state_dict() for name, item in self.training.items()})
        checkpoint["loop"] = {
            "global_step": self.global_step, "gradient_updates": self.gradient_updates,
            "policy_updates": self.policy_updates, "last_eval": self.last_eval,
            "recent_returns": list(self.recent_returns),
            "train_time_s": self.time_before + time.time() - self.start_time,
        }  # fmt: skip
        cuda = torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None
        checkpoint["rng"] = {"torch": torch.get_rng_state(), "cuda": cuda}  # all the run draws from
        save_atomically(checkpoint, os.path.join(self.dir, "checkpoint.pt"))

    def end_iteration(self) -> None:
        args, step = self.args, self.global_step
        if self.cuda_graphs:  # this iteration's graph outputs have been used: their memory is free
            torch.compiler.cudagraph_mark_step_begin()
        if self.crossed(args.eval_frequency) and step < args.total_timesteps:
            self.evaluate()
        if self.crossed(args.checkpoint_frequency):
            self.save_checkpoint()
        if time.time() - self.last_print > 5.0:
            self.last_print, sps = time.time(), self.learn_sps()
            eta = f"{(args.total_timesteps - step) / sps / 60:.1f} min" if sps else "(warm-up)"
            recent = f"{np.mean(self.recent_returns):.1f}" if self.recent_returns else "n/a"
            print(f"step {step:,}/{args.total_timesteps:,} ({step / args.total_timesteps:.0%}) | "
                  f"ETA {eta} | train return {recent} | SPS {sps or 0:.0f} | "
                  f"alpha {self.report()['alpha']:.4g}", flush=True)  # fmt: skip

    def save_final(self, status: str) -> None:
        """The final evaluation, checkpoint and model.pt of a run that ended well."""
        model = self.saved_model()  # checks the weights first: a NaN model is never saved
        if status == "finished" and (self.last_eval or {}).get("step") != self.global_step:
            self.evaluate()  # always end with an evaluation of the final policy
        if self.args.checkpoint_frequency or self.saved or status == "interrupted":
            self.save_checkpoint()
        if self.args.save_model:
            save_atomically(model, os.path.join(self.dir, "model.pt"))

    def finish(self, status: str) -> dict:
        """summary.json, close everything, and the final console line."""
        args, last_eval = self.args, self.last_eval or {}
        summary = {
            "algorithm": ALGORITHM, "env_id": args.env_id, "seed": args.seed, "status": status,
            "global_step": self.global_step, "gradient_updates": self.gradient_updates,
            "policy_updates": self.policy_updates, "learn_sps": self.learn_sps(),
            "train_time_s": self.time_before + time.time() - self.start_time,
            "episodic_return_last": float(np.mean(self.recent_returns)) if self.recent_returns else None,
            "eval_return_mean": last_eval.get("eval/episodic_return"),
            "eval_return_std": last_eval.get("eval/episodic_return_std"),
            "eval_episodes": args.eval_episodes if last_eval else 0, **self.report(),
            **last_eval.get("diagnostics", {}), "args": json.loads(json.dumps(asdict(args))),
        }  # fmt: skip
        save_atomically(summary, os.path.join(self.dir, "summary.json"))
        self.metrics.close()
        if self.wandb is not None:
            self.wandb.finish()
        self.envs.close()
        self.eval_env.close()
        evaluation = f"eval return {last_eval['eval/episodic_return']:.1f}" if last_eval else ""
        print(f"{status}: {self.global_step:,} steps in {summary['train_time_s']:.0f} s | "
              f"{evaluation or 'no evaluation'} | results in {self.dir}", flush=True)  # fmt: skip
        if status == "interrupted":
            checkpoint = os.path.join(self.dir, "checkpoint.pt")
            print(f"continue with: python {ALGORITHM}.py --resume {checkpoint}", flush=True)
        return {**summary, "run_dir": self.dir}


def resumed_args(saved_args: dict, args: Args, typed: set[str]) -> Args:
    """A resumed run keeps its saved settings, except the RESUME_OVERRIDES flags the user typed."""
    merged = saved_args | {name: getattr(args, name) for name in RESUME_OVERRIDES & typed}
    merged["resume"] = args.resume
    return Args(**{f.name: merged[f.name] for f in fields(Args) if f.name in merged})


def evaluate_checkpoint(args: Args, typed: set[str]) -> dict:
    """--eval-checkpoint: evaluate a saved policy on its env (with video if asked); train nothing."""
    saved = load_saved(args.eval_checkpoint, "--eval-checkpoint")
    env_id = saved["args"]["env_id"]
    if "env_id" in typed and args.env_id != env_id:
        raise UsageError(f"--env-id {args.env_id}: '{args.eval_checkpoint}' was trained on "
                         f"{env_id}; leave --env-id out to evaluate it there")  # fmt: skip
    args = replace(args, env_id=env_id, exp_name=f"{args.exp_name}-eval", num_envs=1)
    try:  # a first load on CPU checks the file before anything is written
        load_policy(saved, args, make_checked_env(env_id), torch.device("cpu"))
    except (RuntimeError, KeyError) as err:
        raise UsageError(f"'{args.eval_checkpoint}' does not fit {env_id} ({err})") from None
    run = Run(args)
    run.start({}, {}, load_policy(saved, args, run.eval_env, run.device), lambda: saved["report"])
    run.global_step = saved["global_step"]
    run.evaluate()
    return run.finish("evaluated")


def main(args: Args, typed: set[str] | None = None) -> dict:
    """Train (or, with --eval-checkpoint, evaluate) as `args` say; returns the summary and run_dir.
    `typed`: the flags typed on the command line (from Python: those that differ from the default)."""
    if typed is None:
        typed = {f.name for f in fields(Args) if getattr(args, f.name) != getattr(Args(), f.name)}
    check_flags(args)
    if args.eval_checkpoint:
        return evaluate_checkpoint(args, typed)
    saved = load_saved(args.resume, "--resume") if args.resume else None
    if saved:
        args = resumed_args(saved["args"], args, typed)
        check_flags(args)
    run, status = Run(args, saved), "crashed"  # "crashed" stays if an unexpected error escapes
    try:
        train(args, run)
        status = "interrupted" if STOP_REQUESTED.is_set() else "finished"
        run.save_final(status)
    except (TrainingDiverged, KeyboardInterrupt) as err:  # (main() called from Python: Ctrl-C
        status = "diverged" if isinstance(err, TrainingDiverged) else "aborted"  # stops at once)
        raise
    finally:
        summary = run.finish(status)
    return summary


def typed_flags(argv: list[str]) -> set[str]:
    """The Args fields named on a command line: --total-timesteps 5, --no-cuda, --seed=3."""
    names = {token[2:].split("=")[0].replace("-", "_") for token in argv if token.startswith("--")}
    return names | {name[3:] for name in names if name.startswith("no_")}


def command_line(argv: list[str] | None = None) -> int:
    """tyro parses the flags (its own message and exit status 2 for what it cannot parse); the
    first Ctrl-C/SIGTERM stops after the step with a checkpoint (a second Ctrl-C aborts)."""
    argv = sys.argv[1:] if argv is None else argv
    # MuJoCo v4 envs are kept on purpose (the published numbers use them; README, "MuJoCo v4"):
    # gymnasium's notice that they are out of date, in raw colour codes, would open every run.
    warnings.filterwarnings("ignore", r".*is out of date", DeprecationWarning)
    args = tyro.cli(Args, args=argv)

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
