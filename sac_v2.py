"""Soft Actor-Critic (SAC v2): twin soft Q-functions and automatic entropy tuning, in one file.

Haarnoja, Zhou, Hartikainen, Tucker, Ha, Tan, Kumar, Zhu, Gupta, Abbeel, Levine (2018),
"Soft Actor-Critic Algorithms and Applications", arXiv 1812.05905.

Maximum-entropy objective (eq. 1):  J(π) = Σ_t E[ r(s_t, a_t) + α H(π(·|s_t)) ].

Critic. Two soft Q-networks Q_1, Q_2 and their Polyak-averaged targets Q̄_1, Q̄_2. For a replayed
transition (s, a, r, s′, terminated) and a fresh a′ ~ π(·|s′) (eq. 3, 5, with the twin-Q minimum of
Section 5 / TD3):
    y   = r + γ (1 − terminated) [ min_i Q̄_i(s′, a′) − α log π(a′|s′) ]
    J_Q = Σ_i E[ ½ (Q_i(s, a) − y)² ]
Only *termination* stops the bootstrap; an episode cut by a time limit (truncation) bootstraps
from the true last observation, because the MDP itself goes on.

Actor. A Gaussian over pre-squash actions u = μ_φ(s) + σ_φ(s) ε, ε ~ N(0, I) (reparameterisation,
eq. 11), squashed to a = tanh(u) ∈ [−1, 1]^d; the env receives scale·a + bias. The policy loss is
(eq. 7, 12)
    J_π = E_s E_ε[ α log π(a|s) − min_i Q_i(s, a) ],
and the log-density of a includes the change of variables of tanh (Appendix C, eq. 21):
    log π(a|s) = Σ_j [ −½ ε_j² − log σ_j − ½ log 2π − log(1 − tanh² u_j) ],
    log(1 − tanh² u) = 2 (log 2 − u − softplus(−2u))            (stable for large |u|),
with the ε that was drawn (recomputing (u − μ)/σ loses all precision as log σ → −20).

Temperature. α = exp(log α) is learned by dual descent on (eq. 17, 18)
    J(α) = E_{a~π}[ −α (log π(a|s) + H̄) ],   H̄ = −dim(A) by default,
which raises α when the policy's entropy −E[log π] falls below H̄ and lowers it when above. The
gradient is taken in log α of α·(…), as eq. 18 and the authors' current softlearning code have it;
SB3 and softlearning's first version use log α·(…): the same sign, and Adam's steps differ only
while α changes fast.

Evaluation uses the deterministic policy a = scale·tanh(μ_φ(s)) + bias on a separate env.

Departures from the paper, and why:
- `--learning-starts 5000` uniform-random actions before the first update (CleanRL's choice; the
  paper lists none). Early diverse data keeps the critics from overfitting a few trajectories.
  RL Zoo's 10000 measured no better at 100k steps (5 seeds on HalfCheetah-v4 and Hopper-v4:
  P(10000 > 5000) = 0.60 and 0.44, `benchmarks/returns.py --grid warmup`), so 5000 stays.
- log π, the entropy and H̄ are measured on the [−1, 1] action that the critics see, as the
  authors' code and SB3 do; the env's own action units never enter the losses, so H̄ = −dim(A)
  is the paper's target on every env (in env units Humanoid's ±0.4 box would shift it by 15.6).
- log σ is clamped to [−20, 2] (the authors' reference code).
- The two critics are one batched module (stacked weights, `torch.baddbmm`): the same math as two
  separate MLPs, in fewer, larger matrix products.
- With `--num-envs N` every loop iteration takes N env steps and does N gradient updates, keeping the
  paper's one gradient step per env step.
- `--compile` (off by default): torch.compile turns the whole update (losses, gradients by a
  traced torch.autograd.grad, torch's functional Adam on the optimizers' own state, Polyak) into
  one graph with no breaks, and compiles the acting policy; the first update compiles for ≈ 18 s
  (≈ 3 s from inductor's on-disk cache). On a 2-core AVX2 CPU (Walker2d-v4, 2 threads) it gives
  143 instead of 111 SPS after the warm-up (SB3 SAC: 70); on CUDA it also removes most kernel
  launches (not measured yet).
- `--cudagraphs` (CUDA only; implies --compile): torch.compile's CUDA-graph mode replays the
  compiled update and the acting as CUDA graphs, with Adam "capturable" (its step count on the
  GPU) and the tensors the update changes in place marked static; on a CPU it prints a notice and
  runs as --compile. Written and checked for its plumbing on CPU, not yet run on a GPU.
- `--bf16` (off by default): the hidden layers' matrix products run in bfloat16 autocast, while
  weights, optimizer state, output layers, log-probs and losses stay float32. On a CPU with
  AVX-512 BF16 an update gets ≈ 1.5× faster; README reports its learning beside float32's. Where
  bfloat16 is emulated (AVX2-only CPUs) it is ≈ 17× slower: leave it off there.

Usage:  python sac_v2.py --env-id Walker2d-v4      (see --help for every flag)
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

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro
from torch.optim.adam import adam as functional_adam

ALGORITHM = "sac_v2"


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
    """target smoothing coefficient: Q̄ ← (1 − τ) Q̄ + τ Q"""
    batch_size: int = 256
    """minibatch size of each gradient update"""
    learning_starts: int = 5_000
    """env steps of uniform-random actions before the first gradient update"""
    policy_lr: float = 3e-4
    """Adam learning rate of the actor"""
    q_lr: float = 3e-4
    """Adam learning rate of the critics and of log α"""
    hidden_dim: int = 256
    """width of the two hidden layers of every network"""
    autotune: bool = True
    """learn the temperature α to keep the policy entropy near --target-entropy"""
    alpha: float = 0.2
    """the fixed temperature α, used with --no-autotune (autotune always starts from α = 1)"""
    target_entropy: float | None = None
    """entropy target H̄ for autotune, in nats of the [−1, 1] action; None means −dim(A)"""
    bf16: bool = False
    """run the update's hidden layers in bfloat16 autocast (float32 weights, optimizer state, output
    layers and losses); pays on CPUs with AVX-512 BF16/AMX and on recent GPUs, and is far slower
    where bfloat16 is emulated (an AVX2-only CPU: 5 instead of 84 SPS on Walker2d)"""

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
    """path of a checkpoint.pt to continue (its run keeps its settings; a typed --total-timesteps extends it)"""
    eval_checkpoint: str | None = None
    """path of a model.pt or checkpoint.pt: evaluate that policy, write summary.json, train nothing"""
    compile: bool = False
    """torch.compile the whole update into one graph, and the acting (2-core CPU: 1.3x SPS; CUDA: unmeasured)"""
    cudagraphs: bool = False
    """CUDA only, implies --compile: replay the compiled update and acting as CUDA graphs (on CPU: a notice, then --compile)"""


def check_args(args: Args) -> None:
    for name in ["policy_lr", "q_lr", "hidden_dim"]:
        if not getattr(args, name) > 0:
            raise UsageError(
                f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}"
            )
    if not (math.isfinite(args.alpha) and args.alpha >= 0):
        raise UsageError(f"--alpha must be a finite number >= 0, got {args.alpha}")
    if args.target_entropy is not None and not math.isfinite(args.target_entropy):
        raise UsageError(f"--target-entropy must be finite, got {args.target_entropy}")


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


def soft_q_target(reward, terminated, next_q_min, next_log_prob, gamma: float, alpha):
    """y = r + γ(1 − terminated)(min_i Q̄_i(s′, a′) − α log π(a′|s′)): the soft Bellman backup."""
    return reward + gamma * (1.0 - terminated) * (next_q_min - alpha * next_log_prob)


def temperature_loss(log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float):
    """J(α) = E[−α (log π + H̄)]: its gradient raises α when the entropy −log π is below H̄."""
    return -(log_alpha.exp() * (log_prob.detach() + target_entropy)).mean()


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """θ̄ ← (1 − τ) θ̄ + τ θ, in place, for every parameter at once."""
    torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), tau)


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
    """Q_1 and Q_2 as one module: layer weights are stacked along a leading "critic" dimension.

    Q_i(s, a) = W3_i relu(W2_i relu(W1_i [s; a] + b1_i) + b2_i) + b3_i,  i = 1, 2, computed for both
    critics with one batched matrix product per hidden layer (the one-unit output layer is a
    multiply-and-sum); initialised as nn.Linear is,
    U(−1/√fan_in, 1/√fan_in). Returns [2, batch].
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

    def forward(self, obs, action, detach_params: bool = False) -> torch.Tensor:
        """detach_params=True evaluates Q as a fixed function: the actor loss uses it so that
        gradients flow into the action but never into the critics' weights."""
        hidden = torch.cat([obs, action], dim=-1).expand(self.num_critics, -1, -1)
        weights, biases = list(self.weights), list(self.biases)
        if detach_params:
            weights, biases = [w.detach() for w in weights], [b.detach() for b in biases]
        for weight, bias in zip(weights[:-1], biases[:-1], strict=True):
            hidden = torch.relu(torch.baddbmm(bias, hidden, weight))
        # The output layer (one unit) as multiply-and-sum: a batched matrix product with a single
        # output column runs far below the machine's speed (on CPU ~0.2 ms for 0.3 MFLOP). It
        # always runs in float32: under --bf16, a Q value of a few hundred would otherwise carry
        # bf16's 3 significant digits into the TD error.
        with torch.autocast(hidden.device.type, enabled=False):
            q_values = (hidden.float() * weights[-1].transpose(1, 2)).sum(dim=-1)
            return q_values + biases[-1].squeeze(-1)


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
        features = self.trunk(obs)
        with torch.autocast(obs.device.type, enabled=False):  # a float32 head, as in the critics
            mean, log_std = self.mean_and_log_std(features.float()).chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised a = tanh(μ + σ ε), ε ~ N(0, I); returns (a, log π(a|s))."""
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
def critic_loss(qf, qf_target, actor, batch, alpha, gamma: float):
    """J_Q = Σ_i E[½(Q_i(s,a) − y)²], y from the target critics and a fresh a′ ~ π(·|s′)."""
    obs, action, reward, terminated, next_obs = batch
    with torch.no_grad():
        next_action, next_log_prob = actor.sample(next_obs)
        next_q_min = qf_target(next_obs, next_action).min(dim=0).values
        target = soft_q_target(
            reward.squeeze(1), terminated.squeeze(1), next_q_min, next_log_prob, gamma, alpha
        )
    q_values = qf(obs, action)
    return 0.5 * (q_values - target).pow(2).mean(dim=1).sum(), q_values.detach()


def actor_and_temperature_loss(actor, qf, log_alpha, obs, target_entropy: float):
    """J_π = E[α log π(ã|s) − min_i Q_i(s, ã)] and J(α), sharing one actor forward pass.

    The online critics judge ã as a fixed function (detach_params): the gradient reaches φ through
    ã, never the critics' weights."""
    action, log_prob = actor.sample(obs)
    q_min = qf(obs, action, detach_params=True).min(dim=0).values
    actor_loss = (log_alpha.detach().exp() * log_prob - q_min).mean()
    return actor_loss, temperature_loss(log_alpha, log_prob, target_entropy), log_prob.detach()


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


