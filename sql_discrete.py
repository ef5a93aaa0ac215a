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
target network Q̄ (a hard copy every `--target-network-frequency` updates, or with `--tau < 1`
Polyak averaging θ̄ ← τθ + (1−τ)θ̄ at that interval), replay buffer D, and the regression
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

Evaluation: greedy, a = argmax_a Q(s,a) (`--eval-stochastic` samples (2) instead), on a separate
env seeded seed + 100_000 + k for episode k.

Defaults (tuned to reach CartPole-v1 greedy return 500 and Acrobot-v1 ≥ −100 in 50k env steps)
and departures from the papers:
- Huber loss (δ = 1) rather than 1702.08165's squared error (`--loss mse`): early TD errors are
  large (CartPole values climb to ~100) and Huber bounds their gradient, as DQN's error clipping.
- Autotuned α with H̄ = 0.3·log|A| rather than a hand-set α (the paper's reward scale): α
  then adapts to each env's reward scale by itself. The entropy bonus also
  steers the agent toward states where acting loosely is safe; with H̄ = 0.1·log|A| the final
  greedy CartPole policy failed (drifting off, ~250 steps) in some of our seeds. log α moves
  with learning rate 3e-4: with 1e-3, α tripled within 5k steps in one double soft-Q seed and
  the values ran away above their bound r_max/(1−γ) = 100.
- Polyak target updates (τ = 0.005 after every update): hard copies every 500 updates learned
  CartPole markedly slower in our runs.
- The learning rate decays linearly to 0 at `--total-timesteps` (`--no-anneal-lr` keeps it fixed):
  the greedy policy of a Q-learner on CartPole swings between 500 and ~250 from one stretch of
  updates to the next, and the decay makes the final network a settled one. The schedule follows
  `--total-timesteps`, so resume with the same value to reproduce an uninterrupted run.
- No ε-greedy: exploration is the Boltzmann policy (2) alone, after `--learning-starts` uniformly
  random steps that fill the buffer.
- `--torch-threads N` caps torch's CPU threads (default: torch's choice, one per core). On a
  quiet 2-core machine two threads ran 1.4× faster than one; when several runs share the cores,
  give each one thread (OMP_NUM_THREADS=1 does the same), or they all stall.

Usage: python sql_discrete.py --env-id CartPole-v1 --total-timesteps 50000 [--double-soft-q]
"""

import json
import os
import random
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, replace
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment (part of the run directory name)"""
    seed: int = 1
    """seed of python, numpy, torch and the environments"""
    torch_deterministic: bool = True
    """if toggled, sets `torch.backends.cudnn.deterministic=True`"""
    cuda: bool = True
    """if toggled, use CUDA when it is available"""
    track: bool = False
    """if toggled, also log to Weights and Biases"""
    wandb_project_name: str = "softrl"
    """the wandb project name"""
    wandb_entity: str | None = None
    """the wandb entity (team)"""
    capture_video: bool = False
    """if toggled, record the first episode of every evaluation to `runs/<run>/videos`"""

    env_id: str = "CartPole-v1"
    """the gymnasium environment id (discrete actions, flat Box observations)"""
    total_timesteps: int = 50_000
    """total environment steps, summed over all envs"""
    num_envs: int = 1
    """the number of parallel environments"""
    buffer_size: int = 50_000
    """the replay buffer capacity in transitions"""
    gamma: float = 0.99
    """the discount factor γ"""
    tau: float = 0.005
    """target update rate: 1 = hard copy, < 1 = Polyak averaging θ̄ ← τθ + (1−τ)θ̄"""
    target_network_frequency: int = 1
    """gradient updates between target network updates"""
    batch_size: int = 128
    """the minibatch size of each gradient update"""
    learning_starts: int = 1_000
    """env steps of uniformly random actions before learning starts"""
    learning_rate: float = 1e-3
    """Adam learning rate of the Q network"""
    anneal_lr: bool = True
    """if toggled, decay the Q learning rate linearly to 0 at total_timesteps"""
    train_frequency: int = 1
    """vector-env steps between rounds of gradient updates"""
    gradient_steps: int = 1
    """gradient updates per round (the defaults make one update per env step)"""
    hidden_sizes: tuple[int, ...] = (256, 256)
    """hidden layer widths of the Q network MLP"""
    loss: Literal["huber", "mse"] = "huber"
    """the TD regression loss ℓ of (5)"""
    double_soft_q: bool = False
    """if toggled, bootstrap from the double soft-Q value (6)"""
    alpha: float = 1.0
    """the temperature α (its initial value with --autotune)"""
    autotune: bool = True
    """if toggled, tune α so the mean policy entropy tracks target_entropy_scale·log|A| (7)"""
    target_entropy_scale: float = 0.3
    """the target entropy as a fraction of the maximum entropy log|A|"""
    alpha_lr: float = 3e-4
    """Adam learning rate of log α"""
    log_frequency: int = 100
    """gradient updates between loss logs (the training loop's only host syncs)"""
    eval_frequency: int = 10_000
    """env steps between evaluations (0 = only at the end)"""
    eval_episodes: int = 10
    """the number of evaluation episodes"""
    eval_stochastic: bool = False
    """if toggled, evaluate the Boltzmann policy (2) instead of the greedy one"""
    save_model: bool = False
    """if toggled, save the Q network to `runs/<run>/model.pt` at the end"""
    checkpoint_frequency: int = 0
    """env steps between checkpoints to `runs/<run>/checkpoint.pt` (0 = only on Ctrl-C)"""
    resume: str | None = None
    """path of a checkpoint.pt to continue training from"""
    eval_checkpoint: str | None = None
    """path of a model.pt or checkpoint.pt to evaluate on its env (trains nothing)"""
    compile: bool = False
    """if toggled, torch.compile the loss computation (forward and backward graphs)"""
    torch_threads: int = 0
    """CPU threads of torch (0 = torch's default)"""


