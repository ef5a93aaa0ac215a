"""The learning benchmark's runner (benchmarks/returns.py, on a real local Ray runtime) and its
statistics (benchmarks/report.py, checked against hand-computed IQM, means and pair counts)."""

import importlib.util
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(
        f"softrl_benchmark_{name}", BENCHMARKS / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # Ray pickles the task function by value from this module
    spec.loader.exec_module(module)
    return module


returns = load("returns")
report = load("report")

# Tiny Pendulum runs: 300 random steps, 100 learning steps, an evaluation every 200 steps.
TINY = ("--learning-starts", "300", "--eval-episodes", "2", "--batch-size", "32")
GOOD = returns.Entry("sac_v2", "Pendulum-v1", 400, 200, TINY, seeds=(1,))
BAD = returns.Entry("sac_v2", "Pendulum-v1", 400, 200, TINY, (1,), variant="--gamma 2")


def test_a_grid_runs_on_ray_returns_its_files_and_skips_finished_runs(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(returns, "GRIDS", {"test": [GOOD, BAD]})
    status = returns.main(["--grid", "test", "--out", str(tmp_path), "--jobs", "2"])
    output = capsys.readouterr().out

    assert status == 1  # one run failed ...
    assert "FAILED sac_v2 --gamma 2 Pendulum-v1" in output
    assert "error: --gamma must be in [0, 1), got 2.0" in output  # ... with its last stderr line
    assert "1 runs finished, 1 failed" in output  # ... and the grid went on
    (row,) = returns.read_runs(tmp_path / "runs.jsonl")  # only the finished run is recorded
    assert set(row) == {"script", "variant", "env_id", "budget", "seed", "final_eval_return"} | {
        "curve",
        "wall_s",
        "date",
        "code",
    }
    head = subprocess.run(
        ["git", "-C", str(BENCHMARKS), "rev-parse", "--short=7", "HEAD"],
        capture_output=True,
        text=True,
    )
    if head.returncode == 0:  # a git checkout: the run names the commit its code came from
        assert head.stdout.strip() in row["code"]
    else:
        assert row["code"] is None
    assert (row["script"], row["variant"], row["env_id"], row["budget"], row["seed"]) == GOOD.key(1)
    run_dir = tmp_path / "runs" / "sac_v2" / "Pendulum-v1_400" / "seed1"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["global_step"] == 400
    assert [step for step, _ in row["curve"]] == [200, 400]
    assert row["final_eval_return"] == summary["eval_return_mean"] == row["curve"][-1][1]
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [
        [m["global_step"], m["eval/episodic_return"]]
        for m in metrics
        if "eval/episodic_return" in m
    ]
    assert evals == row["curve"]

    # A re-run of the finished cell starts no Ray runtime and changes nothing.
    monkeypatch.setattr(returns, "GRIDS", {"test": [GOOD]})
    monkeypatch.setattr(returns, "run_grid", lambda *a, **k: pytest.fail("a finished run re-ran"))
    before = (tmp_path / "runs.jsonl").read_text()
    assert returns.main(["--grid", "test", "--out", str(tmp_path)]) == 0
    assert "0 runs to do" in capsys.readouterr().out
    assert (tmp_path / "runs.jsonl").read_text() == before
    assert returns.main(["--list", "--out", str(tmp_path)]) == 0
    assert "sac_v2 Pendulum-v1 0k" in (listing := capsys.readouterr().out)
    assert "1/1 seeds done" in listing


def test_a_runs_code_is_dirty_only_when_the_file_it_reads_changed(tmp_path):
    def git(*arguments: str) -> str:
        identity = ["-c", "user.name=t", "-c", "user.email=t@t"]
        command = ["git", "-C", str(tmp_path), *identity, *arguments]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()

    git("init", "-q")
    for name in ("sac_v2.py", "sac_v1.py"):
        (tmp_path / name).write_text("print(1)\n")
    git("add", ".")
    git("commit", "-qm", "two scripts")
    (tmp_path / "sac_v1.py").write_text("print(2)\n")
    commit = git("rev-parse", "--short", "HEAD")
    assert returns.code_version(tmp_path, "sac_v2.py") == commit  # its script is as committed
    assert returns.code_version(tmp_path, "sac_v1.py") == commit + "-dirty"
    assert returns.code_version(tmp_path) == commit + "-dirty"  # the tree as a whole
    assert returns.code_version(tmp_path / "no-repository-here", "sac_v2.py") is None


def run_script(argv: list[str], cwd: Path) -> list[list[float]]:
    """Run a grid command as a plain process in `cwd`; its eval curve from metrics.jsonl."""
    program, *flags = argv
    cwd.mkdir(parents=True, exist_ok=True)
    environment = os.environ | {"OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(BENCHMARKS.parent / program), *flags], cwd=cwd, env=environment, check=True, capture_output=True)  # fmt: skip
    (metrics,) = cwd.glob("runs/*/metrics.jsonl")
    return returns.eval_curve(metrics.read_text())


def test_a_stopped_run_resumes_from_its_checkpoint_and_ends_at_the_full_budget(
    tmp_path, monkeypatch, capsys
):
    argv = returns.command(GOOD, 1, 1, False)
    assert argv[argv.index("--checkpoint-frequency") + 1] == "200"  # every evaluation here
    unstopped = run_script(argv, tmp_path / "unstopped")
    assert [step for step, _ in unstopped] == [200, 400]

    # An attempt stopped after its checkpoint at step 200, that had run 100 s up to it.
    out = tmp_path / "out"
    scratch = returns.partial_dir(out, GOOD, 1)
    budget = argv.index("--total-timesteps") + 1
    run_script([*argv[:budget], "200", *argv[budget + 1 :]], scratch)
    (checkpoint,) = scratch.glob("runs/*/checkpoint.pt")
    segment_start = checkpoint.stat().st_mtime - 100.0
    ledger = {"credited_s": 0.0, "resumed": [], "segment_start": segment_start}
    (scratch / "segments.json").write_text(json.dumps(ledger))
    monkeypatch.setattr(returns, "GRIDS", {"test": [GOOD]})
    assert returns.main(["--list", "--out", str(out)]) == 0
    assert "0/1 seeds done, seed 1 part-way" in capsys.readouterr().out

    assert returns.main(["--grid", "test", "--out", str(out), "--jobs", "1"]) == 0
    output = capsys.readouterr().out
    assert "1 runs to do (1 resume from a checkpoint)" in output
    assert "resumed at step 200" in output
    (row,) = returns.read_runs(out / "runs.jsonl")
    assert row["resumed"] == [{"step": 200, "code": row["code"]}]
    # The eval at 200 is kept as the stopped attempt logged it; the one at 400 comes from the
    # resumed run (episodes in flight restart on resume, so it need not equal the unstopped one).
    assert row["curve"][0] == unstopped[0]
    assert [step for step, _ in row["curve"]] == [200, 400]
    assert row["wall_s"] >= 100.0  # the stopped attempt's time up to its checkpoint counts
    assert not scratch.exists()  # stored: the partial directory goes


def processes_running(marker: str) -> list[int]:
    """Pids of the processes whose command line holds `marker`."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker in (proc / "cmdline").read_text().replace("\0", " "):
                pids.append(int(proc.name))
        except OSError:
            pass
    return pids


def wait_for(condition, timeout: float = 60.0) -> bool:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            return False
        time.sleep(0.2)
    return True


def stop_like_ctrl_c() -> None:
    raise KeyboardInterrupt


def stop_like_a_scheduler() -> None:  # kill <driver>: SIGTERM, handled as Ctrl-C
    assert signal.getsignal(signal.SIGTERM) is returns.raise_keyboard_interrupt
    os.kill(os.getpid(), signal.SIGTERM)
    pytest.fail("SIGTERM did not stop the grid")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("stop", [stop_like_ctrl_c, stop_like_a_scheduler])
def test_a_stopped_grid_cancels_its_runs_and_each_run_checkpoints_where_it_was(
    stop, tmp_path, monkeypatch, capsys
):
    import ray

    marker = f"--total-timesteps {10**6 + 17}"  # a budget no other process uses
    long_run = returns.Entry("sac_v2", "Pendulum-v1", 10**6 + 17, 10**5, seeds=(1, 2, 3))
    monkeypatch.setattr(returns, "GRIDS", {"test": [long_run]})
    partial = [returns.partial_dir(tmp_path, long_run, seed) for seed in long_run.seeds]

    real_wait, stopped = ray.wait, []

    def stop_once_two_runs_are_training(*args, **kwargs):
        if stopped:  # the driver waits for the runs to save their checkpoints
            return real_wait(*args, **kwargs)
        stopped.append(True)
        # metrics.jsonl is opened once the script has its Ctrl-C/SIGTERM handler
        started = lambda: sum(any(d.glob("runs/*/metrics.jsonl")) for d in partial) == 2  # noqa: E731
        assert wait_for(started), "the runs never started"
        stop()

    monkeypatch.setattr(ray, "wait", stop_once_two_runs_are_training)
    assert returns.main(["--grid", "test", "--out", str(tmp_path), "--jobs", "2"]) == 130
    assert "interrupted: cancelled 3 runs" in capsys.readouterr().out
    assert not ray.is_initialized()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the driver's handler is gone
    assert wait_for(lambda: not processes_running(marker), timeout=30), "a run outlived its task"
    assert not (tmp_path / "runs.jsonl").exists()
    # Each run in flight saved a checkpoint where it was (nothing lost); the third never began.
    assert sum(returns.latest_checkpoint(d) is not None for d in partial) == 2
    assert not any((d / returns.STOP).exists() for d in partial)  # a re-run will run them
    assert returns.main(["--list", "--out", str(tmp_path)]) == 0
    assert "part-way" in capsys.readouterr().out


def test_the_mujoco_grid_is_sac_v2_and_rl_zoo_sb3_sac_over_five_seeds_at_100k():
    cells = {(e.script, e.env_id): e for e in returns.GRIDS["mujoco"]}
    sac_v2_100k = ("sac_v2", 100_000, (1, 2, 3, 4, 5))
    for env_id in ("Hopper-v4", "Walker2d-v4", "HalfCheetah-v4"):
        for script in ("sac_v2", "sb3_sac"):
            entry = cells[(script, env_id)]
            assert entry.budget == 100_000 and entry.seeds == (1, 2, 3, 4, 5)
        assert returns.command(cells[("sb3_sac", env_id)], 1, 1, False)[:3] == [
            "benchmarks/sb3_peer.py",
            "--algo",
            "sac",
        ]
        assert "--learning-starts 10000" in " ".join(cells[("sb3_sac", env_id)].extra)
        assert cells[("sac_v2", env_id)].extra == ()  # sac_v2 at its defaults
    for entry in returns.GRIDS["warmup"]:  # the default sac_v2 run but for RL Zoo's warm-up
        assert (entry.script, entry.budget, entry.seeds, entry.extra) == (*sac_v2_100k, ())
        assert returns.command(entry, 1, 1, False)[-2:] == ["--learning-starts", "10000"]
    paper = {(e.script, e.env_id, e.budget, e.seeds) for e in returns.GRIDS["paper"]}
    assert len(paper) == 8 and {budget for _, _, budget, _ in paper} == {1_000_000}


# ---------------------------------------------------------------------------- the statistics
ENVS = ("Hopper-v4", "Walker2d-v4", "HalfCheetah-v4")


def fake_runs(
    path: Path, returns_by_contender: dict[str, dict[str, list[float]]], budget: int = 100_000
) -> list[dict]:
    """runs.jsonl rows with a two-point curve ending at the given final returns (None: that seed
    did not run); a contender "script --flag value" is that script's variant "--flag value"."""
    rows = []
    for name, per_env in returns_by_contender.items():
        script, _, variant = name.partition(" ")
        for env_id, finals in per_env.items():
            for seed, final in enumerate(finals, start=1):
                if final is None:
                    continue
                curve = [[budget // 2, final / 2], [budget, final]]
                rows.append(
                    {"script": script, "variant": variant, "env_id": env_id, "budget": budget}
                    | {"seed": seed, "final_eval_return": final, "curve": curve}
                    | {"date": "2026-12-04", "code": "abc1234"}
                )
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return rows


def normalized(env_id, value):
    low, high = report.RANDOM_RETURNS[env_id], report.REFERENCE_RETURNS[env_id]
    return (value - low) / (high - low)


def table_row(text: str, first_cells: str) -> list[str]:
    (line,) = [line for line in text.splitlines() if line.startswith(f"| {first_cells} |")]
    return [cell.strip() for cell in line.strip("|").split("|")]


def point_and_interval(cell: str) -> tuple[float, float, float]:
    """ "0.667 [0.250, 0.917]" -> (0.667, 0.25, 0.917)"""
    return tuple(map(float, cell.replace("[", "").replace("]", "").replace(",", "").split()))


def test_report_iqm_mean_and_probability_of_improvement_match_hand_computation(tmp_path):
    rng = np.random.default_rng(0)
    finals = {
        name: {env: list(rng.uniform(0, report.REFERENCE_RETURNS[env], 4).round(1)) for env in ENVS}
        for name in ("sac_v2", "sb3_sac")
    }
    finals["sac_v2"]["Hopper-v4"].append(1000.0)  # a fifth seed on one env only: left out
    fake_runs(tmp_path / "runs.jsonl", finals)
    readme = tmp_path / "README.md"
    readme.write_text("before\n<!-- mujoco-table -->\nold\n<!-- /mujoco-table -->\nafter\n")
    text = report.write_report(tmp_path / "runs.jsonl", tmp_path, reps=200, readme=readme)

    for name in ("sac_v2", "sb3_sac"):
        scores = sorted(normalized(env, v) for env in ENVS for v in finals[name][env][:4])
        iqm = statistics.mean(scores[3:9])  # 12 scores: drop the lowest 3 and the highest 3
        runs, iqm_cell, mean_cell = table_row(text, name)[1:]
        assert runs == "4 × 3"
        for cell, point in ((iqm_cell, iqm), (mean_cell, statistics.mean(scores))):
            value, low, high = point_and_interval(cell)
            assert value == pytest.approx(point, abs=6e-4)
            assert low <= value <= high

    cells = table_row(text, "sac_v2 vs sb3_sac")
    envs_in_table = sorted(ENVS)
    per_env = []
    for env_id, cell in zip(envs_in_table, cells[2:], strict=True):
        x, y = finals["sac_v2"][env_id][:4], finals["sb3_sac"][env_id][:4]
        wins = sum((a > b) + 0.5 * (a == b) for a, b in itertools.product(x, y))
        per_env.append(wins / 16)
        assert float(cell) == pytest.approx(per_env[-1], abs=6e-3)
    assert float(cells[1].split()[0]) == pytest.approx(statistics.mean(per_env), abs=6e-4)
    for figure in ("rliable_mujoco_100k_profiles.png", "rliable_mujoco_100k_curves.png"):
        assert (tmp_path / figure).stat().st_size > 10_000

    # README's block: every run's return and normalized score, the grid's progress, the same tables
    block = readme.read_text()
    assert block.startswith("before\n<!-- mujoco-table -->\n") and "old" not in block
    assert block.endswith("\n<!-- /mujoco-table -->\nafter\n")

    def rows_of(first_cells: str) -> list[list[str]]:  # the block has two tables per contender
        lines = [line for line in block.splitlines() if line.startswith(f"| {first_cells} |")]
        return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]

    hopper = rows_of("sac_v2")[0][1 + list(ENVS).index("Hopper-v4")]
    expected = [f"s{seed}: {value:.1f} ({normalized('Hopper-v4', value):.3f})"
                for seed, value in enumerate(finals["sac_v2"]["Hopper-v4"], start=1)]  # fmt: skip
    assert hopper == ", ".join(expected)
    assert rows_of("sac_v1") == [["sac_v1", "–", "–", "–"]]
    assert "25 of 45 runs done. Ran 2026-12-04 on commit abc1234" in block  # 2 × 3 × 4 + 1
    for first_cells in ("sac_v2", "sb3_sac", "sac_v2 vs sb3_sac"):
        assert rows_of(first_cells)[-1] == table_row(text, first_cells)


def test_report_compares_a_variant_run_on_some_envs_with_its_script_and_peer_per_env(tmp_path):
    variant = "sac_v2 --learning-starts 10000"
    finals = {
        "sac_v2": {env: [900.0, 1000.0, 1100.0] for env in ENVS},
        "sb3_sac": {env: [950.0, 1050.0, 1150.0] for env in ENVS},
        variant: {"Hopper-v4": [1020.0, 1120.0, 1200.0, 800.0]},  # one env, four seeds
    }
    fake_runs(tmp_path / "runs.jsonl", finals)
    readme = tmp_path / "README.md"
    readme.write_text("<!-- mujoco-table -->\n<!-- /mujoco-table -->\n")
    text = report.write_report(tmp_path / "runs.jsonl", tmp_path, reps=200, readme=readme)

    for baseline in ("sac_v2", "sb3_sac"):
        x, y = finals[variant]["Hopper-v4"], finals[baseline]["Hopper-v4"]
        wins = sum((a > b) + 0.5 * (a == b) for a, b in itertools.product(x, y)) / 12
        cells = table_row(text, f"{variant} vs {baseline}")
        assert cells[1] == "Hopper-v4 (4 vs 3)"
        value, low, high = point_and_interval(cells[2])
        assert value == pytest.approx(wins, abs=6e-4) and low <= value <= high
    # Only where it ran, and never among the all-env aggregates (it lacks two envs).
    assert f"| {variant} vs sac_v2 | Walker2d" not in text
    assert not any(line.startswith(f"| {variant} | ") for line in text.splitlines())
    # Seeded bootstraps: a second report on the same runs has the same intervals.
    assert report.write_report(tmp_path / "runs.jsonl", tmp_path, reps=200) == text
    block = readme.read_text()
    assert "18 of 45 runs done" in block  # the grid's own runs, not the variant's four
    # README keeps to the grid's contenders; the variant's comparisons are in returns.md, linked.
    assert variant not in block and "[returns.md](benchmarks/results/returns.md)" in block


def test_report_per_env_table_is_mean_std_and_every_seed(tmp_path):
    rows = fake_runs(tmp_path / "runs.jsonl", {"sac_v2": {"Pendulum-v1": [-150.0, -170.0, -220.0]}})
    text = report.write_report(tmp_path / "runs.jsonl", tmp_path)
    cells = table_row(text, "Pendulum-v1")
    finals = [row["final_eval_return"] for row in rows]
    assert cells[1:4] == ["sac_v2", "100,000", "3"]
    assert cells[4] == f"{statistics.mean(finals):.1f} ± {statistics.stdev(finals):.1f}"
    assert cells[5] == "1: -150.0, 2: -170.0, 3: -220.0"
    assert "rliable" not in text  # no reference returns for Pendulum: no normalized statistics
    assert (tmp_path / "returns_Pendulum-v1_cpu.png").exists()


def test_report_reads_the_1m_grid_per_seed_with_its_mean_against_the_papers_level(tmp_path):
    finals = {"Hopper-v4": [3000.0, None, 3600.0], "Walker2d-v4": [4000.0, 5000.0, 6000.0]}
    fake_runs(tmp_path / "runs.jsonl", {"sac_v2": finals}, budget=1_000_000)
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- reproduce-table -->\n<!-- /reproduce-table -->\nend\n")
    report.write_report(tmp_path / "runs.jsonl", tmp_path, reps=200, readme=readme)
    block = report.readme_block_text(readme.read_text(), "reproduce-table")
    hopper, walker, cheetah = (table_row(block, env_id) for env_id in report.ANCHORS_1M)
    assert hopper[1:6] == ["3000.0", "–", "3600.0", "3300.0", f"{3300 / 3250:.2f}"]
    assert walker[1:6] == ["4000.0", "5000.0", "6000.0", "5000.0", f"{5000 / 4800:.2f}"]
    assert cheetah[1:6] == ["–", "–", "–", "–", "–"]
    assert hopper[6:] == ["≈ 3,250", "2310.5 ± 342.8", "3542.2 ± 51.5", "2326 ± 1130"]
    assert "5 of 9 runs done. Ran 2026-12-04 on commit abc1234" in block
    assert readme.read_text().endswith("<!-- /reproduce-table -->\nend\n")
    assert (tmp_path / "returns_Walker2d-v4_mujoco_1000k.png").stat().st_size > 10_000
    # Curve links only to the envs that have runs (no dead link to a figure not drawn yet).
    assert "(benchmarks/results/returns_Walker2d-v4_mujoco_1000k.png)" in block
    assert "HalfCheetah-v4_mujoco_1000k" not in block


def test_readmes_generated_blocks_are_what_report_makes_of_runs_jsonl():
    """README's tables of results come from runs.jsonl through report.py, never by hand."""
    readme = (BENCHMARKS.parent / "README.md").read_text()
    rows = report.load_runs(BENCHMARKS / "results" / "runs.jsonl")
    for name, block in report.readme_blocks(rows).items():
        assert report.readme_block_text(readme, name) == block, (
            f"README's {name} block is stale: python benchmarks/report.py --readme README.md"
        )


def test_report_probability_of_improvement_is_rliables_own():
    from rliable import metrics

    rng = np.random.default_rng(0)
    for runs_x, runs_y, envs in ((5, 5, 3), (4, 3, 1), (2, 6, 2)):
        # Rounded scores, so that ties (counted ½) occur.
        x, y = rng.normal(size=(runs_x, envs)).round(1), rng.normal(size=(runs_y, envs)).round(1)
        expected = metrics.probability_of_improvement(x, y)
        assert report.probability_of_improvement(x, y) == pytest.approx(expected, abs=1e-12)
