"""Learning-quality benchmark: grids of (script, env, budget, seeds), run as Ray tasks.

Every run is one Ray task that starts the script as a fresh process in a scratch directory and
returns its summary.json and metrics.jsonl to this driver, so the workers need no shared file
system. The driver writes them under `<out>/runs/...` and appends one line per finished run to
`<out>/runs.jsonl`:

    {"script", "variant", "env_id", "budget", "seed", "final_eval_return",
     "curve": [[step, eval_return], ...], "wall_s", "date", "code"}  (+ EVAL_DIAGNOSTICS)

("code": the commit the run's code came from, `git describe --always` when the run started, with
"-dirty" when the one file the run reads — its script, or sb3_peer.py — differed from it.) That
file is the benchmark's raw data: it is committed, a re-run skips every run it already holds, and every table and figure (`benchmarks/report.py`) is computed from it alone.

A grid outlives its driver: on a local runtime each softrl run works in `<out>/partial/...` and
writes a checkpoint at every tenth of its budget (at least every evaluation), so a grid stopped
by Ctrl-C, a killed machine or the end of a working session resumes its unfinished runs where
their last checkpoint left them (networks, optimizers, buffer, RNG and counters come back
exactly; the episodes in flight restart). Such a run's row adds `"resumed": [{"step", "code"}, ...]`, one entry per
restart, and its wall_s sums the segments up to the work that counted. SB3 peers cannot resume:
they start over. On a cluster the workers share no disk with the driver, and runs start over too.

    pip install -r requirements.txt -r benchmarks/requirements.txt
    python benchmarks/returns.py --list                       # the grids and what is done
    python benchmarks/returns.py --grid mujoco                # local Ray runtime, --jobs = cores
    python benchmarks/returns.py --grid cpu --only Pendulum   # entries whose name has a word
    python benchmarks/returns.py --grid mujoco --seeds 1 2    # only these seeds of each entry
    python benchmarks/returns.py --grid paper --address auto  # on an existing Ray cluster

On a cluster (`--address auto` on its head node, or `--address ray://head:10001` from outside)
Ray ships this repository to the workers as the tasks' working directory; each worker needs the
packages of requirements.txt and benchmarks/requirements.txt. `--gpus-per-run 0.25` gives each run
a quarter of a GPU and lets the scripts use CUDA. Ctrl-C (or SIGTERM) cancels the runs not yet
finished: the finished ones stay in runs.jsonl, and each softrl run in flight saves a checkpoint
at its current step before it exits, where a re-run resumes it. (`ray stop` stops every Ray
runtime on its machine, a running grid's local one too: its runs go back to their last
periodic checkpoint.)
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
STOP = "STOP"  # a file the driver puts in a local run's partial directory to stop it cleanly
# What a final evaluation measures beside the return, where a script reports it (sql_continuous on
# MultiGoal-v0: the goals that 50 rollouts of the stochastic sampler reach); a row keeps it.
EVAL_DIAGNOSTICS = ("goals_reached", "rollouts_at_goal")


@dataclass(frozen=True)
class Entry:
    """One cell of a grid: a script on an env at a budget, over seeds."""

    script: str  # a root script, or "sb3_sac" / "sb3_dqn" for benchmarks/sb3_peer.py
    env_id: str
    budget: int  # env steps
    eval_frequency: int
    extra: tuple[str, ...] = ()  # flags every run of the entry gets
    seeds: tuple[int, ...] = (1, 2, 3)
    variant: str = ""  # flags that tell two entries of one script on one env apart

    @property
    def label(self) -> str:
        return f"{self.script} {self.variant}".strip()

    @property
    def name(self) -> str:
        return f"{self.label} {self.env_id} {self.budget // 1000}k"

    def key(self, seed: int) -> tuple:
        return (self.script, self.variant, self.env_id, self.budget, seed)

    @property
    def resumable(self) -> bool:
        """softrl scripts checkpoint and resume; the SB3 peers cannot."""
        return not self.script.startswith("sb3_")


FIVE_SEEDS = (1, 2, 3, 4, 5)
PENDULUM = ("--learning-starts", "1000")
# RL Zoo's SAC configuration for MuJoCo (hyperparams/sac.yml): SB3's defaults, learning_starts 1e4.
RL_ZOO_MUJOCO = ("--learning-starts", "10000")
MUJOCO_ENVS = ("Hopper-v4", "Walker2d-v4", "HalfCheetah-v4")

GRIDS: dict[str, list[Entry]] = {
    # What 2 CPU cores finish in an hour or two: the small envs every script is meant to solve.
    "cpu": [
        Entry("sac_v2", "Pendulum-v1", 15_000, 2_500, PENDULUM),
        Entry("sac_v1", "Pendulum-v1", 15_000, 2_500, PENDULUM),
        Entry("sql_continuous", "Pendulum-v1", 15_000, 2_500),
        Entry("sb3_sac", "Pendulum-v1", 15_000, 2_500, PENDULUM),
        Entry("sql_discrete", "CartPole-v1", 50_000, 5_000),
        Entry("sql_discrete", "CartPole-v1", 50_000, 5_000, variant="--double-soft-q"),
        Entry("sb3_dqn", "CartPole-v1", 50_000, 5_000),
        Entry("sql_discrete", "Acrobot-v1", 50_000, 5_000),
        Entry("sql_discrete", "Acrobot-v1", 50_000, 5_000, variant="--double-soft-q"),
        Entry("sql_continuous", "MultiGoal-v0", 20_000, 2_000),
    ],
    # Sample efficiency at 100k env steps: each script at its defaults against SB3 SAC as RL Zoo
    # runs it. Seed-major order, so a grid cut short still has every cell's first seeds.
    "mujoco": [
        Entry(script, env_id, 100_000, 10_000, extra, seeds)
        for script, extra, seeds in (
            ("sac_v2", (), FIVE_SEEDS),
            ("sb3_sac", RL_ZOO_MUJOCO, FIVE_SEEDS),
            ("sac_v1", (), FIVE_SEEDS),
        )
        for env_id in MUJOCO_ENVS
    ],
    # Issue 14's check of why sac_v2 trails SB3 SAC on HalfCheetah and Hopper at 100k: sac_v2 with
    # RL Zoo's 10k-step warm-up instead of its own 5k, every other flag at its default (it measured
    # no better: the reading under README's MuJoCo table).
    "warmup": [
        Entry("sac_v2", env_id, 100_000, 10_000, (), FIVE_SEEDS, variant="--learning-starts 10000")
        for env_id in ("HalfCheetah-v4", "Hopper-v4")
    ],
    # Issue 25: does sac_v2 reproduce the SAC v2 paper at its scale? sac_v2 at its defaults (eager:
    # --compile does not pay on a 2-core CPU), 1M env steps, evaluated every 10k over 10 episodes,
    # 3 seeds; seed-major, so a grid cut short still covers all three envs.
    "reproduce": [
        Entry("sac_v2", env_id, 1_000_000, 10_000)
        for env_id in ("Hopper-v4", "Walker2d-v4", "HalfCheetah-v4")
    ],
    # The papers' scale: 1M env steps, 5 seeds. About 40 CPU-hours per script; one command on a
    # Ray cluster (README), not run on the 2-core development machine.
    "paper": [
        Entry(script, env_id, 1_000_000, 10_000, extra, FIVE_SEEDS)
        for script in ("sac_v2", "sac_v1")
        for env_id in ("HalfCheetah-v4", "Walker2d-v4", "Hopper-v4", "Humanoid-v4")
        # The SAC v1 paper's reward scale: 5 on these envs (sac_v1's default), 20 on Humanoid.
        for extra in [
            ("--reward-scale", "20") if (script, env_id) == ("sac_v1", "Humanoid-v4") else ()
        ]
    ],
}


def command(entry: Entry, seed: int, threads: int, use_gpu: bool) -> list[str]:
    """The run's command line, with the program relative to the repository root."""
    if entry.script.startswith("sb3_"):  # sb3_sac, sb3_dqn: benchmarks/sb3_peer.py --algo ...
        program = ["benchmarks/sb3_peer.py", "--algo", entry.script[4:]]
        program += ["--device", "cuda" if use_gpu else "cpu"]
    else:
        program = [f"{entry.script}.py"] + ([] if use_gpu else ["--no-cuda"])
    flags = ["--env-id", entry.env_id, "--total-timesteps", str(entry.budget), "--seed", str(seed)]
    flags += ["--eval-frequency", str(entry.eval_frequency), "--torch-threads", str(threads)]
    if entry.resumable:
        flags += ["--checkpoint-frequency", str(max(entry.eval_frequency, entry.budget // 10))]
    return [*program, *flags, *entry.extra, *entry.variant.split()]


def partial_dir(out: Path, entry: Entry, seed: int) -> Path:
    """Where a local run works until it finishes: a stopped grid finds its checkpoint here."""
    return (
        out / "partial" / entry.label.replace(" --", "_") / f"{entry.env_id}_{entry.budget}_{seed}"
    )


def latest_checkpoint(scratch: Path) -> Path | None:
    checkpoints = sorted(
        scratch.glob("runs/*/checkpoint.pt"), key=lambda path: path.stat().st_mtime
    )
    return checkpoints[-1] if checkpoints else None


def checkpoint_step(checkpoint: Path) -> int:
    """The env step a checkpoint was saved at (memory-mapped: the replay buffer is not read)."""
    import torch

    saved = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    return int(saved["loop"]["global_step"])


def stop_with_parent() -> None:
    """Run in the child before it starts: the kernel sends it SIGTERM if its Ray worker dies
    (Linux), so a cancelled or killed task leaves no orphaned training run behind. A softrl script
    takes SIGTERM as Ctrl-C: it saves a checkpoint at its current step and exits, and the grid's
    re-run resumes it there; an SB3 peer just stops."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def code_version(repo: Path, program: str | None = None) -> str | None:
    """`git describe --always` of the repository, "-dirty" when `program` (without it: any
    tracked file) differs from that commit; None where there is no git. A run reads one file
    only: the root scripts import no other, nor does sb3_peer.py."""

    def git(*arguments: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(repo), *arguments], capture_output=True, text=True, timeout=30)  # fmt: skip

    try:
        if program is None:
            return git("describe", "--always", "--dirty").stdout.strip() or None
        commit = git("describe", "--always").stdout.strip()
        if not commit:
            return None
        changed = git("diff", "--quiet", "HEAD", "--", program).returncode == 1
    except (OSError, subprocess.TimeoutExpired):
        return None
    return commit + "-dirty" * changed


def execute_run(
    argv: list[str], threads: int, repo: str | None, shipped: str | None, scratch: str | None = None
) -> dict:
    """Ray task: run one command and return what it wrote.

    `repo` is the repository on this machine; None on a cluster, where Ray's working directory
    (the repository it shipped, whose code version is `shipped`) is the task's current directory.
    `scratch` is the run's partial directory (local runtime): the run works there and resumes
    from the checkpoint a stopped earlier attempt left (SB3 peers leave none); None: a temporary
    directory.
    """
    root = Path(repo or os.getcwd())
    code = code_version(root, argv[0]) if repo else shipped  # what this run's process will read
    if scratch is None:
        with tempfile.TemporaryDirectory(prefix="softrl-run-") as temporary:
            return run_command(root, argv, threads, Path(temporary)) | {"code": code}
    scratch_dir, ledger_path = Path(scratch), Path(scratch) / "segments.json"
    if (scratch_dir / STOP).exists():  # the grid was stopped before this run began
        return {"returncode": None, "wall_s": 0.0, "code": code, "error": "stopped"}
    checkpoint, now = latest_checkpoint(scratch_dir), time.time()
    ledger = {"credited_s": 0.0, "resumed": [], "segment_start": now}
    if checkpoint is None:  # nothing to resume: start clean
        shutil.rmtree(scratch_dir, ignore_errors=True)
    else:
        if ledger_path.exists():
            ledger = json.loads(ledger_path.read_text())
        # The stopped attempt's time counts up to its last checkpoint; the work after it is lost.
        ledger["credited_s"] += max(0.0, checkpoint.stat().st_mtime - ledger["segment_start"])
        ledger["resumed"].append({"step": checkpoint_step(checkpoint), "code": code})
        argv = [*argv, "--resume", str(checkpoint.resolve())]
    scratch_dir.mkdir(parents=True, exist_ok=True)
    ledger["segment_start"] = now
    ledger_path.write_text(json.dumps(ledger))
    result = run_command(root, argv, threads, scratch_dir) | {"code": code}
    result["wall_s"] += ledger["credited_s"]
    if ledger["resumed"]:
        result["resumed"] = ledger["resumed"]
    return result  # the driver removes the partial directory once runs.jsonl holds the run


def run_command(root: Path, argv: list[str], threads: int, cwd: Path) -> dict:
    """Run a script as a fresh process in `cwd`; return its exit status, files or last error.
    A file `cwd/STOP` (the driver's Ctrl-C) sends the run SIGTERM: a softrl script saves a
    checkpoint at its current step and exits."""
    program, *flags = argv
    environment = os.environ | {"OMP_NUM_THREADS": str(threads), "MUJOCO_GL": "egl"}
    start = time.time()
    # Output goes to files, not pipes: a run whose worker died can still print while it saves
    # its checkpoint. Appended, so a resumed run's log holds every attempt.
    with open(cwd / "stdout.log", "a") as stdout, open(cwd / "stderr.log", "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(root / program), *flags],
            cwd=cwd,
            env=environment,
            preexec_fn=stop_with_parent,
            start_new_session=True,  # not in the worker's process group, which Ray may kill
            stdout=stdout,
            stderr=stderr,
        )
        while process.poll() is None:
            if (cwd / STOP).exists():
                process.terminate()
                process.wait()
            time.sleep(0.5)
    result = {"returncode": process.returncode, "wall_s": time.time() - start}
    output = (cwd / "stdout.log").read_text()
    summaries = sorted(cwd.glob("runs/*/summary.json"))
    if process.returncode != 0 or not summaries:
        # The last line that says something (tyro draws its usage errors in a box).
        lines = [line.strip(" │╭╮╰╯─") for line in (cwd / "stderr.log").read_text().splitlines()]
        lines = [line for line in lines if line and not line.startswith("For full helptext")]
        last = lines[-1] if lines else f"exit {process.returncode}, nothing on stderr"
        return result | {"error": last, "stdout": output[-4000:]}
    run_dir = summaries[-1].parent
    return result | {
        "summary": (run_dir / "summary.json").read_text(),
        "metrics": (run_dir / "metrics.jsonl").read_text(),
        "stdout": output,
    }


def eval_curve(metrics_text: str) -> list[list[float]]:
    """[[env step, mean deterministic-eval return], ...] from a run's metrics.jsonl."""
    curve = []
    for line in metrics_text.splitlines():
        row = json.loads(line)
        if "eval/episodic_return" in row:
            curve.append([row["global_step"], row["eval/episodic_return"]])
    return curve


def read_runs(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_key(row: dict) -> tuple:
    return (row["script"], row["variant"], row["env_id"], row["budget"], row["seed"])


def store_run(out: Path, entry: Entry, seed: int, result: dict) -> dict:
    """Write a finished run's files under out/runs/ and append its line to out/runs.jsonl."""
    summary = json.loads(result["summary"])
    directory = out / "runs" / entry.label.replace(" --", "_") / f"{entry.env_id}_{entry.budget}"
    directory = directory / f"seed{seed}"
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("summary.json", "metrics.jsonl"):
        (directory / name).write_text(result[name.split(".")[0]])
    (directory / "stdout.log").write_text(result["stdout"])
    row = {
        "script": entry.script,
        "variant": entry.variant,
        "env_id": entry.env_id,
        "budget": entry.budget,
        "seed": seed,
        "final_eval_return": summary["eval_return_mean"],
        "curve": eval_curve(result["metrics"]),
        "wall_s": round(result["wall_s"], 1),
        "date": datetime.date.today().isoformat(),
        "code": result["code"],
    }
    row |= {key: summary[key] for key in EVAL_DIAGNOSTICS if key in summary}
    if "resumed" in result:
        row["resumed"] = result["resumed"]
    with open(out / "runs.jsonl", "a") as runs:
        runs.write(json.dumps(row) + "\n")
    return row


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def run_grid(
    pending: list[tuple[Entry, int]],
    out: Path,
    jobs: int,
    address: str | None = None,
    threads: int = 1,
    gpus_per_run: float = 0.0,
    progress_every: float = 300.0,
    stop_timeout: float = 120.0,
) -> tuple[int, int]:
    """Run (entry, seed) pairs as Ray tasks; returns (finished, failed)."""
    import ray

    on_cluster = address is not None
    previous_handler = signal.getsignal(signal.SIGTERM)
    ray.init(
        address=address or "local",  # "local": a new runtime, even beside another one
        num_cpus=None if on_cluster else jobs * threads,
        include_dashboard=False,
        # A local worker that dies (a cancelled task, the driver stopped) would SIGKILL its child
        # run; with this off the run gets stop_with_parent's SIGTERM and checkpoints first.
        _system_config=None if on_cluster else {"kill_child_processes_on_worker_exit": False},
        log_to_driver=False,
        # A cluster gets this repository as every task's working directory (no shared disk).
        runtime_env={"working_dir": str(ROOT), "excludes": [".git", "runs", "benchmarks/results"]}
        if on_cluster
        else None,
    )
    # A scheduler's (or `kill`'s) SIGTERM stops the grid as Ctrl-C does: cancel, keep, resume.
    # Set after ray.init, whose own handler would end the driver at once.
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    # Workers cannot import this file as a module: ship the task function by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[execute_run.__module__])
    remote = ray.remote(num_cpus=threads, num_gpus=gpus_per_run, max_retries=0)(execute_run)
    repo = None if on_cluster else str(ROOT)
    shipped = code_version(ROOT) if on_cluster else None  # what ray.init packed up just now
    tasks = {}  # Ray task -> (entry, seed, its partial directory or None)
    for entry, seed in pending:
        argv = command(entry, seed, threads, gpus_per_run > 0)
        # A local run works in its partial directory (a cluster's workers cannot see it).
        scratch = None if on_cluster else partial_dir(out, entry, seed)
        task = remote.remote(argv, threads, repo, shipped, scratch and str(scratch))
        tasks[task] = (entry, seed, scratch)
    slots = max(1, int(ray.cluster_resources().get("CPU", jobs) // threads))
    finished = failed = 0
    durations: list[float] = []
    start = last_progress = time.time()
    try:
        while tasks:
            ready, _ = ray.wait(list(tasks), num_returns=1, timeout=progress_every)
            for task in ready:
                entry, seed, scratch = tasks.pop(task)
                result = ray.get(task)
                if "error" in result:  # a failed run keeps its checkpoint: a re-run resumes it
                    failed += 1
                    print(f"FAILED {entry.name} seed {seed}: {result['error']}", flush=True)
                    continue
                finished += 1
                durations.append(result["wall_s"])
                row = store_run(out, entry, seed, result)
                if scratch is not None:
                    shutil.rmtree(scratch)
                resumed = ", resumed at step " + ", ".join(
                    str(restart["step"]) for restart in row.get("resumed", [])
                )
                print(
                    f"done   {entry.name} seed {seed}: eval return "
                    f"{row['final_eval_return']:.1f} in {minutes(result['wall_s'])}"
                    f"{resumed if 'resumed' in row else ''}",
                    flush=True,
                )
            if tasks and (ready or time.time() - last_progress >= progress_every):
                last_progress = time.time()
                running = min(len(tasks), slots)
                left = len(tasks) - running
                eta = ""
                if durations:
                    per_run = sum(durations) / len(durations)
                    eta = f", ETA {minutes(per_run * len(tasks) / slots)}"
                print(
                    f"[{finished + failed}/{len(pending)} done, {running} running, {left} left"
                    f"{eta}; {minutes(time.time() - start)} so far]",
                    flush=True,
                )
    except KeyboardInterrupt:
        print(
            f"\nstopping the runs in flight; softrl runs save a checkpoint ({stop_timeout:.0f} s at most)"
        )
        stop_files = [scratch / STOP for _, _, scratch in tasks.values() if scratch is not None]
        for stop_file in stop_files:
            stop_file.parent.mkdir(parents=True, exist_ok=True)
            stop_file.touch()
        _, still_going = ray.wait(list(tasks), num_returns=len(tasks), timeout=stop_timeout)
        for task in still_going:  # (cancelling a finished task can crash Ray's driver)
            ray.cancel(task, force=True)
        for stop_file in stop_files:  # a re-run resumes these runs
            stop_file.unlink()
            if not any(stop_file.parent.iterdir()):
                stop_file.parent.rmdir()
        print(
            f"interrupted: cancelled {len(tasks)} runs; {finished} finished runs are kept, "
            "and a re-run resumes the softrl runs from their checkpoints"
        )
        raise
    finally:
        ray.shutdown()
        signal.signal(signal.SIGTERM, previous_handler)
    return finished, failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", choices=sorted(GRIDS), default="cpu")
    parser.add_argument("--only", default="", help="run entries whose name contains this text")
    parser.add_argument("--seeds", type=int, nargs="+", help="run only these of each entry's seeds")
    parser.add_argument("--list", action="store_true", help="show the grids and what is done")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="local runs at once")
    parser.add_argument("--address", help="an existing Ray cluster: auto, or ray://host:port")
    parser.add_argument(
        "--threads-per-run", type=int, default=1, help="CPUs (torch threads) a run gets"
    )
    parser.add_argument("--gpus-per-run", type=float, default=0.0, help="GPU fraction a run gets")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where runs.jsonl and runs/ go")
    args = parser.parse_args(argv)
    args.out = args.out.resolve()  # the runs' partial directories are handed to other processes

    done = {run_key(row) for row in read_runs(args.out / "runs.jsonl")}
    if args.list:
        for grid, entries in GRIDS.items():
            print(f"grid {grid}:")
            for entry in entries:
                seeds = [seed for seed in entry.seeds if entry.key(seed) in done]
                stopped = [
                    seed
                    for seed in entry.seeds
                    if seed not in seeds
                    and latest_checkpoint(partial_dir(args.out, entry, seed)) is not None
                ]
                part_way = f", seed {' '.join(map(str, stopped))} part-way" if stopped else ""
                print(f"  {entry.name:42s} {len(seeds)}/{len(entry.seeds)} seeds done{part_way}")
        return 0
    entries = [entry for entry in GRIDS[args.grid] if args.only in entry.name]
    seeds = sorted({seed for entry in entries for seed in entry.seeds})
    pending = [
        (entry, seed)
        for seed in seeds
        for entry in entries
        if seed in entry.seeds
        and entry.key(seed) not in done
        and (not args.seeds or seed in args.seeds)
    ]
    resuming = sum(
        latest_checkpoint(partial_dir(args.out, entry, seed)) is not None for entry, seed in pending
    )
    print(
        f"grid {args.grid}: {len(pending)} runs to do ({resuming} resume from a checkpoint), "
        f"{args.jobs} at once",
        flush=True,
    )
    if not pending:
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        finished, failed = run_grid(
            pending, args.out, args.jobs, args.address, args.threads_per_run, args.gpus_per_run
        )
    except KeyboardInterrupt:
        return 130
    print(f"grid {args.grid}: {finished} runs finished, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
