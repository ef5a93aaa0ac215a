"""Stable-Baselines3 SAC configured to do the same work per env step as sac_v2.py's defaults.

Twin 256×256 critics, 256×256 actor, batch 256, lr 3e-4, τ 0.005, γ 0.99, one critic and one actor
update per env step after `--learning-starts` random steps, automatic entropy tuning, float32, CPU.
Prints one JSON line: learn-phase SPS (env steps per second from the first update to the end) and,
with --eval-episodes, the deterministic policy's return (seeds as in the softrl scripts).

    python benchmarks/sb3_sac_peer.py --env-id Walker2d-v4 --total-timesteps 3000 --learning-starts 1000
"""

import argparse
import json
import time

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback


class LearnPhaseClock(BaseCallback):
    """Notes the wall time and step count when updates begin (SB3 trains once steps > learning_starts)."""

    def __init__(self, learning_starts: int):
        super().__init__()
        self.learning_starts = learning_starts
        self.start_time, self.start_step = None, None

    def _on_step(self) -> bool:
        if self.start_time is None and self.num_timesteps > self.learning_starts:
            self.start_time, self.start_step = time.time(), self.num_timesteps
        return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-id", default="Walker2d-v4")
    parser.add_argument("--total-timesteps", type=int, default=3000)
    parser.add_argument("--learning-starts", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--eval-episodes", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    env = gym.make(args.env_id)
    model = SAC(
        "MlpPolicy",
        env,
        learning_rate=3e-4,
        buffer_size=1_000_000,
        learning_starts=args.learning_starts,
        batch_size=256,
        tau=0.005,
        gamma=0.99,
        train_freq=1,
        gradient_steps=1,
        ent_coef="auto",
        policy_kwargs={"net_arch": [256, 256]},
        device="cpu",
        seed=args.seed,
        verbose=0,
    )
    clock = LearnPhaseClock(args.learning_starts)
    model.learn(total_timesteps=args.total_timesteps, callback=clock)
    end_time = time.time()
    result = {
        "peer": "stable-baselines3 SAC",
        "env_id": args.env_id,
        "seed": args.seed,
        "global_step": model.num_timesteps,
        "learn_sps": (model.num_timesteps - clock.start_step) / (end_time - clock.start_time),
    }
    if args.eval_episodes:
        eval_env, returns = gym.make(args.env_id), []
        for episode in range(args.eval_episodes):
            obs, _ = eval_env.reset(seed=args.seed + 100_000 + episode)
            done, episode_return = False, 0.0
            while not done:
                action, _ = model.predict(obs, deterministic=True)
                obs, reward, terminated, truncated, _ = eval_env.step(action)
                episode_return += float(reward)
                done = terminated or truncated
            returns.append(episode_return)
        result.update(
            eval_return_mean=float(np.mean(returns)), eval_return_std=float(np.std(returns))
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
