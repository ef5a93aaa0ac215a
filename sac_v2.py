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

Actor. A Gaussian over pre-squash actions u ~ N(μ_φ(s), σ_φ(s)), squashed a = scale·tanh(u) + bias
into the env's box. With u = μ + σ ε (reparameterisation, eq. 11) the policy loss is (eq. 7, 12)
    J_π = E_s E_ε[ α log π(a|s) − min_i Q_i(s, a) ],
and the log-density of the env action includes the change of variables (Appendix C):
    log π(a|s) = Σ_j [ log N(u_j; μ_j, σ_j) − log(1 − tanh² u_j) − log scale_j ],
    log(1 − tanh² u) = 2 (log 2 − u − softplus(−2u))            (stable for large |u|).

Temperature. α = exp(log α) is learned by dual descent on (eq. 17, 18)
    J(α) = E_{a~π}[ −α (log π(a|s) + H̄) ],   H̄ = −dim(A) by default,
which raises α when the policy's entropy −E[log π] falls below H̄ and lowers it when above.

Evaluation uses the deterministic policy a = scale·tanh(μ_φ(s)) + bias on a separate env.

Departures from the paper, and why:
- `--learning-starts 5000` uniform-random actions before the first update (CleanRL's choice; the
  paper lists none). Early diverse data keeps the critics from overfitting a few trajectories.
- The critics see actions in [−1, 1] (the tanh output) rather than env units, so networks see the
  same input range on every env; the env receives the rescaled action and log π is the density of
  that env action, as above. The entropy target therefore means the same thing as in the paper.
