"""Shared test fixtures: a working directory per test and tiny envs whose episodes end at known steps."""

import os
import signal

import gymnasium as gym
import numpy as np
import pytest
import torch


def random_transitions(seed=123, obs_dim=3, act_dim=2, n=32, dtype=torch.float32, device="cpu"):
    """A minibatch as the continuous scripts' replay buffers return it, from its own generator:
    (obs, action in [−1, 1], reward [n, 1], terminated [n, 1] (≈ 30 % ones), next obs)."""
    generator = torch.Generator().manual_seed(seed)
    columns = (
        torch.randn(n, obs_dim, generator=generator),
        torch.rand(n, act_dim, generator=generator) * 2 - 1,
        torch.randn(n, 1, generator=generator),
        (torch.rand(n, 1, generator=generator) < 0.3).float(),
        torch.randn(n, obs_dim, generator=generator),
    )
    return tuple(column.to(dtype=dtype, device=device) for column in columns)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run the test inside an empty directory, so runs/ lands there (and can be checked)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


class CountingEnv(gym.Env):
    """obs = [t, episode]: t counts steps within the episode, episode counts resets.

    Even-numbered episodes *terminate* when t reaches `terminate_at`; odd ones run on until the
    TimeLimit wrapper *truncates* them at `max_episode_steps`. Reward is `reward_scale`·(t + 1), so a
    test knows every transition's true successor, flag and reward.
    """

    def __init__(
        self, terminate_at=3, continuous=True, reward_scale=1.0, render_mode=None
    ):  # fmt: skip
        self.render_mode = render_mode
        self.terminate_at, self.reward_scale = terminate_at, reward_scale
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        if continuous:
            self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        else:
            self.action_space = gym.spaces.Discrete(2)
        self.state = np.zeros(2)  # [t, episode]
        self.state[1] = -1

    def _obs(self):
        return self.state.astype(np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = np.array([0.0, self.state[1] + 1])
        return self._obs(), {}

    def step(self, action):
        self.state = self.state + np.array([1.0, 0.0])
        reward = self.reward_scale * self.state[0]
        terminated = self.state[1] % 2 == 0 and self.state[0] >= self.terminate_at
        return self._obs(), reward, bool(terminated), False, {}


class InterruptingCountingEnv(CountingEnv):
    """CountingEnv that sends its own process `INTERRUPT_AT["signal"]` (default SIGINT, a Ctrl-C)
    on its `INTERRUPT_AT["call"]`-th step."""

    def step(self, action):
        INTERRUPT_AT["calls"] += 1
        if INTERRUPT_AT["calls"] == INTERRUPT_AT["call"]:
            os.kill(os.getpid(), INTERRUPT_AT["signal"])
        return super().step(action)


INTERRUPT_AT = {"call": None, "calls": 0, "signal": signal.SIGINT}
MAX_EPISODE_STEPS = 5
gym.register("softrl-test/Counting-v0", CountingEnv, max_episode_steps=MAX_EPISODE_STEPS)
gym.register(
    "softrl-test/CountingDiscrete-v0",
    CountingEnv,
    max_episode_steps=MAX_EPISODE_STEPS,
    kwargs={"continuous": False},
)
gym.register(
    "softrl-test/InfiniteReward-v0",
    CountingEnv,
    max_episode_steps=MAX_EPISODE_STEPS,
    kwargs={"reward_scale": float("inf")},
)
gym.register(
    "softrl-test/InfiniteRewardDiscrete-v0",
    CountingEnv,
    max_episode_steps=MAX_EPISODE_STEPS,
    kwargs={"reward_scale": float("inf"), "continuous": False},
)
gym.register(
    "softrl-test/InterruptingCounting-v0",
    InterruptingCountingEnv,
    max_episode_steps=MAX_EPISODE_STEPS,
)
gym.register(
    "softrl-test/InterruptingCountingDiscrete-v0",
    InterruptingCountingEnv,
    max_episode_steps=MAX_EPISODE_STEPS,
    kwargs={"continuous": False},
)
