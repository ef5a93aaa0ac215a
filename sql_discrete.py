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

One update: a gradient step of Q_θ on (5), then of log α on (7), then the target network, each
step zero_grad(), backward(), step(), so the optimizers' own settings hold. The entropy in (7) is
that of the online network's policy (2) on the replayed states, before this update's Q step.
Evaluation: greedy, a = argmax_a Q(s,a), on a separate env; `--eval-stochastic` samples (2), from
torch's RNG reseeded per episode inside fork_rng (reproducible; the training stream never moves).

Departures from the papers, and why (README has the runs behind the defaults):
- Huber loss (δ = 1), not 1702.08165's squared error (`--loss mse`): early TD errors are large
  while the values climb towards r_max/(1−γ); Huber bounds their gradient, as DQN's clipping does.
- α autotuned to H̄ = 0.3·log|A| rather than hand-set, so it adapts to each env's reward scale; the
  entropy bonus also steers the agent toward states where acting loosely is safe (a smaller H̄ let
  the final greedy CartPole policy drift off). log α learns slowly (3e-4): faster, α could grow
  until the double soft-Q values ran away above their bound r_max/(1−γ).
- Polyak target updates (τ = 0.005 after every update): hard copies learned CartPole slower.
- The learning rate decays linearly to 0 at `--total-timesteps` (`--no-anneal-lr` keeps it): a
  Q-learner's greedy policy swings from one stretch of updates to the next, and the decay settles
  the final network. Update k takes the rate of the env step it stands for, learning_starts +
  k·train_frequency/gradient_steps (a LambdaLR stepped once per update, saved in checkpoints); a
  resumed run with another --total-timesteps follows the new schedule from there on.
- No ε-greedy: the Boltzmann policy (2) alone explores, after `--learning-starts` random steps.
- Every `--train-frequency` vector steps, `--gradient-steps` updates per env: the defaults make
  one gradient update per env step for any `--num-envs`.
- `--compile` torch.compiles the update and the acting (LeanRL's recipe); the annealed rate is a
  tensor that the scheduler fills in place, so its changes do not recompile the update.
  `--cudagraphs` (CUDA) replays them as CUDA graphs through torch.compile's "reduce-overhead"
  mode, with Adam capturable. Both are meant for GPUs; README has the measurements.

Usage: python sql_discrete.py --env-id CartPole-v1 --total-timesteps 50000 [--double-soft-q]
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
    machine do not fight over cores)"""
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
    """path of a checkpoint.pt to continue: every learned and counted state comes back, episodes in
    flight restart (the run keeps its settings; a typed --total-timesteps extends it)"""
    eval_checkpoint: str | None = None
    """path of a model.pt or checkpoint.pt: evaluate that policy on its env, write summary.json, train nothing"""
    compile: bool = False
    """torch.compile the update and the acting; for CUDA (on a small CPU it does not pay: see README)"""
    cudagraphs: bool = False
    """CUDA only, implies --compile: replay the compiled update and acting as CUDA graphs"""
    eval_stochastic: bool = False
    """evaluate by sampling the Boltzmann policy (2) instead of acting greedily"""


# The algorithm's own flag checks ({flag: (requirement, check)}); the harness adds the shared ones.
POSITIVE_FINITE = ("positive and finite", lambda v: 0 < v < math.inf)
FLAG_RULES = {
    **dict.fromkeys(["learning_rate", "alpha", "alpha_lr", "gradient_steps"], POSITIVE_FINITE),
    **dict.fromkeys(["target_network_frequency", "train_frequency"], POSITIVE_FINITE),
    "target_entropy_scale": ("in (0, 1)", lambda v: 0 < v < 1),
    "hidden_sizes": ("positive sizes", lambda v: len(v) > 0 and min(v) > 0),
}


# ---- Soft math (pure functions; tests check them against independent oracles)
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
    """J(log α) = log α·(H − H̄), eq. (7): its gradient lowers α while H > H̄. The entropy is
    detached, so this loss trains log α only, never the Q network."""
    return log_alpha * (mean_entropy.detach() - target_entropy)


def boltzmann_sample(q: torch.Tensor, alpha) -> torch.Tensor:
    """One action per row of q, a ∼ softmax(q/α), eq. (2)."""
    try:
        return torch.multinomial(torch.softmax(q / alpha, dim=-1), 1).squeeze(1)
    except RuntimeError:  # multinomial rejects NaN probabilities: the weights diverged
        raise TrainingDiverged("non-finite Q-values in the Boltzmann policy") from None


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """θ̄ ← (1 − τ) θ̄ + τ θ, in place, for every parameter (τ = 1: an exact copy)."""
    for target_param, param in zip(target.parameters(), online.parameters(), strict=True):
        target_param.lerp_(param, tau)


# ---- Environment check, network, replay buffer
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


# ---- The losses, the optimizers, and one update: Q regression (4)-(6), temperature (7), target
def soft_q_loss(batch, q_network, target_network, alpha, gamma, double_soft_q=False, loss="huber"):
    """The Q loss (5) with the soft target (4) on one batch; also the entropy of the online
    network's policy, which drives α (7), and the mean bootstrapped soft value V̄(s′)."""
    obs, next_obs, actions, rewards, terminated = batch
    with torch.no_grad():  # y is a constant of L(θ): its gradient reaches Q_θ(s, a) only
        q_next_target = target_network(next_obs)
        if double_soft_q:
            next_value = double_soft_value(q_next_target, q_network(next_obs), alpha)  # (6)
        else:
            next_value = soft_value(q_next_target, alpha)  # (1) on the target network, at s′
        target = soft_td_target(rewards, terminated, next_value, gamma)  # (4)
    q_values = q_network(obs)
    td_loss = F.smooth_l1_loss if loss == "huber" else F.mse_loss
    qf_loss = td_loss(q_values.gather(1, actions[:, None]).squeeze(1), target)  # (5)
    # The mean entropy of the online network's Boltzmann policy (2) on replayed states drives α (7).
    policy_entropy = entropy(boltzmann_log_probs(q_values.detach(), alpha)).mean()
    return qf_loss, policy_entropy, next_value.mean()


