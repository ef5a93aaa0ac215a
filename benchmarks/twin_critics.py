"""Twin critics as one stacked module (sac_v2's TwinSoftQNetwork) or as two plain MLPs, at equal
work: the whole sac_v2 update (critic step, actor step, temperature step, Polyak) on one
minibatch, in alternating rounds, in one process. The scripts keep the stacked module only while
it measures at least 10 % faster here. Results go to benchmarks/results/twin_critics.md.

    python benchmarks/twin_critics.py --env-id Walker2d-v4 --rounds 7
"""

import argparse
import datetime
import os
import statistics
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import sac_v2  # noqa: E402


class TwoMLPs(nn.Module):
    """Q_1 and Q_2 as CleanRL and Spinning Up write them; returns [2, batch] like the stacked one."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int):
        super().__init__()
        self.critics = nn.ModuleList(
            nn.Sequential(
                nn.Linear(obs_dim + act_dim, hidden_dim),
                nn.ReLU(),
                nn.Linear(hidden_dim, hidden_dim),
                nn.ReLU(),
                nn.Linear(hidden_dim, 1),
            )  # fmt: skip
            for _ in range(2)
        )

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, action], dim=-1)
        return torch.stack([critic(x).squeeze(-1) for critic in self.critics])


def learner(critic_class, obs_dim: int, act_dim: int, hidden: int):
    torch.manual_seed(0)
    actor = sac_v2.Actor(obs_dim, act_dim, hidden, -np.ones(act_dim), np.ones(act_dim))
    qf, qf_target = critic_class(obs_dim, act_dim, hidden), critic_class(obs_dim, act_dim, hidden)
    qf_target.load_state_dict(qf.state_dict())
    qf_target.requires_grad_(False)
    log_alpha = torch.zeros((), requires_grad=True)
    optimizers = [torch.optim.Adam(p, lr=3e-4) for p in (qf.parameters(), actor.parameters())]
    optimizers.append(torch.optim.Adam([log_alpha], lr=3e-4))
    return actor, qf, qf_target, log_alpha, *optimizers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-id", default="Walker2d-v4")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--updates", type=int, default=150, help="timed updates per round")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    env = gym.make(args.env_id)
    obs_dim, act_dim, hidden, batch_size = (
        env.observation_space.shape[0],
        env.action_space.shape[0],
        256,
        256,
    )
    generator = torch.Generator().manual_seed(1)
    batch = (
        torch.randn(batch_size, obs_dim, generator=generator),
        torch.rand(batch_size, act_dim, generator=generator) * 2 - 1,
        torch.randn(batch_size, 1, generator=generator),
        torch.zeros(batch_size, 1),
        torch.randn(batch_size, obs_dim, generator=generator),
    )
    contenders = {
        "stacked (TwinSoftQNetwork)": sac_v2.TwinSoftQNetwork,
        "two nn.Sequential": TwoMLPs,
    }
    states = {name: learner(cls, obs_dim, act_dim, hidden) for name, cls in contenders.items()}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for round_index in range(args.rounds):
        for name in list(contenders)[:: 1 if round_index % 2 == 0 else -1]:
            for _ in range(20):  # warm the allocator and caches
                sac_v2.update(batch, *states[name], 0.99, 0.005, -float(act_dim))
            start = time.perf_counter()
            for _ in range(args.updates):
                sac_v2.update(batch, *states[name], 0.99, 0.005, -float(act_dim))
            times[name].append((time.perf_counter() - start) / args.updates * 1e3)
    medians = {name: statistics.median(values) for name, values in times.items()}
    stacked, plain = medians.values()
    lines = [
        f"# Twin critics, stacked or two MLPs: the whole sac_v2 update on {args.env_id}",
        "",
        f"{datetime.date.today().isoformat()}; {os.cpu_count()} cores, {args.threads} torch threads; "
        f"torch {torch.__version__}; batch {batch_size}, 256×256 networks; {args.rounds} "
        f"alternating rounds of {args.updates} updates.",
        "",
        f"Command: `python benchmarks/twin_critics.py --env-id {args.env_id} --rounds {args.rounds}`",
        "",
        "| critics | ms per update, per round | median ms |",
        "|---|---|---|",
        *(
            f"| {name} | {', '.join(f'{v:.2f}' for v in times[name])} | {medians[name]:.2f} |"
            for name in contenders
        ),  # fmt: skip
        "",
        f"Two MLPs take {plain / stacked:.2f}× the stacked module's time per update.",
    ]
    table = "\n".join(lines) + "\n"
    print(table)
    out = ROOT / "benchmarks" / "results" / "twin_critics.md"
    out.write_text(table)
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
