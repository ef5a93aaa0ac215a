"""Learning-quality benchmark: a grid of (script, env, budget, seeds) run as parallel processes.

Every run is a fresh process in its own directory under benchmarks/runs/, so a re-run skips the
runs that already finished (their summary.json says "finished"). When all runs are done, the
script reads each run's metrics.jsonl and writes, per env, a row per script to
benchmarks/results/returns.md (final deterministic-eval return, mean ± std over seeds) and a
learning-curve PNG (eval return vs env steps, mean over seeds with min-max band).

    pip install -r benchmarks/requirements.txt
    python benchmarks/returns.py --jobs 2                  # the whole grid (hours on 2 cores)
    python benchmarks/returns.py --jobs 2 --only Pendulum  # entries whose name contains a word
    python benchmarks/returns.py --jobs 2 --only Hopper --seeds 1  # one seed of each entry
    python benchmarks/returns.py --list                    # show the grid and what is done
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "benchmarks" / "runs"
RESULTS = ROOT / "benchmarks" / "results"


@dataclass
class Entry:
    script: str  # a root script, or "sb3_sac" / "sb3_dqn" for a Stable-Baselines3 peer
    env_id: str
    budget: int  # env steps
    eval_frequency: int
    extra: list[str] = field(default_factory=list)
    seeds: tuple[int, ...] = (1, 2, 3)
    variant: str = ""  # a flag that distinguishes two entries of one script on one env

    @property
    def label(self) -> str:
        return f"{self.script} {self.variant}".strip()

    @property
    def name(self) -> str:
        return f"{self.label} {self.env_id} {self.budget // 1000}k"


# The CPU budgets of the benchmark (paper-scale 1M-step runs need a bigger machine; see README).
PENDULUM = ["--learning-starts", "1000"]
GRID = [
    Entry("sac_v2", "Pendulum-v1", 15_000, 2_500, PENDULUM),
    Entry("sac_v2", "Pendulum-v1", 15_000, 2_500, PENDULUM, variant="--bf16"),
    Entry("sac_v1", "Pendulum-v1", 15_000, 2_500, PENDULUM),
    Entry("sql_continuous", "Pendulum-v1", 15_000, 2_500),
    Entry("sb3_sac", "Pendulum-v1", 15_000, 2_500, PENDULUM),
    Entry("sql_discrete", "CartPole-v1", 50_000, 5_000),
    Entry("sql_discrete", "CartPole-v1", 50_000, 5_000, variant="--double-soft-q"),
    Entry("sb3_dqn", "CartPole-v1", 50_000, 5_000),
    Entry("sql_discrete", "Acrobot-v1", 50_000, 5_000),
    Entry("sql_discrete", "Acrobot-v1", 50_000, 5_000, variant="--double-soft-q"),
    Entry("sql_continuous", "MultiGoal-v0", 20_000, 2_000),
    Entry("sac_v2", "Hopper-v4", 100_000, 10_000),
    Entry("sb3_sac", "Hopper-v4", 100_000, 10_000),
]


def command(entry: Entry, seed: int) -> list[str]:
    if entry.script.startswith("sb3_"):  # sb3_sac, sb3_dqn: benchmarks/sb3_peer.py --algo ...
        program = [str(ROOT / "benchmarks" / "sb3_peer.py"), "--algo", entry.script[4:]]
    else:
        program = [str(ROOT / f"{entry.script}.py"), "--no-cuda"]
    flags = ["--env-id", entry.env_id, "--total-timesteps", str(entry.budget), "--seed", str(seed)]
    flags += ["--eval-frequency", str(entry.eval_frequency), *entry.extra]
    return [sys.executable, *program, *flags, *entry.variant.split()]


def run_dir(entry: Entry, seed: int) -> Path:
    script = entry.script + entry.variant.replace("--", "_").replace(" ", "")
    return RUNS / script / f"{entry.env_id}_{entry.budget}" / f"seed{seed}"


def find_summary(directory: Path) -> dict | None:
    """The newest finished run's summary in a run directory, or None."""
    for path in sorted(directory.glob("runs/*/summary.json"), reverse=True):
        summary = json.loads(path.read_text())
        if summary.get("status") == "finished":
            return {**summary, "metrics": path.parent / "metrics.jsonl"}
    return None


def run_one(entry: Entry, seed: int, threads: int) -> tuple[str, float, str]:
    directory = run_dir(entry, seed)
    directory.mkdir(parents=True, exist_ok=True)
    start = time.time()
    # Parallel runs share the cores: each gets its share of threads, or torch's default of one
    # thread per core makes them oversubscribe the CPU and all of them crawl.
    environment = os.environ | {"OMP_NUM_THREADS": str(threads)}
    with open(directory / "stdout.log", "w") as log:
        process = subprocess.run(
            command(entry, seed), cwd=directory, stdout=log, stderr=log, env=environment
        )
    status = "ok" if process.returncode == 0 else f"FAILED (exit {process.returncode})"
    return f"{entry.name} seed {seed}", time.time() - start, status