def make_optimizers(args: Args, q_network: QNetwork, log_alpha: torch.Tensor, capturable=False):
    """Adam for Q_θ with its annealed rate (a LambdaLR), and Adam for log α (None without
    --autotune). The rate is a tensor that the scheduler fills in place (LeanRL's recipe): an input
    of a compiled update, not a constant that recompiles it when it changes. capturable (CUDA
    graphs): Adam's step count, and the rate, live on the GPU, where a replayed graph reads them."""
    rate = torch.tensor(args.learning_rate, device=log_alpha.device if capturable else "cpu")
    q_optimizer = torch.optim.Adam(q_network.parameters(), lr=rate, capturable=capturable)

    def rate_factor(updates: int) -> float:  # see the docstring's departures
        env_step = args.learning_starts + updates * args.train_frequency / args.gradient_steps
        return max(0.0, 1.0 - env_step / args.total_timesteps) if args.anneal_lr else 1.0

    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(q_optimizer, rate_factor)
    alpha_optimizer = None
    if args.autotune:
        alpha_optimizer = torch.optim.Adam([log_alpha], lr=args.alpha_lr, capturable=capturable)
    return q_optimizer, lr_scheduler, alpha_optimizer


def update(
    batch, q_network, target_network, log_alpha, q_optimizer, alpha_optimizer,
    gamma: float, tau: float, target_entropy: float,
    double_soft_q: bool = False, loss: str = "huber", update_target: bool = True,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """One gradient step of Q_θ on (5) and, if alpha_optimizer, of log α on (7); then, if
    update_target, θ̄ ← τθ + (1−τ)θ̄. Returns detached tensors: it never waits for the device."""
    alpha = log_alpha.detach().exp()  # the temperature these losses use
    qf_loss, policy_entropy, next_value = soft_q_loss(
        batch, q_network, target_network, alpha, gamma, double_soft_q, loss
    )
    q_optimizer.zero_grad()
    qf_loss.backward()  # reaches θ only: the target y is detached, α enters as a constant
    q_optimizer.step()

    alpha_loss = temperature_loss(log_alpha, policy_entropy, target_entropy)
    if alpha_optimizer is not None:
        alpha_optimizer.zero_grad()
        alpha_loss.backward()  # reaches log α only: the entropy in (7) is detached from θ
        alpha_optimizer.step()

    if update_target:
        polyak_update(target_network, q_network, tau)
    return {
        "losses/qf_loss": qf_loss.detach(),
        "losses/alpha": alpha,
        "losses/alpha_loss": alpha_loss.detach(),
        "charts/policy_entropy": policy_entropy,
        "losses/soft_value": next_value,
    }


# ---- Evaluation policy and the training loop
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
    log_alpha = torch.tensor(math.log(args.alpha), device=device, requires_grad=args.autotune)
    q_optimizer, lr_scheduler, alpha_optimizer = make_optimizers(
        args, q_network, log_alpha, capturable=run.cuda_graphs
    )
    target_entropy = args.target_entropy_scale * math.log(n_actions)
    buffer = ReplayBuffer(args.buffer_size, obs_dim, device)
    train_step, acting_q_network = run.compiled(update), run.compiled(q_network)

    obs = run.start(
        model={"q_network": q_network, "target_network": target_network, "log_alpha": log_alpha},
        training={"q_optimizer": q_optimizer, "lr_scheduler": lr_scheduler, "buffer": buffer}
        | ({"alpha_optimizer": alpha_optimizer} if args.autotune else {}),
        policy=evaluation_policy(q_network, log_alpha, args.eval_stochastic),
        report=lambda: {
            "alpha": log_alpha.exp().item(),
            "target_entropy": target_entropy if args.autotune else None,
            "double_soft_q": args.double_soft_q,
        },
    )
    losses = {}
    while run.running():
        # act: uniform-random actions during warm-up, then the Boltzmann policy (2) explores
        if run.global_step < args.learning_starts:
            actions = torch.randint(n_actions, (args.num_envs,), device=device)
        else:
            with torch.no_grad():
                obs_tensor = torch.as_tensor(obs, dtype=torch.float32, device=device)
                actions = boltzmann_sample(acting_q_network(obs_tensor), log_alpha.exp())
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
            for _ in range(args.gradient_steps * args.num_envs):
                run.gradient_updates += 1
                losses = train_step(
                    buffer.sample(args.batch_size), q_network, target_network, log_alpha,
                    q_optimizer, alpha_optimizer, args.gamma, args.tau,
                    target_entropy, args.double_soft_q, args.loss,
                    update_target=run.gradient_updates % args.target_network_frequency == 0,
                )  # fmt: skip
                lr_scheduler.step()  # the next update's rate
        if losses:  # the latest round's losses, also when this vector step had no round
            run.log_losses(losses | {"charts/learning_rate": lr_scheduler.get_last_lr()[0]})
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
