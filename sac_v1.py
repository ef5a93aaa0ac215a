"""Soft Actor-Critic as first published (SAC v1): a soft state-value network, twin Q-functions and a
fixed temperature, in one file.

Haarnoja, Zhou, Abbeel, Levine (2018), "Soft Actor-Critic: Off-Policy Maximum Entropy Deep
Reinforcement Learning with a Stochastic Actor", arXiv 1801.01290.

Maximum-entropy objective (eq. 1):  J(π) = Σ_t E[ r̂(s_t, a_t) + α H(π(·|s_t)) ],  r̂ = k·r.

Three function approximators stand in for the soft policy iteration of Section 4: a soft state value
V_ψ(s) with a Polyak-averaged target V̄, two soft Q-functions Q_θ1, Q_θ2 (no target Qs: the target
V̄ plays that role), and a tanh-squashed Gaussian policy π_φ. For a replayed transition
(s, a, r, s′, terminated) and a fresh reparameterised action ã ~ π_φ(·|s), Algorithm 1 takes:

    J_V(ψ) = E_s[ ½ (V_ψ(s) − (min_i Q_θi(s, ã) − α log π_φ(ã|s)))² ]          (eq. 5)
    J_Q(θi) = E[ ½ (Q_θi(s, a) − Q̂(s, a))² ],  Q̂ = r̂ + γ (1 − terminated) V̄(s′)  (eq. 7, 8)
    J_π(φ) = E_s E_ε[ α log π_φ(ã|s) − min_i Q_θi(s, ã) ],  ã = f_φ(ε; s)      (eq. 10, 12)
    V̄ ← (1 − τ) V̄ + τ V_ψ  after every update                                  (Algorithm 1)

The V target is a constant for J_V (no gradient into Q or π) and the Q target a constant for J_Q (no
gradient into V̄ or π); J_π moves only φ (Q is a fixed function of ã there). The minimum of the twin
Qs in J_V and J_π is Section 4.2's guard against overestimation (after Fujimoto et al. 2018). Only
*termination* stops the bootstrap; an episode cut by a time limit (truncation) bootstraps from the
true last observation, because the MDP itself goes on.

Policy. A Gaussian over pre-squash actions u = μ_φ(s) + σ_φ(s) ε, ε ~ N(0, I) (reparameterisation,
eq. 11), squashed to a = tanh(u) ∈ [−1, 1]^d; the env receives scale·a + bias. The log-density of a
includes the change of variables of tanh (Appendix C, eq. 21):
    log π(a|s) = Σ_j [ −½ ε_j² − log σ_j − ½ log 2π − log(1 − tanh² u_j) ],
    log(1 − tanh² u) = 2 (log 2 − u − softplus(−2u))            (stable for large |u|),
with the ε that was drawn (recomputing (u − μ)/σ loses all precision as log σ → −20).

Temperature. The paper's losses leave α out: it is subsumed into the reward, scaled by k (the one
hyperparameter tuned per env, Appendix D, Table 2: k = 5 for Hopper, Walker2d, HalfCheetah and Ant,
20 for Humanoid), with α = 1. Scaling the reward by c scales the soft Q and V by c, so (reward scale
k, α) and (reward scale 1, α/k) define the same soft-optimal policy, and with critics k times larger
every target differs by exactly the factor k: only α/k matters for what is learned. (How fast can
differ a little: Adam takes steps of a fixed size, so k times larger critics move relatively slower.)
`--reward-scale` sets k and `--alpha` sets α (default 1, as in the paper); Pendulum-v1 learns with
k = 5 as well (see the tests). Returns are always logged unscaled.
With `--autotune` (an extra from SAC v2, arXiv 1812.05905, eq. 17, 18) α is learned instead by dual
descent on J(α) = E_{a~π}[ −α (log π(a|s) + H̄) ], starting from --alpha, H̄ = −dim(A) by default.

One update, in Algorithm 1's order: a gradient step of V_ψ on J_V, of both Q_θi on J_Q, of π_φ on
J_π (against the Qs just stepped), with --autotune of log α on J(α), then V̄ ← (1 − τ) V̄ + τ V_ψ.
J_V and J_π each draw their own ã. (The authors' code takes the four gradients at the same
parameters, with one ã shared by J_V and J_π, in one session.run.) Each step is zero_grad(),
backward(), step(), so the optimizers' own settings hold; J_π's backward is restricted to the
actor's parameters (`inputs=`), so it never leaves gradients in the Qs.
Evaluation uses the deterministic policy a = scale·tanh(μ_φ(s)) + bias on a separate env.

Departures from the paper, and why:
- J_π uses min_i Q_i(s, ã), where the authors' code (haarnoja/sac) uses Q_1 alone: we keep the
  minimum, Section 4.2's guard, so the policy climbs the same pessimistic value that V learns.
- `--learning-starts 5000` uniform-random actions before the first update (CleanRL's choice; the
  authors' code used 1000). Early diverse data keeps the critics from overfitting a few trajectories.
- The Q-functions see actions in [−1, 1] (the tanh output) rather than env units, so networks see
  the same input range on every env; log π, the entropy bonus and H̄ are measured on that same
  [−1, 1] action, as the authors' code and SB3 do. The env's own units never enter the losses (in env
  units Humanoid's ±0.4 box would shift log π by 15.6 nats, a −15.6·α penalty on every step).
- log σ is clamped to [−20, 2] (the authors' code); their 1e-3 L2 penalty on μ and log σ is left out.
- The two Q-functions are one batched module (stacked weights, `torch.baddbmm`): the same math as two
  separate MLPs, in fewer, larger matrix products.
- With `--num-envs N` every loop iteration takes N env steps and does N gradient updates, keeping the
  paper's one gradient step per env step.
- `--compile` torch.compiles the update and the acting (LeanRL's recipe); `--cudagraphs` (CUDA)
  replays them as CUDA graphs through torch.compile's "reduce-overhead" mode, with Adam
  capturable. Both are meant for GPUs; README has the measurements.

Usage:  python sac_v1.py --env-id Hopper-v4 --reward-scale 5      (see --help for every flag)
"""

