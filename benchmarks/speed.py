"""Learn-phase throughput of softrl scripts beside their nearest peer, measured in one run.

Each round runs every contender once, in a fresh process, in alternating order, with identical
work per env step; the table reports each contender's per-round SPS, the median over rounds and
the ratio of medians. Alternating rounds spread the machine's drift and noise over all contenders.
Results go to benchmarks/results/speed_<script>_<env>.md (and are printed).

Peers: Stable-Baselines3 SAC beside the SAC-family scripts (equal work for sac_v2; sac_v1 also
trains a V network and sql_continuous a sampler with SVGD, so their rows show what that costs),
SB3 DQN with one update per step and the same network beside sql_discrete.

    pip install -r benchmarks/requirements.txt
    python benchmarks/speed.py --script sac_v2 --env-id Walker2d-v4 --rounds 3
    python benchmarks/speed.py --script sql_discrete --env-id CartPole-v1 --rounds 5
    python benchmarks/speed.py --device cuda --compile   # sac_v2 on HalfCheetah-v4, GPU: eager,
                                                         # --compile, --compile --cudagraphs, SB3 SAC
"""

import argparse
import datetime
import itertools
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


PEER = {"sac_v2": "sac", "sac_v1": "sac", "sql_continuous": "sac", "sql_discrete": "dqn"}


def contenders(
    script: str,
    env_id: str,
    learning_starts: int,
    total: int,
    compiled: bool = False,
    threads: int | None = None,
    device: str = "cpu",
) -> dict[str, list]:
    """name -> command line; every command writes runs/<run>/summary.json with its learn_sps."""
    common = ["--env-id", env_id, "--total-timesteps", str(total)]
    common += ["--learning-starts", str(learning_starts), "--eval-frequency", "0"]
    common += ["--eval-episodes", "1"]  # the final evaluation is not timed; keep it short
    peer = [sys.executable, str(ROOT / "benchmarks" / "sb3_peer.py"), "--algo", PEER[script]]
    peer += ["--device", device]
    softrl = [sys.executable, str(ROOT / f"{script}.py"), *common, "--log-frequency", "100"]
    commands = {f"softrl {script}": softrl}
    # Every contender gets the threads torch gives SB3 by default (the softrl scripts' own
    # default is smaller, for runs that share the machine: see benchmarks/concurrency.py).
    threads = threads or torch.get_num_threads()
    cuda_flag = "--cuda" if device == "cuda" else "--no-cuda"
    commands[f"softrl {script}"] += [cuda_flag, "--torch-threads", str(threads)]
    if compiled:  # the update and the acting torch.compile'd; on a GPU also CUDA-graphed
        commands[f"softrl {script} --compile"] = [*commands[f"softrl {script}"], "--compile"]
        if device == "cuda":
            graphed = [*commands[f"softrl {script} --compile"], "--cudagraphs"]
            commands[f"softrl {script} --compile --cudagraphs"] = graphed
    if script == "sql_discrete" and threads != 1:  # SB3 at its default threads and at one thread
        commands["SB3 DQN, 1 thread"] = [*peer, *common, "--torch-threads", "1"]
    name = "SB3 DQN" if script == "sql_discrete" else "SB3 SAC"
    commands[name] = [*peer, *common, "--torch-threads", str(threads)]
    return commands


WARM_UP_UPDATES = 500  # learn steps left out of the steady SPS: compilation, allocator, caches


def steady_sps(rows: list[dict], learn_start: int) -> float | None:
    """SPS from the first logged step past WARM_UP_UPDATES learn steps to the last logged step.

    The scripts log charts/SPS = (step − learn_start) / seconds since learning began, so each row
    gives the seconds to its step; two rows give the rate between them (LeanRL's protocol: SPS
    after the warm-up, here with --compile's compilation inside the warm-up)."""
    times = [
        (row["global_step"], (row["global_step"] - learn_start) / row["charts/SPS"])
        for row in rows
        if row.get("charts/SPS") and row["global_step"] >= learn_start + WARM_UP_UPDATES
    ]
    if len(times) < 2:
        return None
    (first_step, first_time), (last_step, last_time) = times[0], times[-1]
    return (last_step - first_step) / (last_time - first_time)