class UsageError(Exception):
    """Bad command-line input: one line on stderr, exit status 2."""


class TrainingDiverged(RuntimeError):
    """A non-finite loss or weight: the run stops, the last good checkpoint stays, exit status 1."""


# ---------------------------------------------------------------------------- soft math
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


# ---------------------------------------------------------------------------- env, network, buffer
def make_env(env_id: str, video_dir: str | None = None) -> gym.Env:
    if not video_dir:
        return gym.make(env_id)
    env = gym.make(env_id, render_mode="rgb_array")
    return gym.wrappers.RecordVideo(env, video_dir, lambda k: k == 0, disable_logger=True)


def check_env(env_id: str) -> tuple[int, int]:
    """(observation size, number of actions), or UsageError if this script cannot learn the env."""
    try:
        env = gym.make(env_id)
    except Exception as err:  # unknown id, missing extra (box2d), broken registration, ...
        message = str(err).replace("\n", " ")
        raise UsageError(f"cannot make env {env_id!r}: {message}") from None
    obs_space, act_space = env.observation_space, env.action_space
    env.close()
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
    return obs_space.shape[0], int(act_space.n)


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

    def add(self, **rows: torch.Tensor) -> None:
        n = len(rows["obs"])
        idx = torch.arange(self.ptr, self.ptr + n, device=self.obs.device) % self.capacity
        for name, values in rows.items():
            getattr(self, name)[idx] = values
        self.ptr, self.size = (self.ptr + n) % self.capacity, min(self.size + n, self.capacity)

    def sample(self, batch_size: int) -> list[torch.Tensor]:
        idx = torch.randint(0, self.size, (batch_size,), device=self.obs.device)
        return [getattr(self, name)[idx] for name in self.FIELDS]

    def state_dict(self) -> dict:
        data = {name: getattr(self, name)[: self.size].clone() for name in self.FIELDS}
        return data | {"ptr": self.ptr, "size": self.size}

    def load_state_dict(self, state: dict) -> None:
        self.ptr, self.size = state["ptr"], state["size"]
        for name in self.FIELDS:
            getattr(self, name)[: self.size] = state[name]


def time_limit_of(env: gym.Env) -> gym.wrappers.TimeLimit | None:
    while isinstance(env, gym.Wrapper) and not isinstance(env, gym.wrappers.TimeLimit):
        env = env.env
    return env if isinstance(env, gym.wrappers.TimeLimit) else None