- log σ is clamped to [−20, 2] (the authors' reference code).
- The two critics are one batched module (stacked weights, `torch.baddbmm`): the same math as two
  separate MLPs, in fewer, larger matrix products.
- With `--num-envs N` every loop iteration takes N env steps and does N gradient updates, keeping the
  paper's one gradient step per env step.
- `--bf16` (off by default): the hidden layers' matrix products run in bfloat16 autocast, while
  weights, optimizer state, output layers, log-probs and losses stay float32. On a CPU with
  AVX-512 BF16 an update gets ≈ 1.5× faster; README reports its learning beside float32's.

Usage:  python sac_v2.py --env-id Walker2d-v4      (see --help for every flag)
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

ALGORITHM = "sac_v2"


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
    """entropy target H̄ for autotune; None means −dim(A)"""

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
    """path of a checkpoint.pt to continue (its run keeps its settings; --total-timesteps may extend it)"""
    eval_checkpoint: str | None = None
    """path of a model.pt or checkpoint.pt: evaluate that policy, write summary.json, train nothing"""
    compile: bool = False
    """torch.compile the loss computations of the update"""
    bf16: bool = False
    """run the update's hidden layers in bfloat16 autocast (float32 weights, optimizer state, output
    layers and losses); pays on CPUs with AVX-512 BF16/AMX and on recent GPUs"""


class UsageError(Exception):
    """Bad input from the user: reported as one line on stderr with exit status 2."""


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite: reported with exit status 1, last good checkpoint kept."""


# ----------------------------------------------------------------------------------------------
# Soft-actor-critic math (pure functions; tests check them against independent oracles)
# ----------------------------------------------------------------------------------------------
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def squashed_gaussian_log_prob(
    pre_tanh: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor, action_scale: torch.Tensor
) -> torch.Tensor:
    """log π(a|s) of a = scale·tanh(u) + bias with u ~ N(mean, exp(log_std)), summed over action dims.

    The tanh Jacobian uses log(1 − tanh² u) = 2(log 2 − u − softplus(−2u)), finite for any u, where
    the naive log(1 − tanh(u)²) is −inf once tanh(u) rounds to ±1 (|u| ≳ 9 in float32).
    """
    normalized = (pre_tanh - mean) * torch.exp(-log_std)
    gaussian = -0.5 * normalized.pow(2) - log_std - HALF_LOG_2PI
    log_det_tanh = 2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))
    return (gaussian - log_det_tanh - torch.log(action_scale)).sum(-1)


def soft_q_target(
    reward: torch.Tensor,
    terminated: torch.Tensor,
    next_q_min: torch.Tensor,
    next_log_prob: torch.Tensor,
    gamma: float,
    alpha: torch.Tensor | float,
) -> torch.Tensor:
    """y = r + γ(1 − terminated)(min_i Q̄_i(s′, a′) − α log π(a′|s′)): the soft Bellman backup."""
    soft_next_value = next_q_min - alpha * next_log_prob
    return reward + gamma * (1.0 - terminated) * soft_next_value


def temperature_loss(
    log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float
) -> torch.Tensor:
    """J(α) = E[−α (log π + H̄)]: its gradient raises α when the entropy −log π is below H̄."""
    return -(log_alpha.exp() * (log_prob.detach() + target_entropy)).mean()


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """θ̄ ← (1 − τ) θ̄ + τ θ, in place, for every parameter at once."""
    torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), tau)


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


def uniform_init_(tensor: torch.Tensor, fan_in: int) -> torch.Tensor:
    """U(−1/√fan_in, 1/√fan_in): the distribution nn.Linear uses by default."""
    bound = 1.0 / math.sqrt(fan_in)
    return nn.init.uniform_(tensor, -bound, bound)


class TwinSoftQNetwork(nn.Module):
    """Q_1 and Q_2 as one module: layer weights are stacked along a leading "critic" dimension.

    Q_i(s, a) = W3_i relu(W2_i relu(W1_i [s; a] + b1_i) + b2_i) + b3_i,  i = 1, 2, computed for both
    critics with one batched matrix product per layer. Returns [2, batch].
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int, num_critics: int = 2):
        super().__init__()
        in_dim = obs_dim + act_dim
        shapes = [(in_dim, hidden_dim), (hidden_dim, hidden_dim), (hidden_dim, 1)]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in shapes:
            weight = torch.empty(num_critics, fan_in, fan_out)
            bias = torch.empty(num_critics, 1, fan_out)
            self.weights.append(nn.Parameter(uniform_init_(weight, fan_in)))
            self.biases.append(nn.Parameter(uniform_init_(bias, fan_in)))
        self.num_critics = num_critics

    def forward(
        self, obs: torch.Tensor, action: torch.Tensor, detach_params: bool = False
    ) -> torch.Tensor:
        """detach_params=True evaluates Q as a fixed function: the actor loss uses it so that
        gradients flow into the action but never into the critics' weights."""
        hidden = torch.cat([obs, action], dim=-1).expand(self.num_critics, -1, -1)
        weights, biases = list(self.weights), list(self.biases)
        if detach_params:
            weights, biases = [w.detach() for w in weights], [b.detach() for b in biases]
        for weight, bias in zip(weights[:-1], biases[:-1], strict=True):
            hidden = torch.relu(torch.baddbmm(bias, hidden, weight))
        # The output layer always runs in float32: under --bf16, a Q value of a few hundred would
        # otherwise carry bf16's 3 significant digits into the TD error.
        with torch.autocast(hidden.device.type, enabled=False):
            q_values = torch.baddbmm(biases[-1], hidden.float(), weights[-1])
        return q_values.squeeze(-1)