def run_once(command: list[str], learn_start: int) -> tuple[float, float]:
    """Run one contender in a scratch directory; return its SPS over the whole learn phase and
    after the warm-up (the same for a contender that logs no charts/SPS: the SB3 peers)."""
    with tempfile.TemporaryDirectory() as scratch:
        process = subprocess.run(command, cwd=scratch, capture_output=True, text=True)
        if process.returncode != 0:
            sys.exit(f"benchmark command failed: {' '.join(command)}\n{process.stderr[-2000:]}")
        (summary,) = Path(scratch).glob("runs/*/summary.json")
        metrics = summary.parent / "metrics.jsonl"
        rows = [json.loads(line) for line in metrics.read_text().splitlines()]
        learn_sps = json.loads(summary.read_text())["learn_sps"]
        return learn_sps, steady_sps(rows, learn_start) or learn_sps


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


def mlp_forward_flops(sizes: list[int], batch: int) -> int:
    """Matrix-product FLOPs (2 per multiply-add) of one MLP forward pass over a batch."""
    return sum(2 * batch * fan_in * fan_out for fan_in, fan_out in itertools.pairwise(sizes))


def sql_discrete_update_flops(
    obs_dim: int, n_actions: int, hidden: int = 256, batch: int = 128
) -> float:
    """One soft Q-learning update: the target network on s′, the online network forward on s
    and backward (weight gradients, plus input gradients of the layers above the first)."""
    sizes = [obs_dim, hidden, hidden, n_actions]
    forward = mlp_forward_flops(sizes, batch)
    return float(3 * forward + mlp_forward_flops(sizes[1:], batch))


def update_flops(script: str, env: gym.Env) -> float | None:
    """Analytic FLOPs of one update where derived (sac_v2, sql_discrete), else None."""
    obs_dim = env.observation_space.shape[0]
    if script == "sac_v2":
        return sac_update_flops(obs_dim, env.action_space.shape[0])
    if script == "sql_discrete":
        return sql_discrete_update_flops(obs_dim, int(env.action_space.n))
    return None


