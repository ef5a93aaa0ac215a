"""Stable-Baselines3 peers configured to do the same work per env step as softrl's defaults.

`--algo sac` (beside sac_v2.py): twin 256×256 critics, 256×256 actor, batch 256, lr 3e-4, τ 0.005,
γ 0.99, one critic and one actor update per env step after `--learning-starts` random steps,
automatic entropy tuning.
`--algo dqn` (beside sql_discrete.py): a 256×256 Q network, batch 128, lr 1e-3, Huber loss, Polyak
target τ 0.005 after every update, γ 0.99, buffer 50k, one update per env step after
`--learning-starts` random steps (ε-greedy exploration instead of the Boltzmann policy: acting
costs the same one forward pass).
Both float32 on the CPU (`--device cuda` for a GPU), torch's default thread count unless `--torch-threads` says otherwise.
It writes what the softrl scripts write — runs/<run>/metrics.jsonl with `eval/episodic_return`
(deterministic policy, episode k of every evaluation reset with seed + 100000 + k) and
runs/<run>/summary.json with `learn_sps` (env steps per second from the first update to the end of
training) — so the benchmarks read it like any softrl run.

    python benchmarks/sb3_peer.py --algo sac --env-id Walker2d-v4 --total-timesteps 3000 --learning-starts 1000
    python benchmarks/sb3_peer.py --algo dqn --env-id CartPole-v1 --total-timesteps 50000 --learning-starts 1000
"""

import argparse
import json
import os
import time

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import DQN, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback


def evaluate(model: BaseAlgorithm, env: gym.Env, episodes: int, seed: int) -> list[float]:
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + 100_000 + episode)
        done, episode_return = False, 0.0
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action)
            episode_return += float(reward)
            done = terminated or truncated
        returns.append(episode_return)
    return returns


class ClockAndEval(BaseCallback):
    """Notes when updates begin (SB3 trains once steps > learning_starts), logs episodes and evals."""

    def __init__(self, args, eval_env: gym.Env, metrics):
        super().__init__()
        self.args, self.eval_env, self.metrics = args, eval_env, metrics
        self.start_time, self.start_step = None, None
        self.last_eval = None

    def log(self, row: dict) -> None:
        self.metrics.write(json.dumps({"global_step": self.num_timesteps, **row}) + "\n")

    def _on_step(self) -> bool:
        if self.start_time is None and self.num_timesteps > self.args.learning_starts:
            self.start_time, self.start_step = time.time(), self.num_timesteps
        for info in self.locals.get("infos", []):
            if "episode" in info:
                self.log({"charts/episodic_return": float(info["episode"]["r"])})
        every = self.args.eval_frequency
        if every and self.num_timesteps % every == 0:
            self.evaluate()
        return True

    def evaluate(self) -> None:
        returns = evaluate(self.model, self.eval_env, self.args.eval_episodes, self.args.seed)
        self.last_eval = (float(np.mean(returns)), float(np.std(returns)))
        self.log({"eval/episodic_return": self.last_eval[0]})


def make_model(args: argparse.Namespace) -> BaseAlgorithm:
    common = dict(gamma=0.99, train_freq=1, gradient_steps=1, device=args.device, seed=args.seed)
    env = gym.make(args.env_id)
    if args.algo == "sac":
        return SAC(
            "MlpPolicy",
            env,
            learning_rate=3e-4,
            buffer_size=1_000_000,
            learning_starts=args.learning_starts,
            batch_size=256,
            tau=0.005,
            ent_coef="auto",
            policy_kwargs={"net_arch": [256, 256]},
            **common,
        )
    return DQN(
        "MlpPolicy",
        env,
        learning_rate=1e-3,
        buffer_size=50_000,
        learning_starts=args.learning_starts,
        batch_size=128,
        tau=0.005,
        target_update_interval=1,
        exploration_fraction=0.2,
        exploration_final_eps=0.02,
        policy_kwargs={"net_arch": [256, 256]},
        **common,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=["sac", "dqn"], default="sac")
    parser.add_argument("--env-id", default=None, help="default: Walker2d-v4 / CartPole-v1")
    parser.add_argument("--total-timesteps", type=int, default=None, help="default: 1M / 50k")
    parser.add_argument("--learning-starts", type=int, default=None, help="default: 5000 / 1000")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--eval-frequency", type=int, default=0, help="0 = only at the end")
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--torch-threads", type=int, default=0, help="0 = torch's default")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for a GPU run")
    args = parser.parse_args()
    defaults = {"sac": ("Walker2d-v4", 1_000_000, 5_000), "dqn": ("CartPole-v1", 50_000, 1_000)}
    for name, value in zip(
        ("env_id", "total_timesteps", "learning_starts"), defaults[args.algo], strict=True
    ):
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)

    torch.manual_seed(args.seed)
    run_dir = f"runs/{args.env_id}__sb3_{args.algo}__{args.seed}__{int(time.time())}"
    os.makedirs(run_dir)
    model = make_model(args)
    start = time.time()
    with open(os.path.join(run_dir, "metrics.jsonl"), "w") as metrics:
        callback = ClockAndEval(args, gym.make(args.env_id), metrics)
        model.learn(total_timesteps=args.total_timesteps, callback=callback)
        end = time.time()
        if callback.last_eval is None or args.total_timesteps % (args.eval_frequency or 1):
            callback.evaluate()
    summary = {
        "algorithm": f"sb3_{args.algo}",
        "env_id": args.env_id,
        "seed": args.seed,
        "status": "finished",
        "global_step": model.num_timesteps,
        "train_time_s": end - start,
        "learn_sps": (model.num_timesteps - callback.start_step) / (end - callback.start_time),
        "eval_return_mean": callback.last_eval[0],
        "eval_return_std": callback.last_eval[1],
        "eval_episodes": args.eval_episodes,
    }
    with open(os.path.join(run_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