from __future__ import annotations

import functools
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

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro

ALGORITHM = "sac_v1"


@dataclass
class Args:
    env_id: str = "Walker2d-v4"
    """the id of a gymnasium environment with a Box action space"""
    total_timesteps: int = 1_000_000
    """total environment steps, summed over all envs"""
    num_envs: int = 1
    """number of parallel environments (gymnasium SyncVectorEnv)"""
    buffer_size: int = 1_000_000
    """replay buffer capacity, in transitions"""
    gamma: float = 0.99
    """discount factor γ"""
    tau: float = 0.005
    """target smoothing coefficient: V̄ ← (1 − τ) V̄ + τ V"""
    batch_size: int = 256
    """minibatch size of each gradient update"""
    learning_starts: int = 5_000
    """env steps of uniform-random actions before the first gradient update"""
    policy_lr: float = 3e-4
    """Adam learning rate of the actor"""
    q_lr: float = 3e-4
    """Adam learning rate of the twin Q-functions, of the value network V and of log α"""
    hidden_dim: int = 256
    """width of the two hidden layers of every network"""
    reward_scale: float = 5.0
    """reward scale k: the critics learn from k·r (paper, Table 2: 5 for Hopper, Walker2d,
    HalfCheetah, Ant; 20 for Humanoid); only α/k matters"""
    alpha: float = 1.0
    """the temperature α (paper: 1, with the reward scale doing the work); with --autotune its starting value"""
    autotune: bool = False
    """extra (from SAC v2): learn α to keep the policy entropy near --target-entropy"""
    target_entropy: float | None = None
    """entropy target H̄ for --autotune, in nats of the [−1, 1] action; None means −dim(A)"""

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
    """env steps between evaluations of the deterministic policy (0 = only at the end)"""
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

    @property
    def autotune_start(self) -> float | None:
        """--alpha where --autotune learns log α from it (None without --autotune)."""
        return self.alpha if self.autotune else None