def adam_state_tensors(*optimizers: torch.optim.Adam | None) -> list[torch.Tensor]:
    """Every tensor of the optimizers' state (step counts, moments); None optimizers have none."""
    return [
        tensor
        for optimizer in optimizers
        if optimizer is not None
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
    batch, actor, qf, qf_target, log_alpha, q_optimizer, actor_optimizer, alpha_optimizer,
    gamma: float, tau: float, target_entropy: float, bf16: bool = False,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """One gradient step of the critics, then the actor and α (alpha_optimizer None: α fixed),
    then the targets. Returns detached tensors, so the update never waits for the device."""
    alpha = log_alpha.detach().exp()
    with torch.autocast(alpha.device.type, dtype=torch.bfloat16, enabled=bf16):
        qf_loss, q_values = critic_loss(qf, qf_target, actor, batch, alpha, gamma)
    adam_step(qf_loss, q_optimizer)

    with torch.autocast(alpha.device.type, dtype=torch.bfloat16, enabled=bf16):
        actor_loss, alpha_loss, log_prob = actor_and_temperature_loss(
            actor, qf, log_alpha, batch[0], target_entropy
        )
    # J_π reaches only φ and J(α) only log α, so the gradient of their sum gives each optimizer
    # exactly its own loss's gradient.
    if alpha_optimizer is None:
        adam_step(actor_loss, actor_optimizer)
    else:
        adam_step(actor_loss + alpha_loss, actor_optimizer, alpha_optimizer)

    polyak_update(qf_target, qf, tau)
    return {
        "losses/qf_loss": qf_loss.detach(),
        "losses/qf1_values": q_values[0].mean(),
        "losses/qf2_values": q_values[1].mean(),
        "losses/actor_loss": actor_loss.detach(),
        "losses/alpha_loss": alpha_loss.detach(),
        "losses/alpha": alpha,
        "charts/policy_entropy": -log_prob.mean(),
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
    qf_target = TwinSoftQNetwork(obs_dim, act_dim, args.hidden_dim).to(device)
    qf_target.load_state_dict(qf.state_dict())
    qf_target.requires_grad_(False)  # targets move only by Polyak averaging
    compiled = args.compile or args.cudagraphs
    cuda_graphs = args.cudagraphs and device.type == "cuda"
    # Adam in one fused kernel per optimizer; under --compile in its foreach form, which inductor
    # fuses into the update's own kernels (the fused kernel cannot be traced); in a CUDA graph
    # "capturable": its step counter lives on the GPU, where a replayed graph can advance it
    adam_form = {"fused": not compiled, "foreach": compiled, "capturable": cuda_graphs}
    q_optimizer = torch.optim.Adam(qf.parameters(), lr=args.q_lr, **adam_form)
    actor_optimizer = torch.optim.Adam(actor.parameters(), lr=args.policy_lr, **adam_form)
    target_entropy = float(-act_dim if args.target_entropy is None else args.target_entropy)
    # autotune starts from α = 1 (as SB3 and CleanRL do); α = 0 gives log α = −inf, i.e. exactly 0
    initial_log_alpha = 0.0 if args.autotune else math.log(args.alpha) if args.alpha else -math.inf
    log_alpha = torch.tensor(initial_log_alpha, device=device, requires_grad=args.autotune)
    alpha_optimizer = None
    if args.autotune:
        alpha_optimizer = torch.optim.Adam([log_alpha], lr=args.q_lr, capturable=cuda_graphs)
    buffer = ReplayBuffer(args.buffer_size, obs_dim, act_dim, device)
    train_step, sample_action = update, actor.sample
    if compiled:  # the whole update as one graph (autograd.grad traced too), and the acting
        if hasattr(torch._dynamo.config, "trace_autograd_ops"):  # (older torch: a graph break)
            torch._dynamo.config.trace_autograd_ops = True
        # on CPU the kernels are called from C++, not Python (less overhead per call); not on
        # CUDA: untried there, and CUDA graphs do not support it
        torch._inductor.config.cpp_wrapper = device.type == "cpu"
        if args.cudagraphs and not cuda_graphs:
            print("notice: --cudagraphs needs CUDA; running with --compile alone", flush=True)
        mode = "reduce-overhead" if cuda_graphs else None  # torch.compile's CUDA-graph mode
        train_step = torch.compile(update, mode=mode)
        sample_action = torch.compile(actor.sample, mode=mode)

    training = {"q_optimizer": q_optimizer, "actor_optimizer": actor_optimizer, "buffer": buffer}
    obs = run.start(
        # log α is saved when it is learned; a fixed α (possibly 0: log α = −inf) comes from --alpha
        model={"actor": actor, "qf": qf, "qf_target": qf_target}
        | ({"log_alpha": log_alpha} if args.autotune else {}),
        training=training | ({"alpha_optimizer": alpha_optimizer} if args.autotune else {}),
        policy=deterministic_policy(actor),
        report=lambda: {
            "alpha": log_alpha.exp().item(),
            "target_entropy": target_entropy if args.autotune else None,
        },
    )
    # this run's Adam form and state, over what --resume loaded (before any compiled update runs)
    init_adam_state(q_optimizer, **adam_form)
    init_adam_state(actor_optimizer, **adam_form)
    if alpha_optimizer is not None:
        init_adam_state(alpha_optimizer, capturable=cuda_graphs)
    if cuda_graphs:  # a replayed graph works on fixed addresses: the tensors the update changes in
        # place (log α, the optimizers' state as run.start resumed it) are marked, never copied in
        state = adam_state_tensors(q_optimizer, actor_optimizer, alpha_optimizer)
        for tensor in [log_alpha, *state]:
            torch._dynamo.mark_static_address(tensor)
    while run.running():
        if cuda_graphs:  # the last iteration's graph outputs are used up: their memory is free
            torch.compiler.cudagraph_mark_step_begin()
        # act: uniform-random actions during warm-up, then samples of the stochastic policy
        if run.global_step < args.learning_starts:
            unit_action = torch.rand(args.num_envs, act_dim, device=device) * 2.0 - 1.0
        else:
            with torch.inference_mode():
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
                    buffer.sample(args.batch_size), actor, qf, qf_target, log_alpha,
                    q_optimizer, actor_optimizer, alpha_optimizer,
                    args.gamma, args.tau, target_entropy, args.bf16,
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