def matmul_peak_gflops(size: int = 256, repeats: int = 2000, device: str = "cpu") -> float:
    """Best float32 GFLOP/s of a size×size×size matrix product, the update's typical shape."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    best = float("inf")
    for _ in range(5):
        torch.cuda.synchronize() if device == "cuda" else None
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        torch.cuda.synchronize() if device == "cuda" else None
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


WORK = {
    "sac_v2": "one update of twin 256×256 critics and a 256×256 actor, batch 256, automatic α",
    "sac_v1": "sac_v1: twin 256×256 Qs, a 256×256 V and a 256×256 actor, batch 256; "
    "SB3 SAC: twin critics with targets and an actor, batch 256 (no V network)",
    "sql_continuous": "sql_continuous: a 128×128 Q with 16 uniform value particles per next "
    "state and an SVGD update of a 128×128 sampler over 16 particles per state, batch 128 (the "
    "paper's sizes); SB3 SAC: twin 256×256 critics and actor, batch 256 (the nearest peer, not "
    "equal work)",
    "sql_discrete": "one update of a 256×256 Q network with a target network, batch 128, "
    "Polyak τ 0.005 every update",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--script", choices=list(PEER), default="sac_v2")
    parser.add_argument(
        "--env-id", default=None, help="default: Walker2d-v4 (HalfCheetah-v4 on cuda) / CartPole-v1"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--learning-starts", type=int, default=1000)
    parser.add_argument("--learn-steps", type=int, default=2000, help="env steps with updates")
    parser.add_argument("--compile", action="store_true", help="add the script with --compile")
    parser.add_argument("--threads", type=int, help="torch threads of every contender")
    parser.add_argument("--tag", default="", help="suffix of the results file's name")
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default="cpu", help="cuda: LeanRL's GPU protocol"
    )
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda, but torch sees no CUDA device here")
    if args.env_id is None:
        gpu_default = "HalfCheetah-v4" if args.device == "cuda" else "Walker2d-v4"  # LeanRL's env
        args.env_id = "CartPole-v1" if args.script == "sql_discrete" else gpu_default

    total = args.learning_starts + args.learn_steps
    flops = update_flops(args.script, gym.make(args.env_id))
    peak = matmul_peak_gflops(device=args.device)
    print(f"float32 matmul peak here: {peak:.0f} GFLOP/s", end="")
    print(f"; one update: {flops / 1e9:.4f} GFLOP" if flops else "")
    commands = contenders(
        args.script, args.env_id, args.learning_starts, total, args.compile, args.threads,
        args.device,
    )  # fmt: skip
    names = list(commands)
    sps: dict[str, list[float]] = {name: [] for name in names}  # after the warm-up
    whole: dict[str, list[float]] = {name: [] for name in names}  # the whole learn phase
    for round_index in range(args.rounds):
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            learn_sps, steady = run_once(commands[name], args.learning_starts + 1)
            sps[name].append(steady)
            whole[name].append(learn_sps)
            print(
                f"round {round_index + 1}/{args.rounds}: {name:>28} {steady:7.1f} SPS "
                f"({learn_sps:.1f} over the whole learn phase)"
            )

    medians = {name: statistics.median(values) for name, values in sps.items()}
    baseline = medians[names[-1]]
    date = datetime.date.today().isoformat()
    lines = [
        f"# Learn-phase SPS: {args.script} on {args.env_id}",
        "",
        f"{date}; {cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__}; float32, "
        f"{torch.cuda.get_device_name() if args.device == 'cuda' else 'CPU'}; "
        f"every contender with {args.threads or torch.get_num_threads()} torch threads unless its "
        "name says otherwise.",
        f"Work per env step: {WORK[args.script]}. Each run: {args.learning_starts} random steps, "
        f"then {args.learn_steps} steps with updates. SPS counts the steps after the first "
        f"{WARM_UP_UPDATES} updates (LeanRL's protocol; --compile compiles inside them); the "
        f"last column counts every update, compilation included. {args.rounds} alternating "
        "rounds.",
        "",
        f"Command: `python benchmarks/speed.py --script {args.script} --env-id {args.env_id} "
        f"--rounds {args.rounds} --learning-starts {args.learning_starts} "
        f"--learn-steps {args.learn_steps}"
        f"{' --compile' if args.compile else ''}{f' --threads {args.threads}' if args.threads else ''}"
        f"{f' --tag {args.tag}' if args.tag else ''}"
        f"{' --device cuda' if args.device == 'cuda' else ''}`",
        "",
    ]
    if flops:
        lines += [
            f"Ceiling: one update is {flops / 1e9:.4f} GFLOP of matrix products; the float32 "
            f"matmul peak measured in this run (256×256×256, {args.device}) is {peak:.0f} GFLOP/s, so "
            f"no float32 implementation can exceed {peak * 1e9 / flops:.0f} SPS here. '% of "
            "ceiling' = update FLOPs × SPS ÷ peak (env stepping and acting count as lost time).",
            "",
        ]
    lines += [
        f"| contender | SPS per round | median SPS | ratio to {names[-1]} | % of ceiling "
        "| median SPS, whole learn phase |",
        "|---|---|---|---|---|---|",
    ]
    for name in names:
        rounds = ", ".join(f"{value:.1f}" for value in sps[name])
        ratio = medians[name] / baseline
        ceiling = f"{100 * flops * medians[name] / (peak * 1e9):.1f}%" if flops else "n/a"
        lines.append(
            f"| {name} | {rounds} | {medians[name]:.1f} | {ratio:.2f}× | {ceiling} "
            f"| {statistics.median(whole[name]):.1f} |"
        )
    table = "\n".join(lines) + "\n"
    print("\n" + table)
    suffix = f"{'_cuda' if args.device == 'cuda' else ''}{args.tag}"
    out = ROOT / "benchmarks" / "results" / f"speed_{args.script}_{args.env_id}{suffix}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