# The algorithm's own flag checks ({flag: (requirement, check)}); the harness adds the shared ones.
# autotune_start checks two flags at once: log α = log 0 = −inf could never be learned.
FLAG_RULES = {
    **dict.fromkeys(["policy_lr", "q_lr", "hidden_dim"], ("positive", lambda v: v > 0)),
    "reward_scale": ("positive and finite", lambda v: math.isfinite(v) and v > 0),
    "alpha": ("a finite number >= 0", lambda v: math.isfinite(v) and v >= 0),
    "target_entropy": ("finite", lambda v: v is None or math.isfinite(v)),
    "autotune_start": ("a positive --alpha: --autotune learns log α", lambda v: v is None or v > 0),
}


# ---- Soft-actor-critic math (pure functions; tests check them against independent oracles)
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def squashed_gaussian_log_prob(
    noise: torch.Tensor, log_std: torch.Tensor, pre_tanh: torch.Tensor
) -> torch.Tensor:
    """log π(a|s) of a = tanh(u), u = μ + σ·noise, summed over action dims (the docstring's formula).

    The tanh Jacobian uses log(1 − tanh² u) = 2(log 2 − u − softplus(−2u)), finite for any u, where
    the naive log(1 − tanh(u)²) is −inf once tanh(u) rounds to ±1 (|u| ≳ 9 in float32).
    """
    gaussian = -0.5 * noise.pow(2) - log_std - HALF_LOG_2PI
    log_det_tanh = 2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))
    return (gaussian - log_det_tanh).sum(-1)


def soft_value_target(q_min: torch.Tensor, log_prob: torch.Tensor, alpha) -> torch.Tensor:
    """min_i Q_i(s, ã) − α log π(ã|s), ã ~ π(·|s): a one-sample estimate of the soft value (eq. 3, 5)."""
    return q_min - alpha * log_prob


def soft_q_target(reward, terminated, next_value, gamma: float, reward_scale: float):
    """Q̂ = k·r + γ(1 − terminated) V̄(s′): the soft Bellman backup through the target V (eq. 8)."""
    return reward_scale * reward + gamma * (1.0 - terminated) * next_value


def temperature_loss(log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float):
    """J(α) = E[−α (log π + H̄)]: its gradient raises α when the entropy −log π is below H̄."""
    return -(log_alpha.exp() * (log_prob.detach() + target_entropy)).mean()


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """ψ̄ ← (1 − τ) ψ̄ + τ ψ, in place, for every parameter."""
    for target_param, param in zip(target.parameters(), online.parameters(), strict=True):
        target_param.lerp_(param, tau)


# ---- Environment check, networks, replay buffer
def check_env_spaces(env: gym.Env, env_id: str) -> None:
    """SAC needs a flat Box observation and a bounded Box action space."""
    obs_space, act_space = env.observation_space, env.action_space
    if not isinstance(act_space, gym.spaces.Box):
        raise UsageError(
            f"{env_id} has a {type(act_space).__name__} action space; SAC needs continuous (Box) "
            "actions. For discrete actions use sql_discrete.py."
        )
    if not (np.all(np.isfinite(act_space.low)) and np.all(np.isfinite(act_space.high))):
        raise UsageError(f"{env_id} has unbounded actions; SAC squashes into a bounded box.")
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        raise UsageError(
            f"{env_id} has observation space {obs_space}; this script needs a flat Box "
            "(wrap the env, e.g. FlattenObservation, to use it)."
        )


