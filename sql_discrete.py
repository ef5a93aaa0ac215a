"""Soft Q-learning (SQL) for discrete actions: Q-learning on the maximum-entropy objective.

Objective (Haarnoja et al. 2017, arXiv 1702.08165, eq. 2; Schulman et al. 2017, arXiv 1704.06440):
    J(π) = E_π[ Σ_t γ^t ( r_t + α·H(π(·|s_t)) ) ],   α > 0 the temperature.

Its optimum satisfies the soft Bellman equation (1702.08165, Theorems 1-2, eq. 4-7). With
discrete actions every quantity is an exact sum over the |A| actions, so no sampler is needed:
    V(s)   = α·log Σ_a exp(Q(s,a)/α)                     soft value, a "soft max" of Q      (1)
    π(a|s) = exp((Q(s,a) − V(s))/α) = softmax(Q(s,·)/α)_a     Boltzmann policy             (2)
    Q(s,a) = r(s,a) + γ·E_{s′}[V(s′)]                     soft Bellman backup               (3)
Equivalently V(s) = E_π[Q(s,a) − α·log π(a|s)]. Limits of (1): α → 0 gives max_a Q (ordinary
Q-learning, greedy π); α → ∞ gives mean_a Q + α·log|A| (uniform π).

Learning (DQN-style; 1702.08165 Algorithm 1 without its sampling network): online network Q_θ,
target network Q̄ (every `--target-network-frequency` updates θ̄ ← τθ + (1−τ)θ̄: Polyak
averaging, or a hard copy with `--tau 1`), replay buffer D, and the regression
    y    = r + γ·(1 − terminated)·V̄(s′)                                                     (4)
    L(θ) = E_D[ ℓ(Q_θ(s,a) − y) ],   ℓ = Huber (default) or squared error                  (5)
with the plain soft value V̄(s′) = α·logsumexp(Q̄(s′,·)/α), or with `--double-soft-q` the soft
analogue of double DQN: the online network picks the distribution, the target network scores it,
    π₁ = softmax(Q_θ(s′,·)/α)
    V̄(s′) = E_{a∼π₁}[Q̄(s′,a) − α·log π₁(a|s′)] = α·log Z₁(s′) + E_{π₁}[Q̄(s′,a) − Q_θ(s′,a)]   (6)
(Z₁ = Σ_a exp(Q_θ(s′,a)/α)), which is (1) when Q_θ = Q̄ and tends to double DQN's
Q̄(s′, argmax_a Q_θ(s′,a)) as α → 0. Only `terminated` stops the bootstrap in (4): a time-limit
truncation is not an absorbing state, so it bootstraps from the true last observation.

Temperature (`--autotune`, as in SAC v2, arXiv 1812.05905 eq. 18): α is the dual variable of the
constraint E_s[H(π(·|s))] ≥ H̄ with H̄ = target_entropy_scale·log|A|; descend
    J(log α) = log α·(E_{s∼D}[H(π(·|s))] − H̄)      (entropy held constant)                 (7)
so α shrinks while the policy is more random than the target and grows while it is greedier.
H(softmax(q/α)) increases with α, so this controller has a single fixed point; descending on log α
makes its steps multiplicative, so one learning rate serves Q scales of 1 or of 100.
Without `--autotune`, α = `--alpha` stays fixed.

Evaluation: greedy, a = argmax_a Q(s,a), on a separate env seeded seed + 100_000 + k for episode
k. `--eval-stochastic` samples (2) instead, from torch's RNG reseeded per episode inside
fork_rng: reproducible, and the training run's random stream never moves.

Defaults (tuned to reach CartPole-v1 greedy return 500 and Acrobot-v1 ≥ −100 in 50k env steps)
and departures from the papers:
- Huber loss (δ = 1), not 1702.08165's squared error (`--loss mse`): early TD errors are large
  (CartPole values climb to ~100), and Huber bounds their gradient as DQN's error clipping does.
- α autotuned to H̄ = 0.3·log|A| rather than hand-set (the paper's reward scale), so it adapts to
  each env's reward scale. The entropy bonus also steers the agent toward states where acting
  loosely is safe; with H̄ = 0.1·log|A| the final greedy CartPole policy drifted off (~250 steps)
  in some of our seeds. log α learns at 3e-4: with 1e-3, α tripled within 5k steps in one double
  soft-Q seed and the values ran away above their bound r_max/(1−γ) = 100.
- Polyak target updates (τ = 0.005 after every update): hard copies every 500 updates learned
  CartPole markedly slower in our runs.
- The learning rate decays linearly to 0 at `--total-timesteps` (`--no-anneal-lr` keeps it): a
  Q-learner's greedy CartPole policy swings between 500 and ~250 from one stretch of updates to
  the next, and the decay settles the final network. The schedule follows `--total-timesteps`,
  so resume with the same value to reproduce an uninterrupted run.
- No ε-greedy: the Boltzmann policy (2) alone explores, after `--learning-starts` random steps.
- Every `--train-frequency` vector steps, `--gradient-steps` updates per env: the defaults make
  one gradient update per env step for any `--num-envs`.
- `--compile` (off by default): torch.compile turns the whole update (losses, gradients by a traced
  torch.autograd.grad, torch's functional Adam on the optimizers' own state, Polyak) into one
  graph with no breaks; the annealed rate is then a tensor filled in place before each round
  (`set_learning_rate`), so it is an input of the graph, not a constant that recompiles it. On a
  2-core AVX2 CPU (CartPole-v1, 2 threads) it gives 645 instead of 475 SPS after the warm-up.
- `--cudagraphs` (CUDA only; implies --compile): torch.compile's CUDA-graph mode replays the
  compiled update as a CUDA graph, with Adam "capturable" (its step count and the rate on the
  GPU) and the tensors the update changes in place marked static; on a CPU it prints a notice and
  runs as --compile. Written and checked for its plumbing on CPU, not yet run on a GPU.

Usage: python sql_discrete.py --env-id CartPole-v1 --total-timesteps 50000 [--double-soft-q]
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

ALGORITHM = "sql_discrete"


@dataclass
class Args:
    env_id: str = "CartPole-v1"
    """the gymnasium environment id (discrete actions, flat Box observations)"""
    total_timesteps: int = 50_000
    """total environment steps, summed over all envs"""
    num_envs: int = 1
    """number of parallel environments (gymnasium SyncVectorEnv)"""
    buffer_size: int = 50_000
    """replay buffer capacity, in transitions"""
    gamma: float = 0.99
    """discount factor γ"""
    tau: float = 0.005
    """target update rate: 1 = hard copy, < 1 = Polyak averaging θ̄ ← τθ + (1−τ)θ̄"""
    batch_size: int = 128
    """minibatch size of each gradient update"""
    learning_starts: int = 1_000
    """env steps of uniformly random actions before the first gradient update"""
    target_network_frequency: int = 1
    """gradient updates between target network updates"""
    learning_rate: float = 1e-3
    """Adam learning rate of the Q network"""
    anneal_lr: bool = True
    """decay the Q learning rate linearly to 0 at total_timesteps"""
    train_frequency: int = 1
    """vector-env steps between rounds of gradient updates"""
    gradient_steps: int = 1
    """gradient updates per env in each round: gradient_steps / train_frequency per env step"""
    hidden_sizes: tuple[int, ...] = (256, 256)
    """hidden layer widths of the Q network MLP"""
    loss: Literal["huber", "mse"] = "huber"
    """the TD regression loss ℓ of (5)"""
    double_soft_q: bool = False
    """bootstrap from the double soft-Q value (6)"""
    alpha: float = 1.0
    """the temperature α (its initial value with --autotune)"""
    autotune: bool = True
    """tune α so the mean policy entropy tracks target_entropy_scale·log|A| (7)"""
    target_entropy_scale: float = 0.3
    """the target entropy as a fraction of the maximum entropy log|A|"""
    alpha_lr: float = 3e-4
    """Adam learning rate of log α"""

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
    """record the first episode of every evaluation to runs/<run>/videos"""
    eval_frequency: int = 10_000
    """env steps between evaluations of the greedy policy (0 = only at the end)"""
    eval_episodes: int = 10
    """episodes per evaluation"""
    log_frequency: int = 100
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
    """torch.compile the whole update into one graph (2-core CPU: 1.36x SPS; CUDA: unmeasured)"""
    cudagraphs: bool = False
    """CUDA only, implies --compile: replay the compiled update as a CUDA graph (on CPU: a notice, then --compile)"""
    eval_stochastic: bool = False
    """evaluate by sampling the Boltzmann policy (2) instead of acting greedily"""


def check_args(args: Args) -> None:
    positive = ["learning_rate", "target_network_frequency", "train_frequency", "gradient_steps"]
    for name in [*positive, "alpha", "alpha_lr"]:
        value = getattr(args, name)
        if not (value > 0 and math.isfinite(value)):
            raise UsageError(f"--{name.replace('_', '-')} must be positive and finite, got {value}")
    if not 0.0 < args.target_entropy_scale < 1.0:
        raise UsageError(
            f"--target-entropy-scale must be in (0, 1), got {args.target_entropy_scale}"
        )
    if not args.hidden_sizes or min(args.hidden_sizes) <= 0:
        raise UsageError(f"--hidden-sizes must be positive widths, got {args.hidden_sizes}")


# ---- Soft math (pure functions; tests check them against independent oracles) ---------------
def soft_value(q: torch.Tensor, alpha) -> torch.Tensor:
    """V = α·logsumexp(q/α) over the last (action) dimension, eq. (1); stable for any q/α."""
    return alpha * torch.logsumexp(q / alpha, dim=-1)


def boltzmann_log_probs(q: torch.Tensor, alpha) -> torch.Tensor:
    """log π(a|s) = log softmax(q/α)_a, eq. (2)."""
    return torch.log_softmax(q / alpha, dim=-1)


def double_soft_value(q_target: torch.Tensor, q_online: torch.Tensor, alpha) -> torch.Tensor:
    """V = E_{a∼π₁}[Q̄(s,a) − α·log π₁(a|s)] with π₁ = softmax(q_online/α), eq. (6)."""
    log_pi = boltzmann_log_probs(q_online, alpha)
    return (log_pi.exp() * (q_target - alpha * log_pi)).sum(-1)


def entropy(log_probs: torch.Tensor) -> torch.Tensor:
    """H(π) = −Σ_a π(a)·log π(a) over the last dimension."""
    return -(log_probs.exp() * log_probs).sum(-1)


def soft_td_target(rewards, terminated, next_value, gamma: float) -> torch.Tensor:
    """y = r + γ·(1 − terminated)·V̄(s′), eq. (4): a truncated transition still bootstraps."""
    return rewards + gamma * (1.0 - terminated) * next_value


def temperature_loss(log_alpha, mean_entropy, target_entropy: float) -> torch.Tensor:
    """J(log α) = log α·(H − H̄), eq. (7): its gradient lowers α while H > H̄."""
    return log_alpha * (mean_entropy.detach() - target_entropy)


def boltzmann_sample(q: torch.Tensor, alpha) -> torch.Tensor:
    """One action per row of q, a ∼ softmax(q/α), eq. (2)."""
    try:
        return torch.multinomial(torch.softmax(q / alpha, dim=-1), 1).squeeze(1)
    except RuntimeError:  # multinomial rejects NaN probabilities: the weights diverged
        raise TrainingDiverged("non-finite Q-values in the Boltzmann policy") from None


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """θ̄ ← (1 − τ) θ̄ + τ θ, in place, for every parameter at once (τ = 1: an exact copy)."""
    torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), tau)


# ---- Environment check, network, replay buffer ----------------------------------------------
def check_env_spaces(env: gym.Env, env_id: str) -> None:
    """SQL here needs Discrete actions numbered from 0 and a flat Box observation."""
    obs_space, act_space = env.observation_space, env.action_space
    if not isinstance(act_space, gym.spaces.Discrete) or act_space.start != 0:
        raise UsageError(
            f"{env_id} has action space {act_space}, but sql_discrete needs a Discrete one; "
            "for continuous actions use sql_continuous.py or sac_v2.py"
        )
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        raise UsageError(
            f"{env_id} has observation space {obs_space}, but the MLP needs a flat Box; "
            "flatten or one-hot encode the observations, or choose a vector-observation env"
        )


class QNetwork(nn.Module):
    """MLP s ↦ (Q(s,a))_a for all |A| actions at once."""

    def __init__(self, obs_dim: int, n_actions: int, hidden_sizes: tuple[int, ...]):
        super().__init__()
        layers, width = [], obs_dim
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.net = nn.Sequential(*layers, nn.Linear(width, n_actions))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


class ReplayBuffer:
    """A ring buffer of preallocated tensors on the training device, sampled uniformly."""

    FIELDS = ("obs", "next_obs", "actions", "rewards", "terminated")

    def __init__(self, capacity: int, obs_dim: int, device: torch.device):
        self.capacity, self.ptr, self.size = capacity, 0, 0
        self.obs = torch.zeros(capacity, obs_dim, device=device)
        self.next_obs = torch.zeros(capacity, obs_dim, device=device)
        self.actions = torch.zeros(capacity, dtype=torch.long, device=device)
        self.rewards = torch.zeros(capacity, device=device)
        self.terminated = torch.zeros(capacity, device=device)

    def add(self, **rows) -> None:
        """Add one transition per env: `FIELDS` as keywords, arrays or tensors with a leading
        num_envs dimension (converted to each field's dtype and device)."""
        n = len(rows["obs"])
        idx = torch.arange(self.ptr, self.ptr + n, device=self.obs.device) % self.capacity
        for name, values in rows.items():
            field = getattr(self, name)
            field[idx] = torch.as_tensor(values, dtype=field.dtype, device=field.device)
        self.ptr, self.size = (self.ptr + n) % self.capacity, min(self.size + n, self.capacity)

    def sample(self, batch_size: int) -> list[torch.Tensor]:
        """(obs, next_obs, actions, rewards, terminated) of one minibatch, with replacement."""
        idx = torch.randint(0, self.size, (batch_size,), device=self.obs.device)
        return [getattr(self, name)[idx] for name in self.FIELDS]

    def state_dict(self) -> dict:
        # Copies of the filled rows: torch.save of a slice would write the whole buffer's storage.
        data = {name: getattr(self, name)[: self.size].to("cpu", copy=True) for name in self.FIELDS}
        return data | {"ptr": self.ptr, "size": self.size}

    def load_state_dict(self, state: dict) -> None:
        self.ptr, self.size = state["ptr"], state["size"]
        for name in self.FIELDS:
            getattr(self, name)[: self.size] = state[name].to(self.obs.device)


# ---- One update: the Q regression (4)-(6), the temperature (7), the target network ----------
def soft_q_losses(batch, q_network, target_network, log_alpha, gamma, target_entropy,
                  double_soft_q: bool = False, loss: str = "huber"):  # fmt: skip
    """The Q loss (5) with the soft target (4), and the temperature loss (7), on one batch; also
    the policy entropy and the mean bootstrapped soft value V̄(s′) as diagnostics."""
    obs, next_obs, actions, rewards, terminated = batch
    alpha = log_alpha.detach().exp()
    with torch.no_grad():
        q_next_target = target_network(next_obs)
        if double_soft_q:
            next_value = double_soft_value(q_next_target, q_network(next_obs), alpha)  # (6)
        else:
            next_value = soft_value(q_next_target, alpha)  # (1) on the target network
        target = soft_td_target(rewards, terminated, next_value, gamma)  # (4)
    q_values = q_network(obs)
    td_loss = F.smooth_l1_loss if loss == "huber" else F.mse_loss
    qf_loss = td_loss(q_values.gather(1, actions[:, None]).squeeze(1), target)  # (5)
    # The mean entropy of the online network's Boltzmann policy (2) on replayed states drives α (7).
    policy_entropy = entropy(boltzmann_log_probs(q_values.detach(), alpha)).mean()
    alpha_loss = temperature_loss(log_alpha, policy_entropy, target_entropy)
    return qf_loss, alpha_loss, policy_entropy, next_value.mean()


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


def adam_state_tensors(*optimizers: torch.optim.Adam | None) -> list[torch.Tensor]:
    """Every tensor of the optimizers' state (step counts, moments); None optimizers have none."""
    return [
        tensor
        for optimizer in optimizers
        if optimizer is not None
        for state in optimizer.state.values()
        for tensor in state.values()
    ]


def set_learning_rate(optimizer: torch.optim.Optimizer, rate: float) -> None:
    """Set the (annealed) rate before an update. Under --compile the rate is a 0-dim tensor,
    filled in place: an input of the compiled update, not a constant that would recompile it."""
    group = optimizer.param_groups[0]
    if isinstance(group["lr"], torch.Tensor):
        group["lr"].fill_(rate)
    else:
        group["lr"] = rate


def update(
    batch, q_network, target_network, log_alpha, q_optimizer, alpha_optimizer,
    gamma: float, tau: float, target_entropy: float,
    double_soft_q: bool = False, loss: str = "huber", update_target: bool = True,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """One gradient step of Q_θ on (5) at q_optimizer's rate and, if alpha_optimizer, of log α on
    (7); then, if update_target, θ̄ ← τθ + (1−τ)θ̄. Returns detached tensors: reading them is the
    caller's choice, so the update itself never waits for the device."""
    alpha = log_alpha.detach().exp()  # the temperature these losses use
    qf_loss, alpha_loss, policy_entropy, next_value = soft_q_losses(
        batch, q_network, target_network, log_alpha, gamma, target_entropy, double_soft_q, loss
    )
    if alpha_optimizer is None:
        adam_step(qf_loss, q_optimizer)
    else:
        # Each loss sees the other's inputs detached, so the gradient of their sum gives θ
        # exactly ∇L(θ) and log α exactly ∇J(log α).
        adam_step(qf_loss + alpha_loss, q_optimizer, alpha_optimizer)
    if update_target:
        polyak_update(target_network, q_network, tau)
    return {
        "losses/qf_loss": qf_loss.detach(),
        "losses/alpha": alpha,
        "losses/alpha_loss": alpha_loss.detach(),
        "charts/policy_entropy": policy_entropy,
        "losses/soft_value": next_value,
    }


# ---- Evaluation policy and the training loop ------------------------------------------------
def evaluation_policy(q_network: QNetwork, log_alpha: torch.Tensor, stochastic: bool = False):
    """Observations → env actions: argmax_a Q(s,a), or with `stochastic` a sample of (2)."""

    def act(obs: torch.Tensor) -> np.ndarray:
        q = q_network(obs)
        return (boltzmann_sample(q, log_alpha.exp()) if stochastic else q.argmax(-1)).cpu().numpy()

    return act


def load_policy(saved: dict, args: Args, env: gym.Env, device: torch.device):
    """The saved Q network and α, evaluated as this command line asks (--eval-stochastic)."""
    obs_dim, n_actions = env.observation_space.shape[0], int(env.action_space.n)
    q_network = QNetwork(obs_dim, n_actions, tuple(saved["args"]["hidden_sizes"]))
    q_network.load_state_dict(saved["q_network"])
    log_alpha = saved["log_alpha"].to(device)
    return evaluation_policy(q_network.to(device), log_alpha, args.eval_stochastic)


def train(args: Args, run: Run) -> None:
    envs, device = run.envs, run.device
    obs_dim, n_actions = envs.single_observation_space.shape[0], int(envs.single_action_space.n)

    q_network = QNetwork(obs_dim, n_actions, args.hidden_sizes).to(device)
    target_network = QNetwork(obs_dim, n_actions, args.hidden_sizes).to(device)
    target_network.load_state_dict(q_network.state_dict())
    target_network.requires_grad_(False)  # Q̄ moves only towards θ, in polyak_update
    compiled = args.compile or args.cudagraphs
    cuda_graphs = args.cudagraphs and device.type == "cuda"
    # Adam in one fused kernel; under --compile its single-tensor form, which takes the annealed
    # rate as a tensor and which inductor fuses (the fused kernel cannot be traced); in a CUDA
    # graph "capturable": its step counter (and the rate) live on the GPU, where a graph reads them
    adam_form = {"fused": not compiled, "foreach": False, "capturable": cuda_graphs}
    learning_rate = args.learning_rate  # under --compile a tensor, filled by set_learning_rate
    if compiled:
        learning_rate = torch.tensor(learning_rate, device=device if cuda_graphs else "cpu")
    q_optimizer = torch.optim.Adam(q_network.parameters(), lr=learning_rate, **adam_form)
    log_alpha = torch.tensor(math.log(args.alpha), device=device, requires_grad=args.autotune)
    alpha_optimizer = None
    if args.autotune:
        alpha_optimizer = torch.optim.Adam([log_alpha], lr=args.alpha_lr, capturable=cuda_graphs)
    target_entropy = args.target_entropy_scale * math.log(n_actions)
    buffer = ReplayBuffer(args.buffer_size, obs_dim, device)
    train_step = update
    if compiled:  # the whole update as one graph (autograd.grad traced too)
        if hasattr(torch._dynamo.config, "trace_autograd_ops"):  # (older torch: a graph break)
            torch._dynamo.config.trace_autograd_ops = True
        # on CPU the kernels are called from C++, not Python (less overhead per call); not on
        # CUDA: untried there, and CUDA graphs do not support it
        torch._inductor.config.cpp_wrapper = device.type == "cpu"
        if args.cudagraphs and not cuda_graphs:
            print("notice: --cudagraphs needs CUDA; running with --compile alone", flush=True)
        mode = "reduce-overhead" if cuda_graphs else None  # torch.compile's CUDA-graph mode
        train_step = torch.compile(update, mode=mode)

    training = {"q_optimizer": q_optimizer, "buffer": buffer}
    obs = run.start(
        model={"q_network": q_network, "target_network": target_network, "log_alpha": log_alpha},
        training={**training, **({"alpha_optimizer": alpha_optimizer} if alpha_optimizer else {})},
        policy=evaluation_policy(q_network, log_alpha, args.eval_stochastic),
        report=lambda: {
            "alpha": log_alpha.exp().item(),
            "target_entropy": target_entropy if args.autotune else None,
            "double_soft_q": args.double_soft_q,
        },
    )
    # this run's Adam form and state, over what --resume loaded (before any compiled update runs)
    init_adam_state(q_optimizer, lr=learning_rate, **adam_form)  # the rate: a tensor if compiled
    if alpha_optimizer is not None:
        init_adam_state(alpha_optimizer, capturable=cuda_graphs)
    if cuda_graphs:  # a replayed graph works on fixed addresses: the tensors the update changes in
        # place (log α, the optimizers' state as run.start resumed it) are marked, never copied in
        for tensor in [log_alpha, *adam_state_tensors(q_optimizer, alpha_optimizer)]:
            torch._dynamo.mark_static_address(tensor)
    losses = {}
    while run.running():
        if cuda_graphs:  # the last iteration's graph outputs are used up: their memory is free
            torch.compiler.cudagraph_mark_step_begin()
        # act: uniform-random actions during warm-up, then the Boltzmann policy (2) explores
        if run.global_step < args.learning_starts:
            actions = torch.randint(n_actions, (args.num_envs,), device=device)
        else:
            with torch.inference_mode():
                q_values = q_network(torch.as_tensor(obs, dtype=torch.float32, device=device))
                actions = boltzmann_sample(q_values, log_alpha.exp())
        next_obs, rewards, terminated, truncated, infos = envs.step(actions.cpu().numpy())

        # store: an episode that ended stores its true last obs (final_obs), not the reset obs
        real_next_obs = next_obs.copy()
        for i in np.flatnonzero(terminated | truncated):
            real_next_obs[i] = infos["final_obs"][i]
        buffer.add(
            obs=obs, next_obs=real_next_obs, actions=actions, rewards=rewards, terminated=terminated
        )
        obs = next_obs
        run.record_step(rewards, terminated, truncated)

        # learn: every train_frequency vector steps, gradient_steps updates per env stepped
        vector_steps = run.global_step // args.num_envs
        if run.global_step > args.learning_starts and vector_steps % args.train_frequency == 0:
            learning_rate = args.learning_rate
            if args.anneal_lr:  # linear decay: a settled final network (see docstring)
                learning_rate *= 1.0 - (run.global_step - args.num_envs) / args.total_timesteps
            set_learning_rate(q_optimizer, learning_rate)
            for _ in range(args.gradient_steps * args.num_envs):
                run.gradient_updates += 1
                losses = train_step(
                    buffer.sample(args.batch_size), q_network, target_network, log_alpha,
                    q_optimizer, alpha_optimizer, args.gamma, args.tau,
                    target_entropy, args.double_soft_q, args.loss,
                    update_target=run.gradient_updates % args.target_network_frequency == 0,
                )  # fmt: skip
        if losses:  # the latest round's losses, also when this vector step had no round
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
