"""Learn-phase throughput of softrl scripts beside their nearest peer, measured in one run.

Each round runs every contender once, in a fresh process, in alternating order, with identical
work per env step; the table reports each contender's per-round SPS, the median over rounds and
the ratio of medians. Alternating rounds spread the machine's drift and noise over all contenders.
Results go to benchmarks/results/speed_<env>.md (and are printed).

    pip install -r benchmarks/requirements.txt
    python benchmarks/speed.py --env-id Walker2d-v4 --rounds 3
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import torch

ROOT = Path(__file__).resolve().parents[1]


def contenders(env_id: str, learning_starts: int, total: int) -> dict[str, list[str]]:
    """name -> command line; every command writes runs/<run>/summary.json with its learn_sps."""
    common = ["--env-id", env_id, "--total-timesteps", str(total)]
    common += ["--learning-starts", str(learning_starts), "--eval-frequency", "0"]
    common += ["--eval-episodes", "1"]  # the final evaluation is not timed; keep it short
    return {
        "softrl sac_v2": [sys.executable, str(ROOT / "sac_v2.py"), *common, "--no-cuda"],
        "SB3 SAC": [sys.executable, str(ROOT / "benchmarks" / "sb3_sac_peer.py"), *common],
    }


def run_once(command: list[str]) -> float:
    """Run one contender in a scratch directory and return its learn-phase SPS."""
    with tempfile.TemporaryDirectory() as scratch:
        process = subprocess.run(command, cwd=scratch, capture_output=True, text=True)
        if process.returncode != 0:
            sys.exit(f"benchmark command failed: {' '.join(command)}\n{process.stderr[-2000:]}")
        (summary,) = Path(scratch).glob("runs/*/summary.json")
        return json.loads(summary.read_text())["learn_sps"]


def sac_update_flops(obs_dim: int, act_dim: int, hidden: int = 256, batch: int = 256) -> float:
    """Matrix-product FLOPs (2 per multiply-add) of one SAC update: critic step + actor step.

    Actor forward F_a (two hidden layers and a mean/log-std head), twin critics' forward F_c.
    The update runs the actor forward twice (target a′, actor loss), the critics forward three
    times (target, critic loss, actor loss); backward costs one forward for the weight gradients
    plus input gradients of every layer that has a trainable layer below it (critic loss: layers
    2-3; actor loss through the critics: all layers, w.r.t. the action; actor: layers 2-3).
    """
    q_in = obs_dim + act_dim
    actor_forward = 2 * batch * (obs_dim * hidden + hidden * hidden + hidden * 2 * act_dim)
    critics_forward = 2 * 2 * batch * (q_in * hidden + hidden * hidden + hidden)
    critic_input_grads = 2 * 2 * batch * (hidden * hidden + hidden)
    actor_input_grads = 2 * batch * (hidden * hidden + hidden * 2 * act_dim)
    forwards = 2 * actor_forward + 3 * critics_forward
    backwards = critics_forward + critic_input_grads  # critic loss
    backwards += critics_forward  # actor loss, through the frozen critics to the action
    backwards += actor_forward + actor_input_grads  # actor loss, into the actor
    return float(forwards + backwards)


def matmul_peak_gflops(size: int = 256, repeats: int = 2000) -> float:
    """Best float32 GFLOP/s of a size×size×size matrix product, the update's typical shape."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = min(best, (time.perf_counter() - start) / repeats)
    return 2 * size**3 / best / 1e9


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-id", default="Walker2d-v4")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--learning-starts", type=int, default=1000)
    parser.add_argument("--learn-steps", type=int, default=2000, help="env steps with updates")
    args = parser.parse_args()

    total = args.learning_starts + args.learn_steps
    env = gym.make(args.env_id)
    flops = sac_update_flops(env.observation_space.shape[0], env.action_space.shape[0])
    peak = matmul_peak_gflops()
    print(f"one update: {flops / 1e9:.3f} GFLOP; float32 matmul peak here: {peak:.0f} GFLOP/s")
    commands = contenders(args.env_id, args.learning_starts, total)
    names = list(commands)
    sps: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(args.rounds):
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            sps[name].append(run_once(commands[name]))
            print(f"round {round_index + 1}/{args.rounds}: {name:>15} {sps[name][-1]:7.1f} SPS")

    medians = {name: statistics.median(values) for name, values in sps.items()}
    baseline = medians[names[-1]]
    date = datetime.date.today().isoformat()
    lines = [
        f"# Learn-phase SPS on {args.env_id}",
        "",
        f"{date}; {cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; float32, CPU.",
        f"Work per env step: one update of twin 256×256 critics and a 256×256 actor, batch 256, "
        f"automatic α. Each run: {args.learning_starts} random steps, then {args.learn_steps} "
        f"steps with updates; SPS counts the latter. {args.rounds} alternating rounds.",
        "",
        f"Command: `python benchmarks/speed.py --env-id {args.env_id} --rounds {args.rounds} "
        f"--learning-starts {args.learning_starts} --learn-steps {args.learn_steps}`",
        "",
        f"Ceiling: one update is {flops / 1e9:.3f} GFLOP of matrix products; the float32 matmul "
        f"peak measured in this run (256×256×256) is {peak:.0f} GFLOP/s, so no implementation "
        f"can exceed {peak * 1e9 / flops:.0f} SPS here. '% of ceiling' = update FLOPs × SPS ÷ peak "
        "(env stepping and acting count as lost time).",
        "",
        "| contender | SPS per round | median SPS | ratio to " + names[-1] + " | % of ceiling |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        rounds = ", ".join(f"{value:.1f}" for value in sps[name])
        ratio = medians[name] / baseline
        ceiling = 100 * flops * medians[name] / (peak * 1e9)
        lines.append(f"| {name} | {rounds} | {medians[name]:.1f} | {ratio:.2f}× | {ceiling:.0f}% |")
    table = "\n".join(lines) + "\n"
    print("\n" + table)
    out = ROOT / "benchmarks" / "results" / f"speed_{args.env_id}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