class TwinSoftQNetwork(nn.Module):
    """Q_1 and Q_2 as one module: each layer's weights are stacked along a leading critic dimension.

    Q_i(s, a) = W3_i relu(W2_i relu(W1_i [s; a] + b1_i) + b2_i) + b3_i,  i = 1, 2: two independent
    MLPs, initialised as nn.Linear is, U(−1/√fan_in, 1/√fan_in), computed with one batched matrix
    product per layer. (Kept over two nn.Sequential because the whole update measured faster this
    way on a 2-core CPU: benchmarks/twin_critics.py.) Returns [2, batch].
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int, num_critics: int = 2):
        super().__init__()
        sizes = [obs_dim + act_dim, hidden_dim, hidden_dim, 1]
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            bound = 1.0 / math.sqrt(fan_in)
            weight = torch.empty(num_critics, fan_in, fan_out).uniform_(-bound, bound)
            self.weights.append(nn.Parameter(weight))
            self.biases.append(
                nn.Parameter(torch.empty(num_critics, 1, fan_out).uniform_(-bound, bound))
            )
        self.num_critics = num_critics

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        hidden = torch.cat([obs, action], dim=-1).expand(self.num_critics, -1, -1)
        for weight, bias in zip(self.weights[:-1], self.biases[:-1], strict=True):
            hidden = torch.relu(torch.baddbmm(bias, hidden, weight))
        # the one-unit output layer as multiply-and-sum: a batched product with a single output
        # column runs far below the machine's speed on a CPU
        return (hidden * self.weights[-1].transpose(1, 2)).sum(-1) + self.biases[-1].squeeze(-1)


class SoftValueNetwork(nn.Module):
    """V_ψ(s): the soft state value, an MLP of the observation only. Returns [batch]."""

    def __init__(self, obs_dim: int, hidden_dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(obs_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, 1),
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


class Actor(nn.Module):
    """Tanh-squashed Gaussian policy π_φ(a|s) over a ∈ [−1, 1]^d; `to_env_action` rescales."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int, action_low, action_high):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Linear(obs_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim), nn.ReLU()
        )
        self.mean_and_log_std = nn.Linear(hidden_dim, 2 * act_dim)
        low = torch.as_tensor(action_low, dtype=torch.float32)
        high = torch.as_tensor(action_high, dtype=torch.float32)
        # buffers move with .to(device) and are saved in state_dict, but are not trained
        self.register_buffer("action_scale", (high - low) / 2.0)
        self.register_buffer("action_bias", (high + low) / 2.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.mean_and_log_std(self.trunk(obs)).chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised a = tanh(μ + σ ε), ε ~ N(0, I) (eq. 11); returns (a, log π(a|s))."""
        mean, log_std = self(obs)
        noise = torch.randn_like(mean)
        pre_tanh = mean + log_std.exp() * noise
        return torch.tanh(pre_tanh), squashed_gaussian_log_prob(noise, log_std, pre_tanh)

    def to_env_action(self, unit_action: torch.Tensor) -> np.ndarray:
        return (unit_action * self.action_scale + self.action_bias).detach().cpu().numpy()


class ReplayBuffer:
    """Circular buffer preallocated on the training device.

    A transition is stored as one row [s, a, r, terminated, s′] of a single tensor, so a minibatch
    is one `index_select` with one random index tensor (sampled with replacement, torch's RNG).
    Rewards are stored unscaled; the reward scale enters only the Q target.
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


# ---- The losses, and one update of every network in the order of the paper's Algorithm 1
def value_loss(vf, qf, actor, obs, alpha):
    """J_V (eq. 5) = E_s[½(V_ψ(s) − (min_i Q_i(s, ã) − α log π(ã|s)))²], a fresh ã ~ π(·|s): the
    target is a constant. Also V_ψ(s)."""
    with torch.no_grad():
        new_action, log_prob = actor.sample(obs)
        target = soft_value_target(qf(obs, new_action).min(dim=0).values, log_prob, alpha)
    values = vf(obs)
    return 0.5 * (values - target).pow(2).mean(), values.detach()


def critic_loss(qf, vf_target, batch, gamma: float, reward_scale: float):
    """J_Q (eq. 7, 8) = Σ_i E[½(Q_i(s, a) − Q̂)²], Q̂ = k·r + γ(1 − terminated) V̄(s′) a constant."""
    obs, action, reward, terminated, next_obs = batch
    with torch.no_grad():
        target = soft_q_target(
            reward.squeeze(1), terminated.squeeze(1), vf_target(next_obs), gamma, reward_scale
        )
    q_values = qf(obs, action)
    return 0.5 * (q_values - target).pow(2).mean(dim=1).sum(), q_values.detach()


def actor_loss(actor, qf, obs, alpha):
    """J_π (eq. 12) = E[α log π(ã|s) − min_i Q_i(s, ã)], ã = f_φ(ε; s) reparameterised (the KL to
    exp(Q/α)/Z up to a constant and the factor α); also log π(ã|s)."""
    action, log_prob = actor.sample(obs)
    return (alpha * log_prob - qf(obs, action).min(dim=0).values).mean(), log_prob


def update(
    batch, actor, qf, vf, vf_target, log_alpha,
    v_optimizer, q_optimizer, actor_optimizer, alpha_optimizer,
    gamma: float, tau: float, reward_scale: float, target_entropy: float,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """One gradient step of V, the Qs, π and α (alpha_optimizer None: α fixed), then the target V̄.
    Returns detached tensors, so the update never waits for the device."""
    alpha = log_alpha.detach().exp()
    vf_loss, values = value_loss(vf, qf, actor, batch[0], alpha)
    v_optimizer.zero_grad()
    vf_loss.backward()
    v_optimizer.step()

    qf_loss, q_values = critic_loss(qf, vf_target, batch, gamma, reward_scale)
    q_optimizer.zero_grad()
    qf_loss.backward()
    q_optimizer.step()

    policy_loss, log_prob = actor_loss(actor, qf, batch[0], alpha)  # the Qs as just stepped
    actor_optimizer.zero_grad()
    policy_loss.backward(inputs=list(actor.parameters()))  # J_π trains φ, never the Qs
    actor_optimizer.step()

    alpha_loss = temperature_loss(log_alpha, log_prob, target_entropy)
    if alpha_optimizer is not None:
        alpha_optimizer.zero_grad()
        alpha_loss.backward()
        alpha_optimizer.step()

    polyak_update(vf_target, vf, tau)  # Algorithm 1: after the gradient steps
    return {
        "losses/vf_loss": vf_loss.detach(),
        "losses/soft_value": values.mean(),
        "losses/qf_loss": qf_loss.detach(),
        "losses/qf1_values": q_values[0].mean(),
        "losses/qf2_values": q_values[1].mean(),
        "losses/actor_loss": policy_loss.detach(),
        "losses/alpha_loss": alpha_loss.detach(),
        "losses/alpha": alpha,
        "charts/policy_entropy": -log_prob.detach().mean(),
    }


# ---- Evaluation policy and the training loop
def deterministic_policy(actor: Actor):
    """The evaluation policy: observations → env actions scale·tanh(μ(s)) + bias."""
    return lambda obs: actor.to_env_action(torch.tanh(actor(obs)[0]))


def load_policy(saved: dict, args: Args, env: gym.Env, device: torch.device):
    """The deterministic policy of a saved actor (it has no evaluation flags)."""
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    low, high = env.action_space.low, env.action_space.high
    actor = Actor(obs_dim, act_dim, saved["args"]["hidden_dim"], low, high)
    actor.load_state_dict(saved["actor"])
    return deterministic_policy(actor.to(device))


def train(args: Args, run: Run) -> None:
    envs, device = run.envs, run.device
    obs_dim = envs.single_observation_space.shape[0]
    act_dim = envs.single_action_space.shape[0]
    low, high = envs.single_action_space.low, envs.single_action_space.high

    actor = Actor(obs_dim, act_dim, args.hidden_dim, low, high).to(device)
    qf = TwinSoftQNetwork(obs_dim, act_dim, args.hidden_dim).to(device)
    vf = SoftValueNetwork(obs_dim, args.hidden_dim).to(device)
    vf_target = SoftValueNetwork(obs_dim, args.hidden_dim).to(device)
    vf_target.load_state_dict(vf.state_dict())
    vf_target.requires_grad_(False)  # the target moves only by Polyak averaging
    # fused: one kernel per step for all of a network's parameters (faster than the per-tensor
    # loop on a CPU too); capturable: the step count lives on the GPU, where a replayed CUDA graph
    # can advance it
    adam = functools.partial(torch.optim.Adam, fused=True, capturable=run.cuda_graphs)
    v_optimizer = adam(vf.parameters(), lr=args.q_lr)
    q_optimizer = adam(qf.parameters(), lr=args.q_lr)
    actor_optimizer = adam(actor.parameters(), lr=args.policy_lr)
    target_entropy = float(-act_dim if args.target_entropy is None else args.target_entropy)
    # α = 0 gives log α = −inf, i.e. exactly α = 0 (no entropy term at all)
    initial_log_alpha = math.log(args.alpha) if args.alpha > 0 else -math.inf
    log_alpha = torch.tensor(initial_log_alpha, device=device, requires_grad=args.autotune)
    alpha_optimizer = None
    if args.autotune:
        alpha_optimizer = adam([log_alpha], lr=args.q_lr)
    buffer = ReplayBuffer(args.buffer_size, obs_dim, act_dim, device)
    train_step, sample_action = run.compiled(update), run.compiled(actor.sample)

    obs = run.start(
        # log α is saved when it is learned; a fixed α (possibly 0: log α = −inf) comes from --alpha
        model={"actor": actor, "qf": qf, "vf": vf, "vf_target": vf_target}
        | ({"log_alpha": log_alpha} if args.autotune else {}),
        training={"v_optimizer": v_optimizer, "q_optimizer": q_optimizer}
        | {"actor_optimizer": actor_optimizer, "buffer": buffer}
        | ({"alpha_optimizer": alpha_optimizer} if args.autotune else {}),
        policy=deterministic_policy(actor),
        report=lambda: {
            "alpha": log_alpha.exp().item(),
            "reward_scale": args.reward_scale,
            # α/k: the temperature relative to the unscaled reward, the one number that matters
            "alpha_per_reward_scale": log_alpha.exp().item() / args.reward_scale,
            "target_entropy": target_entropy if args.autotune else None,
        },
    )
    while run.running():
        # act: uniform-random actions during warm-up, then samples of the stochastic policy
        if run.global_step < args.learning_starts:
            unit_action = torch.rand(args.num_envs, act_dim, device=device) * 2.0 - 1.0
        else:
            with torch.no_grad():
                obs_tensor = torch.as_tensor(obs, dtype=torch.float32, device=device)
                unit_action = sample_action(obs_tensor)[0]
        next_obs, reward, terminated, truncated, infos = envs.step(actor.to_env_action(unit_action))

        # store: an episode that ended stores its true last obs (final_obs), not the reset obs
        real_next_obs = next_obs.copy()
        for i in np.flatnonzero(terminated | truncated):
            real_next_obs[i] = infos["final_obs"][i]
        buffer.add(obs, unit_action, reward, terminated, real_next_obs)
        obs = next_obs
        run.record_step(reward, terminated, truncated)

        # learn: one gradient step per env step
        if run.global_step > args.learning_starts:
            for _ in range(args.num_envs):
                losses = train_step(
                    buffer.sample(args.batch_size), actor, qf, vf, vf_target, log_alpha,
                    v_optimizer, q_optimizer, actor_optimizer, alpha_optimizer,
                    args.gamma, args.tau, args.reward_scale, target_entropy,
                )  # fmt: skip
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