def get_env_state(env: gym.Env) -> dict | None:
    """Physics state, RNG and time-limit counter of a classic-control env; None if not capturable
    (e.g. Box2D worlds)."""
    base, limit = env.unwrapped, time_limit_of(env)
    if not isinstance(getattr(base, "state", None), np.ndarray):
        return None
    return {
        "state": base.state.tolist(),
        "rng": base.np_random.bit_generator.state,
        "steps_beyond_terminated": getattr(base, "steps_beyond_terminated", None),
        "elapsed_steps": limit._elapsed_steps if limit else None,
    }


def set_env_state(env: gym.Env, saved: dict) -> None:
    base, limit = env.unwrapped, time_limit_of(env)
    base.state = np.asarray(saved["state"], dtype=base.state.dtype)
    base.np_random.bit_generator.state = saved["rng"]
    if hasattr(base, "steps_beyond_terminated"):
        base.steps_beyond_terminated = saved["steps_beyond_terminated"]
    if limit:
        limit._elapsed_steps = saved["elapsed_steps"]


def update_target(q_network: nn.Module, target_network: nn.Module, tau: float) -> None:
    """θ̄ ← τθ + (1−τ)θ̄: Polyak averaging, or a hard copy when τ = 1 (one fused op per list)."""
    online, target = list(q_network.parameters()), list(target_network.parameters())
    with torch.no_grad():
        if tau == 1.0:
            torch._foreach_copy_(target, online)
        else:
            torch._foreach_lerp_(target, online, tau)


# ---------------------------------------------------------------------------- evaluation, input
def evaluate(q_network, env_id, episodes, seed, device, alpha, stochastic=False, video_dir=None):
    """Returns of `episodes` episodes, episode k on an env seeded seed + 100_000 + k."""
    env = make_env(env_id, video_dir)
    returns = []
    for k in range(episodes):
        obs, _ = env.reset(seed=seed + 100_000 + k)
        # A private generator: stochastic evaluation never perturbs the training RNG stream.
        generator = torch.Generator(device).manual_seed(seed + 100_000 + k)
        done, total = False, 0.0
        while not done:
            with torch.inference_mode():
                q = q_network(torch.as_tensor(obs, dtype=torch.float32, device=device))
                if stochastic:
                    probs = torch.softmax(q / alpha, dim=-1)
                    action = torch.multinomial(probs, 1, generator=generator).item()
                else:
                    action = q.argmax().item()
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


def validate_args(args: Args) -> None:
    def fail(name: str, requirement: str) -> None:
        value = getattr(args, name)
        raise UsageError(f"--{name.replace('_', '-')} must be {requirement}, got {value}")

    for name in (
        "total_timesteps",
        "num_envs",
        "buffer_size",
        "batch_size",
        "learning_rate",
        "target_network_frequency",
        "train_frequency",
        "gradient_steps",
        "alpha",
        "alpha_lr",
        "log_frequency",
        "eval_episodes",
    ):
        if not getattr(args, name) > 0:
            fail(name, "positive")
    for name in ("learning_starts", "eval_frequency", "checkpoint_frequency"):
        if getattr(args, name) < 0:
            fail(name, ">= 0")
    if args.batch_size > args.buffer_size:
        fail("batch_size", f"at most --buffer-size ({args.buffer_size})")
    if not 0.0 <= args.gamma <= 1.0:
        fail("gamma", "in [0, 1]")
    if not 0.0 < args.tau <= 1.0:
        fail("tau", "in (0, 1] (1 = hard target copies)")
    if not 0.0 < args.target_entropy_scale < 1.0:
        fail("target_entropy_scale", "in (0, 1)")
    if not args.hidden_sizes or min(args.hidden_sizes) <= 0:
        fail("hidden_sizes", "one or more positive widths")
    if args.resume and args.eval_checkpoint:
        raise UsageError("--resume and --eval-checkpoint exclude each other; pass only one")


