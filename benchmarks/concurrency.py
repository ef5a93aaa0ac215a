"""Learn-phase SPS per run when several runs share the machine, by --torch-threads setting.

A researcher often starts several seeds at once. Each configuration here starts N copies of one
script at the same moment (seeds 1..N, identical work), waits for all, and reads every run's
learn_sps from its summary.json. The table gives the median SPS per run and the machine's total
(the sum over the N runs), for each --torch-threads value and each N. Results go to
benchmarks/results/concurrency_<script>_<env>.md (and are printed).

    python benchmarks/concurrency.py --script sac_v2 --env-id Pendulum-v1
    python benchmarks/concurrency.py --script sql_discrete --env-id CartPole-v1
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def run_together(command: list[str], copies: int) -> list[float]:
    """Start `copies` runs of `command` at once (seeds 1..copies); return their learn_sps."""
    with tempfile.TemporaryDirectory() as scratch:
        processes = [
            subprocess.Popen(
                [*command, "--seed", str(seed), "--exp-name", f"copy{seed}"],
                cwd=scratch,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            for seed in range(1, copies + 1)
        ]
        for process in processes:
            _, stderr = process.communicate()
            if process.returncode != 0:
                sys.exit(f"benchmark run failed: {' '.join(command)}\n{stderr[-2000:]}")
        summaries = sorted(Path(scratch).glob("runs/*/summary.json"))
        return [json.loads(path.read_text())["learn_sps"] for path in summaries]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--script", default="sac_v2")
    parser.add_argument("--env-id", default="Pendulum-v1")
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1, 0])
    parser.add_argument("--runs", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--learning-starts", type=int, default=1000)
    parser.add_argument("--learn-steps", type=int, default=600, help="env steps with updates")
    args = parser.parse_args()

    total = args.learning_starts + args.learn_steps
    command = [sys.executable, str(ROOT / f"{args.script}.py"), "--env-id", args.env_id]
    command += ["--total-timesteps", str(total), "--learning-starts", str(args.learning_starts)]
    command += ["--eval-frequency", "0", "--eval-episodes", "1", "--no-cuda"]
    rows = []
    for threads in args.threads:
        for copies in args.runs:
            sps = run_together([*command, "--torch-threads", str(threads)], copies)
            rows.append((threads, copies, statistics.median(sps), sum(sps)))
            print(
                f"--torch-threads {threads}, {copies} at once: median {rows[-1][2]:.1f} SPS per run"
            )

    lines = [
        f"# Runs sharing the machine: {args.script} on {args.env_id}",
        "",
        f"{datetime.date.today().isoformat()}; {os.cpu_count()} cores; torch {torch.__version__}; "
        f"CPU. Each run: {args.learning_starts} random steps, then {args.learn_steps} steps with "
        "one update each; SPS counts the latter. --torch-threads 0 is the scripts' default "
        f"(torch would use {torch.get_num_threads()} here without it).",
        "",
        f"Command: `python benchmarks/concurrency.py --script {args.script} --env-id {args.env_id} "
        f"--threads {' '.join(map(str, args.threads))} --runs {' '.join(map(str, args.runs))}`",
        "",
        "| --torch-threads | runs at once | median SPS per run | total SPS of the machine |",
        "|---|---|---|---|",
    ]
    lines += [f"| {t} | {n} | {median:.1f} | {total_sps:.1f} |" for t, n, median, total_sps in rows]
    table = "\n".join(lines) + "\n"
    print("\n" + table)
    out = ROOT / "benchmarks" / "results" / f"concurrency_{args.script}_{args.env_id}.md"
    out.write_text(table)
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