class Actor(nn.Module):
    """Tanh-squashed Gaussian policy π_φ(a|s); actions in [−1, 1], see `to_env_action`."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int, action_low, action_high):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Linear(obs_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
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
        """Reparameterised a = tanh(μ + σ ε), ε ~ N(0, I); returns (a in [−1, 1], log π(env action))."""
        mean, log_std = self(obs)
        pre_tanh = mean + log_std.exp() * torch.randn_like(mean)
        log_prob = squashed_gaussian_log_prob(pre_tanh, mean, log_std, self.action_scale)
        return torch.tanh(pre_tanh), log_prob

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        """The evaluation policy: tanh(μ(s)), in [−1, 1]."""
        return torch.tanh(self(obs)[0])

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
    qf, qf_target, actor, batch, alpha: torch.Tensor, gamma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """J_Q = Σ_i E[½(Q_i(s,a) − y)²], y from the target critics and a fresh a′ ~ π(·|s′)."""
    obs, action, reward, terminated, next_obs = batch
    with torch.no_grad():
        next_action, next_log_prob = actor.sample(next_obs)
        next_q_min = qf_target(next_obs, next_action).min(dim=0).values
        target = soft_q_target(
            reward.squeeze(1), terminated.squeeze(1), next_q_min, next_log_prob, gamma, alpha
        )
    q_values = qf(obs, action)
    loss = 0.5 * (q_values - target).pow(2).mean(dim=1).sum()
    return loss, q_values.detach()


def actor_and_temperature_loss(
    actor, qf, log_alpha: torch.Tensor, obs: torch.Tensor, target_entropy: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """J_π = E[α log π(ã|s) − min_i Q_i(s, ã)] and J(α), sharing one actor forward pass."""
    action, log_prob = actor.sample(obs)
    q_min = qf(obs, action, detach_params=True).min(dim=0).values
    alpha = log_alpha.detach().exp()
    actor_loss = (alpha * log_prob - q_min).mean()
    alpha_loss = temperature_loss(log_alpha, log_prob, target_entropy)
    return actor_loss, alpha_loss, log_prob.detach()


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
    """Everything `step()` depends on, for MuJoCo and classic-control envs; None for other envs."""
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
# Evaluation, run bookkeeping, argument checks
# ----------------------------------------------------------------------------------------------
@torch.inference_mode()
def evaluate(
    actor: Actor, env: gym.Env, episodes: int, seed: int, device: torch.device
) -> list[float]:
    """Undiscounted returns of the deterministic policy tanh(μ(s)); episode k reset with seed + k."""
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        done, episode_return = False, 0.0
        while not done:
            obs_tensor = torch.as_tensor(obs, dtype=torch.float32, device=device)[None]
            action = actor.to_env_action(actor.deterministic(obs_tensor))[0]
            obs, reward, terminated, truncated, _ = env.step(action)
            episode_return += float(reward)
            done = terminated or truncated
        returns.append(episode_return)
    return returns


def validate_args(args: Args) -> None:
    positive = ["total_timesteps", "num_envs", "buffer_size", "batch_size", "eval_episodes"]
    positive += ["hidden_dim", "log_frequency", "policy_lr", "q_lr"]
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
    if not (math.isfinite(args.alpha) and args.alpha >= 0):
        raise UsageError(f"--alpha must be a finite number >= 0, got {args.alpha}")
    if args.target_entropy is not None and not math.isfinite(args.target_entropy):
        raise UsageError(f"--target-entropy must be finite, got {args.target_entropy}")


def make_checked_env(env_id: str, render_mode: str | None = None) -> gym.Env:
    """gym.make with the failure modes a user can cause turned into one-line UsageErrors."""
    try:
        env = make_env(env_id, render_mode)()
    except gym.error.DependencyNotInstalled as err:
        raise UsageError(f"{env_id} needs a missing dependency: {err}") from None
    except gym.error.Error as err:  # NameNotFound, VersionNotFound, NamespaceNotFound, ...
        raise UsageError(f"unknown environment '{env_id}' ({err})") from None
    check_env_spaces(env, env_id)
    return env


def load_checkpoint_file(path: str, what: str) -> dict:
    if not os.path.isfile(path):
        raise UsageError(f"{what} file '{path}' does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a torch file, or holds arbitrary objects
        raise UsageError(f"{what} file '{path}' cannot be read ({type(err).__name__})") from None
    if not isinstance(data, dict) or data.get("algorithm") != ALGORITHM or "actor" not in data:
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


# Settings a resumed run takes from the command line; everything else comes from the checkpoint.
RESUME_OVERRIDES = ["total_timesteps", "checkpoint_frequency", "eval_frequency", "track", "cuda"]


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
    low, high = envs.single_action_space.low, envs.single_action_space.high

    actor = Actor(obs_dim, act_dim, args.hidden_dim, low, high).to(device)
    qf = TwinSoftQNetwork(obs_dim, act_dim, args.hidden_dim).to(device)
    qf_target = TwinSoftQNetwork(obs_dim, act_dim, args.hidden_dim).to(device)
    qf_target.load_state_dict(qf.state_dict())
    qf_target.requires_grad_(False)  # targets move only by Polyak averaging
    # fused Adam: one kernel for all parameters instead of a loop of small ops
    q_optimizer = torch.optim.Adam(qf.parameters(), lr=args.q_lr, fused=True)
    actor_optimizer = torch.optim.Adam(actor.parameters(), lr=args.policy_lr, fused=True)
    target_entropy = float(-act_dim if args.target_entropy is None else args.target_entropy)
    # autotune starts from α = 1 (as SB3 and CleanRL do); α = 0 gives log α = −inf, i.e. exactly 0
    initial_log_alpha = 0.0 if args.autotune else math.log(args.alpha) if args.alpha else -math.inf
    log_alpha = torch.tensor(initial_log_alpha, device=device, requires_grad=args.autotune)
    alpha_optimizer = torch.optim.Adam([log_alpha], lr=args.q_lr) if args.autotune else None
    buffer = ReplayBuffer(args.buffer_size, obs_dim, act_dim, device)

    compute_critic_loss, compute_actor_loss = critic_loss, actor_and_temperature_loss
    if args.compile:
        compute_critic_loss = torch.compile(critic_loss)
        compute_actor_loss = torch.compile(actor_and_temperature_loss)

    def precision():  # --bf16: the losses' forward passes (and so their backward) in bfloat16
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)

    # Loop state: everything a checkpoint must carry to continue the same trajectory.
    global_step, gradient_updates = 0, 0
    episode_returns = np.zeros(args.num_envs)
    episode_lengths = np.zeros(args.num_envs, dtype=np.int64)
    recent_returns: deque[float] = deque(maxlen=10)
    obs, _ = envs.reset(seed=args.seed)
    run_dir = new_run_dir(args.env_id, args.exp_name, args.seed)
    if checkpoint is not None:  # a resumed run continues in its own directory
        run_dir = os.path.dirname(args.resume) or "."
        actor.load_state_dict(checkpoint["actor"])
        qf.load_state_dict(checkpoint["qf"])
        qf_target.load_state_dict(checkpoint["qf_target"])
        q_optimizer.load_state_dict(checkpoint["q_optimizer"])
        actor_optimizer.load_state_dict(checkpoint["actor_optimizer"])
        with torch.no_grad():
            log_alpha.copy_(checkpoint["log_alpha"])
        if alpha_optimizer is not None:
            alpha_optimizer.load_state_dict(checkpoint["alpha_optimizer"])
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
        networks = [actor, qf, qf_target]
        if not all(torch.isfinite(p).all() for net in networks for p in net.parameters()):
            raise TrainingDiverged(f"non-finite network weights at step {global_step}")
        env_states = [get_env_state(env) for env in envs.envs]
        return {
            "algorithm": ALGORITHM,
            "args": asdict(args),
            "actor": actor.state_dict(),
            "qf": qf.state_dict(),
            "qf_target": qf_target.state_dict(),
            "q_optimizer": q_optimizer.state_dict(),
            "actor_optimizer": actor_optimizer.state_dict(),
            "alpha_optimizer": alpha_optimizer.state_dict() if alpha_optimizer else None,
            "log_alpha": log_alpha.detach().cpu(),
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
        values["losses/alpha"] = log_alpha.exp().item()
        values["charts/SPS"] = (global_step - learn_start_step) / (time.time() - learn_start_time)
        run_log.log(global_step, values)

    def evaluation_row() -> dict:
        returns = evaluate(actor, eval_env, args.eval_episodes, args.seed + 100_000, device)
        row = {"eval/episodic_return": float(np.mean(returns))}
        row["eval/episodic_return_std"] = float(np.std(returns))
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
            # --- act -------------------------------------------------------------------------
            if global_step < args.learning_starts:
                unit_action = torch.rand(args.num_envs, act_dim) * 2.0 - 1.0
            else:
                with torch.inference_mode():
                    obs_tensor = torch.as_tensor(obs, dtype=torch.float32, device=device)
                    unit_action = actor.sample(obs_tensor)[0]
            next_obs, reward, terminated, truncated, infos = envs.step(
                actor.to_env_action(unit_action.to(device))
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
                    alpha = log_alpha.detach().exp()
                    batch = buffer.sample(args.batch_size)
                    with precision():
                        qf_loss, q_values = compute_critic_loss(
                            qf, qf_target, actor, batch, alpha, args.gamma
                        )
                    q_optimizer.zero_grad(set_to_none=True)
                    qf_loss.backward()
                    q_optimizer.step()

                    with precision():
                        actor_loss, alpha_loss, log_prob = compute_actor_loss(
                            actor, qf, log_alpha, batch[0], target_entropy
                        )
                    # J_π reaches only φ and J(α) only log α, so one backward of their sum
                    # gives each optimizer exactly its own loss's gradient.
                    actor_optimizer.zero_grad(set_to_none=True)
                    if alpha_optimizer is None:
                        actor_loss.backward()
                    else:
                        alpha_optimizer.zero_grad(set_to_none=True)
                        (actor_loss + alpha_loss).backward()
                        alpha_optimizer.step()
                    actor_optimizer.step()

                    polyak_update(qf_target, qf, args.tau)
                    gradient_updates += 1

                if crossed(args.log_frequency):
                    log_losses(
                        {
                            "losses/qf_loss": qf_loss.detach(),
                            "losses/qf1_values": q_values[0].mean(),
                            "losses/qf2_values": q_values[1].mean(),
                            "losses/actor_loss": actor_loss.detach(),
                            "losses/alpha_loss": alpha_loss.detach(),
                            "charts/policy_entropy": -log_prob.mean(),
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
                    f"return {recent} | SPS {sps:6.0f} | alpha {log_alpha.exp().item():.4f}",
                    flush=True,
                )
        loop_end_time = time.time()  # learn_sps excludes the final evaluation below
        if not interrupted and last_eval_step != global_step:
            last_eval = evaluation_row()  # always end with an evaluation of the final policy
        if args.checkpoint_frequency or interrupted:
            save_atomically(make_checkpoint(), os.path.join(run_dir, "checkpoint.pt"))
        if args.save_model:
            model = {"algorithm": ALGORITHM, "args": asdict(args), "actor": actor.state_dict()}
            model.update(qf=qf.state_dict(), qf_target=qf_target.state_dict())
            model["log_alpha"] = log_alpha.detach().cpu()
            save_atomically(model, os.path.join(run_dir, "model.pt"))
        status = "interrupted" if interrupted else "finished"
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
            "alpha": float(log_alpha.exp().item()),
            "target_entropy": target_entropy if args.autotune else None,
        }
        run_log.write_summary(summary)
        run_log.close()
        envs.close()
        eval_env.close()
    print(
        f"{status}: {global_step:,} steps in {train_time:.0f} s; results in {run_dir}", flush=True
    )
    return {**summary, "run_dir": run_dir}


def evaluate_checkpoint(args: Args) -> dict:
    """--eval-checkpoint: evaluate a saved policy (optionally on video); train nothing."""
    saved = load_checkpoint_file(args.eval_checkpoint, "--eval-checkpoint")
    env_id = saved["args"]["env_id"]
    if args.capture_video:
        os.environ.setdefault("MUJOCO_GL", "egl")  # headless MuJoCo rendering
    env = make_checked_env(env_id, "rgb_array" if args.capture_video else None)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    hidden_dim = saved["args"]["hidden_dim"]
    device = pick_device(args)
    actor = Actor(obs_dim, act_dim, hidden_dim, env.action_space.low, env.action_space.high)
    try:
        actor.load_state_dict(saved["actor"])
    except RuntimeError as err:
        raise UsageError(f"the actor in '{args.eval_checkpoint}' does not fit {env_id}") from err
    actor.to(device)
    run_dir = new_run_dir(env_id, f"{args.exp_name}-eval", args.seed)
    run_log = RunLog(run_dir, args, resuming=False)
    if args.capture_video:
        env = gym.wrappers.RecordVideo(env, os.path.join(run_dir, "videos"), disable_logger=True)
    start = time.time()
    returns = evaluate(actor, env, args.eval_episodes, args.seed + 100_000, device)
    global_step = saved.get("loop", {}).get("global_step", None)
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
        "alpha": float(saved["log_alpha"].exp()),
    }
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