def load_file(args: Args, device: torch.device) -> dict | None:
    """The --resume / --eval-checkpoint file, read safely (weights_only), or UsageError."""
    path = args.resume or args.eval_checkpoint
    if path is None:
        return None
    if not os.path.isfile(path):
        raise UsageError(f"{path} does not exist; pass the path of a model.pt or checkpoint.pt")
    try:
        data = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:
        raise UsageError(f"cannot read {path} ({type(err).__name__}); is it complete?") from None
    needed = ["q_network", "args"] + (["buffer", "torch_rng"] if args.resume else [])
    if not isinstance(data, dict) or not all(key in data for key in needed):
        what = "an sql_discrete checkpoint.pt" if args.resume else "an sql_discrete model.pt"
        raise UsageError(f"{path} is not {what}")
    for key in ("env_id", "num_envs", "buffer_size", "hidden_sizes") if args.resume else ():
        saved, given = data["args"][key], getattr(args, key)
        if saved != given and not (key == "hidden_sizes" and tuple(saved) == tuple(given)):
            option = "--" + key.replace("_", "-")
            raise UsageError(f"{path} was made with {option} {saved}; resume it with the same")
    return data


# ---------------------------------------------------------------------------- run directory
class RunLogger:
    """One run directory: metrics.jsonl (and wandb with --track) while running, summary.json at the end."""

    def __init__(self, args: Args):
        env_name = args.env_id.replace("/", "-")  # a namespaced id ("ns/Env-v0") is one directory
        base = f"runs/{env_name}__{args.exp_name}__{args.seed}__{int(time.time())}"
        self.run_dir, n = base, 1
        while os.path.exists(self.run_dir):  # two runs started in the same second: keep both
            n += 1
            self.run_dir = f"{base}_{n}"
        os.makedirs(self.run_dir)
        self.wandb = None
        if args.track:
            import wandb

            name = os.path.basename(self.run_dir)
            wandb.init(
                project=args.wandb_project_name,
                entity=args.wandb_entity,
                name=name,
                config=asdict(args),
                dir=self.run_dir,
            )
            self.wandb = wandb

    def log(self, step: int, metrics: dict) -> None:
        with open(os.path.join(self.run_dir, "metrics.jsonl"), "a") as f:
            f.write(json.dumps({"global_step": step, **metrics}) + "\n")
        if self.wandb:
            self.wandb.log(metrics, step=step)

    def finish(self, summary: dict) -> dict:
        path = os.path.join(self.run_dir, "summary.json")
        with open(path + ".tmp", "w") as f:
            json.dump(summary, f, indent=2)
        os.replace(path + ".tmp", path)
        if self.wandb:
            self.wandb.summary.update({k: v for k, v in summary.items() if v is not None})
            self.wandb.finish()
        print(f"run directory: {self.run_dir}")
        return summary | {"run_dir": self.run_dir}