def eval_curve(metrics_path: Path) -> list[tuple[int, float]]:
    curve = []
    for line in metrics_path.read_text().splitlines():
        row = json.loads(line)
        if "eval/episodic_return" in row:
            curve.append((row["global_step"], row["eval/episodic_return"]))
    return curve


def report(entries: list[Entry]) -> str:
    """Results table (markdown) and one learning-curve PNG per env."""
    by_env: dict[str, list[tuple[Entry, list[dict]]]] = {}
    for entry in entries:
        summaries = [find_summary(run_dir(entry, seed)) for seed in entry.seeds]
        by_env.setdefault(entry.env_id, []).append((entry, [s for s in summaries if s]))
    lines = [
        "# Returns at CPU budgets",
        "",
        f"Written {datetime.date.today().isoformat()} by `python benchmarks/returns.py`; deterministic"
        " evaluation policy on a separate env, 10 episodes per evaluation; ± is the std over seeds."
        " Runs share the CPU (`--jobs`), so their speed is not reported here: that is"
        " `benchmarks/speed.py`.",
        "",
        "| env | script | budget | seeds | final eval return | per seed |",
        "|---|---|---|---|---|---|",
    ]
    for env_id, rows in by_env.items():
        for entry, summaries in rows:
            finals = [s["eval_return_mean"] for s in summaries]
            if not finals:
                lines.append(f"| {env_id} | {entry.label} | {entry.budget:,} | 0 | not run | |")
                continue
            mean = statistics.mean(finals)
            std = statistics.stdev(finals) if len(finals) > 1 else 0.0
            per_seed = ", ".join(f"{value:.1f}" for value in finals)
            lines.append(
                f"| {env_id} | {entry.label} | {entry.budget:,} | {len(finals)} | "
                f"{mean:.1f} ± {std:.1f} | {per_seed} |"
            )
        if any(summaries for _, summaries in rows):
            plot_env(env_id, rows)
    lines += ["", "Learning curves: `benchmarks/results/returns_<env>.png`."]
    return "\n".join(lines) + "\n"


def plot_env(env_id: str, rows: list[tuple[Entry, list[dict]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for entry, summaries in rows:
        curves = [eval_curve(s["metrics"]) for s in summaries]
        curves = [c for c in curves if c]
        if not curves:
            continue
        length = min(len(c) for c in curves)
        steps = [step for step, _ in curves[0][:length]]
        values = [[value for _, value in c[:length]] for c in curves]
        mean = [statistics.mean(column) for column in zip(*values, strict=True)]
        low = [min(column) for column in zip(*values, strict=True)]
        high = [max(column) for column in zip(*values, strict=True)]
        axes.plot(steps, mean, label=f"{entry.label} ({len(curves)} seeds)")
        axes.fill_between(steps, low, high, alpha=0.2)
    axes.set(title=env_id, xlabel="env steps", ylabel="eval return (deterministic policy)")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(RESULTS / f"returns_{env_id}.png", dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    parser.add_argument("--only", default="", help="run entries whose name contains this text")
    parser.add_argument("--seeds", type=int, nargs="+", help="run only these of each entry's seeds")
    parser.add_argument("--list", action="store_true", help="show the grid and what is done")
    args = parser.parse_args()

    entries = [e for e in GRID if args.only in e.name]
    pending = [(e, s) for e in entries for s in e.seeds if not find_summary(run_dir(e, s))]
    pending = [(e, s) for e, s in pending if not args.seeds or s in args.seeds]
    if args.list:
        for entry in entries:
            done = sum(find_summary(run_dir(entry, seed)) is not None for seed in entry.seeds)
            print(f"{entry.name:40s} {done}/{len(entry.seeds)} seeds done")
        return
    missing = {e.script for e, _ in pending if not e.script.startswith("sb3_")}
    missing = {name for name in missing if not (ROOT / f"{name}.py").exists()}
    if missing:
        print(f"skipping scripts that do not exist yet: {', '.join(sorted(missing))}")
        pending = [(e, s) for e, s in pending if e.script not in missing]
    print(f"{len(pending)} runs to do with {args.jobs} parallel jobs")
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_one, entry, seed, threads) for entry, seed in pending]
        for done, future in enumerate(as_completed(futures), start=1):
            name, seconds, status = future.result()
            print(f"[{done}/{len(pending)}] {name}: {status} in {seconds / 60:.1f} min", flush=True)

    RESULTS.mkdir(parents=True, exist_ok=True)
    table = report(GRID)  # the whole grid, so a partial re-run never drops rows
    (RESULTS / "returns.md").write_text(table)
    print("\n" + table)


if __name__ == "__main__":
    main()