def main(args: Args) -> dict:
    validate_args(args)
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    if args.cuda and device.type == "cpu":
        print("notice: CUDA is not available, running on CPU")
    loaded = load_file(args, device)  # every check of the input happens before anything is written
    if args.eval_checkpoint:  # evaluate the stored network on the env it was trained on
        saved = loaded["args"]
        args = replace(args, env_id=saved["env_id"], hidden_sizes=tuple(saved["hidden_sizes"]))
    obs_dim, n_actions = check_env(args.env_id)

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)

    q_network = QNetwork(obs_dim, n_actions, args.hidden_sizes).to(device)
    log_alpha = torch.tensor(float(np.log(args.alpha)), device=device, requires_grad=args.autotune)
    if loaded:
        try:
            q_network.load_state_dict(loaded["q_network"])
        except RuntimeError:
            raise UsageError(
                f"the network in {args.resume or args.eval_checkpoint} does not fit {args.env_id}"
            ) from None
        log_alpha.data.fill_(float(loaded.get("log_alpha", log_alpha.item())))

    logger = RunLogger(args)
    summary = {
        "algorithm": "sql_discrete",
        "env_id": args.env_id,
        "seed": args.seed,
        "double_soft_q": args.double_soft_q,
        "global_step": 0,
        "gradient_updates": 0,
        "policy_updates": 0,
        "train_time_s": 0.0,
        "learn_sps": None,
        "episodic_return_last": None,
        "eval_return_mean": None,
        "eval_return_std": None,
        "eval_episodes": args.eval_episodes,
        "alpha": None,
        "status": "crashed",  # replaced below unless an unexpected exception escapes
    }

    def run_evaluation(step: int) -> None:
        video_dir = f"{logger.run_dir}/videos/step{step}" if args.capture_video else None
        returns = evaluate(
            q_network,
            args.env_id,
            args.eval_episodes,
            args.seed,
            device,
            log_alpha.exp().item(),
            args.eval_stochastic,
            video_dir,
        )
        logger.log(step, {"eval/episodic_return": float(np.mean(returns))})
        summary.update(
            eval_return_mean=float(np.mean(returns)), eval_return_std=float(np.std(returns))
        )

    if args.eval_checkpoint:
        summary["global_step"] = loaded.get("global_step", 0)
        run_evaluation(summary["global_step"])
        return logger.finish(summary | {"alpha": log_alpha.exp().item(), "status": "evaluated"})

    # ------------------------------------------------------------------------ training set-up
    target_network = QNetwork(obs_dim, n_actions, args.hidden_sizes).to(device)
    target_network.load_state_dict(q_network.state_dict())
    target_network.requires_grad_(False)  # Q̄ only ever receives copies of θ
    # fused Adam: one kernel for all parameters instead of a loop of small ops per tensor
    q_optimizer = torch.optim.Adam(q_network.parameters(), lr=args.learning_rate, fused=True)
    alpha_optimizer = torch.optim.Adam([log_alpha], lr=args.alpha_lr)
    target_entropy = args.target_entropy_scale * float(np.log(n_actions))
    buffer = ReplayBuffer(args.buffer_size, obs_dim, device)
    td_loss = F.smooth_l1_loss if args.loss == "huber" else F.mse_loss

    def compute_losses(obs, next_obs, actions, rewards, terminated, log_alpha):
        """The Q loss (5) with the soft target (4), and the temperature loss (7), on one batch."""
        alpha = log_alpha.detach().exp()
        with torch.no_grad():
            q_next_target = target_network(next_obs)
            if args.double_soft_q:
                next_value = double_soft_value(q_next_target, q_network(next_obs), alpha)  # (6)
            else:
                next_value = soft_value(q_next_target, alpha)  # (1) on the target network
            target = soft_td_target(rewards, terminated, next_value, args.gamma)  # (4)
        q_values = q_network(obs)
        qf_loss = td_loss(q_values.gather(1, actions[:, None]).squeeze(1), target)  # (5)
        # The mean entropy of the Boltzmann policy (2) on replayed states drives α, eq. (7).
        policy_entropy = entropy(boltzmann_log_probs(q_values.detach(), alpha)).mean()
        alpha_loss = temperature_loss(log_alpha, policy_entropy, target_entropy)
        return qf_loss, alpha_loss, policy_entropy, next_value.mean()

    if args.compile:  # the optimizer steps stay eager: the annealed learning rate changes each step
        compute_losses = torch.compile(compute_losses)

    def update(learning_rate: float) -> tuple[torch.Tensor, ...]:
        qf_loss, alpha_loss, *diagnostics = compute_losses(
            *buffer.sample(args.batch_size), log_alpha
        )
        q_optimizer.param_groups[0]["lr"] = learning_rate
        q_optimizer.zero_grad(set_to_none=True)
        alpha_optimizer.zero_grad(set_to_none=True)
        # Each loss sees the other's inputs detached, so they share no parameters and one
        # backward pass through their sum gives θ exactly ∇L(θ) and log α exactly ∇J(log α).
        (qf_loss + alpha_loss).backward()
        q_optimizer.step()
        if args.autotune:
            alpha_optimizer.step()
        return qf_loss.detach(), alpha_loss.detach(), *diagnostics

    envs = gym.vector.SyncVectorEnv(
        [lambda: make_env(args.env_id) for _ in range(args.num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    obs, _ = envs.reset(seed=args.seed)
    ep_return, ep_length = np.zeros(args.num_envs), np.zeros(args.num_envs, dtype=np.int64)
    recent_returns = deque(maxlen=10)
    global_step = iteration = gradient_updates = 0
    if args.resume:
        q_network.load_state_dict(loaded["q_network"])
        target_network.load_state_dict(loaded["target_network"])
        q_optimizer.load_state_dict(loaded["q_optimizer"])
        alpha_optimizer.load_state_dict(loaded["alpha_optimizer"])
        buffer.load_state_dict(loaded["buffer"])
        torch.set_rng_state(loaded["torch_rng"].cpu())
        if device.type == "cuda" and loaded.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(loaded["cuda_rng"].cpu())
        global_step, iteration = loaded["global_step"], loaded["iteration"]
        gradient_updates = loaded["gradient_updates"]
        recent_returns.extend(loaded["recent_returns"])
        if all(state is not None for state in loaded["env_states"]):  # the very same episodes
            for env, state in zip(envs.envs, loaded["env_states"], strict=True):
                set_env_state(env, state)
            obs = loaded["obs"].cpu().numpy()
            ep_return[:], ep_length[:] = loaded["ep_return"], loaded["ep_length"]
        else:  # e.g. Box2D, whose state cannot be saved: continue with fresh episodes
            obs, _ = envs.reset(seed=args.seed + global_step)
            print("notice: this env's state cannot be restored; resuming with fresh episodes")

    def save_checkpoint() -> None:
        if not all(torch.isfinite(p).all() for p in q_network.parameters()):
            raise TrainingDiverged(f"non-finite Q-network weights at step {global_step}")
        checkpoint = {
            "args": asdict(args),
            "global_step": global_step,
            "iteration": iteration,
            "gradient_updates": gradient_updates,
            "q_network": q_network.state_dict(),
            "target_network": target_network.state_dict(),
            "q_optimizer": q_optimizer.state_dict(),
            "log_alpha": log_alpha.detach().cpu(),
            "alpha_optimizer": alpha_optimizer.state_dict(),
            "buffer": buffer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state() if device.type == "cuda" else None,
            "env_states": [get_env_state(env) for env in envs.envs],
            "obs": torch.as_tensor(obs),
            "ep_return": ep_return.tolist(),
            "ep_length": ep_length.tolist(),
            "recent_returns": list(recent_returns),
        }
        path = os.path.join(logger.run_dir, "checkpoint.pt")
        torch.save(checkpoint, path + ".tmp")
        os.replace(path + ".tmp", path)  # atomic: a crash mid-write leaves the previous one intact

    def crossed(frequency: int) -> bool:  # did the last vector step pass a multiple of frequency?
        return (
            frequency > 0 and global_step // frequency > (global_step - args.num_envs) // frequency
        )

    def to_tensor(x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(x, dtype=torch.float32, device=device)

    # Ctrl-C or SIGTERM (a cluster's preemption) only raises a flag; the loop then stops between
    # steps and saves a consistent checkpoint. A second Ctrl-C aborts at once.
    stop = threading.Event()

    def on_stop_signal(signum, frame):
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        print("stopping after this step and saving a checkpoint (Ctrl-C again to abort)")

    stop_signals = (signal.SIGINT, signal.SIGTERM)
    previous_handlers = {}
    if threading.current_thread() is threading.main_thread():  # only it receives signals
        previous_handlers = {sig: signal.signal(sig, on_stop_signal) for sig in stop_signals}

    # ------------------------------------------------------------------------ training loop
    start_time, start_step, last_print = time.time(), global_step, time.time()
    learn_start = learn_start_step = None
    eval_time = 0.0  # evaluation wall time after learning started, left out of learn_sps

    def learn_sps() -> float | None:  # env steps per second since the first gradient update
        if learn_start is None:
            return None
        return (global_step - learn_start_step) / (time.time() - learn_start - eval_time)

    try:
        while global_step < args.total_timesteps and not stop.is_set():
            with torch.inference_mode():
                if global_step < args.learning_starts:
                    actions = torch.randint(n_actions, (args.num_envs,), device=device)
                else:  # sample the Boltzmann policy (2): the only exploration there is
                    probs = torch.softmax(q_network(to_tensor(obs)) / log_alpha.exp(), dim=-1)
                    try:
                        actions = torch.multinomial(probs, 1).squeeze(1)
                    except RuntimeError:  # it rejects NaN probabilities: the weights diverged
                        raise TrainingDiverged(
                            f"non-finite Q-values at step {global_step}"
                        ) from None
            next_obs, rewards, terminated, truncated, infos = envs.step(actions.cpu().numpy())
            # SAME_STEP autoreset: an env whose episode ended already returned the next episode's
            # first obs; the transition needs the true last obs, which is in infos["final_obs"].
            real_next_obs = next_obs.copy()
            for i in np.flatnonzero(infos.get("_final_obs", [])):
                real_next_obs[i] = infos["final_obs"][i]
            buffer.add(
                obs=to_tensor(obs),
                next_obs=to_tensor(real_next_obs),
                actions=actions,
                rewards=to_tensor(rewards),
                terminated=to_tensor(terminated),
            )
            obs = next_obs
            global_step += args.num_envs
            iteration += 1
            ep_return += rewards
            ep_length += 1
            for i in np.flatnonzero(terminated | truncated):
                recent_returns.append(float(ep_return[i]))
                logger.log(
                    global_step,
                    {
                        "charts/episodic_return": float(ep_return[i]),
                        "charts/episodic_length": int(ep_length[i]),
                    },
                )
                ep_return[i], ep_length[i] = 0.0, 0

            if global_step > args.learning_starts and iteration % args.train_frequency == 0:
                if learn_start is None:
                    learn_start, learn_start_step = time.time(), global_step - args.num_envs
                learning_rate = args.learning_rate
                if args.anneal_lr:  # linear decay: a stable final network (see docstring)
                    learning_rate *= 1.0 - (global_step - args.num_envs) / args.total_timesteps
                for _ in range(args.gradient_steps):
                    losses = update(learning_rate)
                    gradient_updates += 1
                    if gradient_updates % args.target_network_frequency == 0:
                        update_target(q_network, target_network, args.tau)
                    if gradient_updates % args.log_frequency == 0:
                        qf_loss, alpha_loss, policy_entropy, value = (x.item() for x in losses)
                        if not np.isfinite(qf_loss):
                            raise TrainingDiverged(f"non-finite Q loss at step {global_step}")
                        logger.log(
                            global_step,
                            {
                                "losses/qf_loss": qf_loss,
                                "losses/alpha": log_alpha.exp().item(),
                                "losses/alpha_loss": alpha_loss,
                                "charts/policy_entropy": policy_entropy,
                                "losses/soft_value": value,
                                "charts/SPS": learn_sps(),
                            },
                        )

            if time.time() - last_print > 5.0:
                last_print = time.time()
                rate = (global_step - start_step) / (last_print - start_time)
                eta = (args.total_timesteps - global_step) / rate
                recent = f"{np.mean(recent_returns):.1f}" if recent_returns else "n/a"
                print(
                    f"step {global_step}/{args.total_timesteps} "
                    f"({100 * global_step / args.total_timesteps:.0f}%, ETA {eta:.0f}s) "
                    f"return {recent} SPS {rate:.0f} alpha {log_alpha.exp().item():.3g}"
                )
            if crossed(args.eval_frequency) and global_step < args.total_timesteps:
                eval_start = time.time()
                run_evaluation(global_step)
                eval_time += time.time() - eval_start if learn_start is not None else 0.0
            if crossed(args.checkpoint_frequency):
                save_checkpoint()
        if stop.is_set():
            save_checkpoint()
            summary.update(status="interrupted", eval_return_mean=None, eval_return_std=None)
        else:
            run_evaluation(global_step)
            summary["status"] = "finished"
    except (TrainingDiverged, KeyboardInterrupt) as err:
        status = "diverged" if isinstance(err, TrainingDiverged) else "aborted"
        summary.update(status=status, error=str(err), eval_return_mean=None, eval_return_std=None)
        raise
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
        envs.close()
        summary.update(
            global_step=global_step,
            gradient_updates=gradient_updates,
            train_time_s=time.time() - start_time,
            learn_sps=learn_sps(),
            alpha=log_alpha.exp().item(),
        )
        if recent_returns:
            summary["episodic_return_last"] = float(np.mean(recent_returns))
        if args.save_model and summary["status"] == "finished":
            model = {
                "q_network": q_network.state_dict(),
                "log_alpha": log_alpha.detach().cpu(),
                "args": asdict(args),
                "global_step": global_step,
            }
            torch.save(model, os.path.join(logger.run_dir, "model.pt"))
        result = logger.finish(summary)
    if result["status"] == "interrupted":
        print(f"interrupted; continue with --resume {logger.run_dir}/checkpoint.pt")
    return result


if __name__ == "__main__":
    try:
        result = main(tyro.cli(Args))
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except TrainingDiverged as err:
        print(f"error: training diverged: {err}; the last checkpoint.pt is kept", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    if result["status"] == "interrupted":
        raise SystemExit(130)
