"""Tests of the run harness that the four deep-RL scripts share, run through each script's real
main() and command line: the copies are one text, and every script's algorithm plugs into it."""

import copy
import importlib
import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import INTERRUPT_AT

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["sac_v2", "sac_v1", "sql_discrete", "sql_continuous"]
MARKER = "# ==== run harness"
TIME_KEYS = {"train_time_s", "learn_sps", "run_dir"}
# A run small enough for a unit test that still performs gradient updates, per script.
TINY = {
    "sac_v2": {"env_id": "Pendulum-v1", "hidden_dim": 64},
    "sac_v1": {"env_id": "Pendulum-v1", "hidden_dim": 64},
    "sql_continuous": {"env_id": "Pendulum-v1", "hidden_dim": 32},
    "sql_discrete": {"env_id": "CartPole-v1", "hidden_sizes": (64, 64)},
}
COMMON = dict(
    total_timesteps=400, learning_starts=200, batch_size=32, buffer_size=10_000,
    eval_episodes=1, eval_frequency=0, log_frequency=100, cuda=False,
)  # fmt: skip
DISCRETE = {"sql_discrete": "Discrete"}


def conftest_env(script: str, name: str) -> str:
    """The test env `name` of conftest.py, in the action space the script needs."""
    return f"softrl-test/{name}{DISCRETE.get(script, '')}-v0"


def settings(script: str, **overrides) -> dict:
    return {**COMMON, **TINY[script], **overrides}


def tiny_args(script: str, **overrides):
    module = importlib.import_module(script)
    return module.Args(**settings(script, **overrides))


def as_argv(values: dict) -> list[str]:
    """The command line that sets these Args fields (tyro's spelling)."""
    argv = []
    for name, value in values.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else f"--no-{flag[2:]}")
        elif isinstance(value, tuple):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return argv


def read_summary(run_dir) -> dict:
    return json.loads((Path(run_dir) / "summary.json").read_text())


def read_metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def load(run_dir, name="model.pt") -> dict:
    return torch.load(Path(run_dir) / name, map_location="cpu", weights_only=True)


def assert_same_tensors(first: dict, second: dict) -> None:
    """Every tensor of two saved model dicts is bit-identical."""
    for name, item in first.items():
        if isinstance(item, torch.Tensor):
            assert torch.equal(item, second[name]), name
        elif isinstance(item, dict) and name not in ("args", "report"):
            for key, tensor in item.items():
                assert torch.equal(tensor, second[name][key]), f"{name}.{key}"


# ------------------------------------------------------------------------------------------------
# One text
# ------------------------------------------------------------------------------------------------
def harness_text(script: str) -> str:
    lines = (ROOT / f"{script}.py").read_text().splitlines(keepends=True)
    marks = [i for i, line in enumerate(lines) if line.startswith(MARKER)]
    assert len(marks) == 1, f"{script}.py needs exactly one '{MARKER}' line"
    return "".join(lines[marks[0] :])


def test_the_run_harness_is_byte_identical_in_the_four_scripts():
    texts = {script: harness_text(script) for script in SCRIPTS}
    assert len(set(texts.values())) == 1, "copy the harness of sac_v2.py into the others"


def test_requirements_ask_for_the_gymnasium_that_has_autoreset_modes():
    """Issue 12, bug 6: the harness uses gym.vector.AutoresetMode, new in gymnasium 1.1."""
    requirements = (ROOT / "requirements.txt").read_text().splitlines()
    (line,) = [line for line in requirements if line.startswith("gymnasium")]
    lower = re.search(r">=\s*([\d.]+)", line).group(1)
    assert tuple(int(part) for part in lower.split(".")[:2]) >= (1, 1), line


# ------------------------------------------------------------------------------------------------
# What a run writes
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("script", SCRIPTS)
def test_smoke_writes_summary_metrics_model_and_console(in_tmp, script, capsys):
    module = importlib.import_module(script)
    result = module.main(tiny_args(script, save_model=True, eval_frequency=200))
    summary = read_summary(result["run_dir"])
    required = {
        "algorithm", "env_id", "seed", "status", "global_step", "gradient_updates",
        "policy_updates", "train_time_s", "learn_sps", "episodic_return_last",
        "eval_return_mean", "eval_return_std", "eval_episodes", "alpha",
    }  # fmt: skip
    assert required <= summary.keys()
    assert summary["algorithm"] == script and summary["status"] == "finished"
    assert summary["global_step"] == 400
    assert summary["gradient_updates"] == 200  # one per env step after the 200 warm-up steps
    assert summary["policy_updates"] == (0 if script == "sql_discrete" else 200)  # no actor there
    assert summary["learn_sps"] > 0 and summary["eval_episodes"] == 1
    assert summary == {k: v for k, v in result.items() if k != "run_dir"}
    assert summary["args"]["batch_size"] == 32 and summary["args"]["env_id"] == summary["env_id"]
    rows = read_metrics(result["run_dir"])
    keys = set().union(*rows)
    assert {"charts/episodic_return", "charts/episodic_length", "charts/SPS"} <= keys
    assert {"losses/qf_loss", "losses/alpha", "eval/episodic_return_std"} <= keys
    assert [row["global_step"] for row in rows if "eval/episodic_return" in row] == [200, 400]
    model = load(result["run_dir"])
    assert model["algorithm"] == script and model["args"]["env_id"] == summary["env_id"]
    # the console tells the story: one line per evaluation, a final line with the eval return
    lines = capsys.readouterr().out.strip().splitlines()
    evaluations = [line for line in lines if line.startswith("eval  step")]
    assert len(evaluations) == 2 and all(line.endswith("over 1 episode") for line in evaluations)
    assert lines[-1].startswith("finished: 400 steps")
    assert f"eval return {summary['eval_return_mean']:.1f}" in lines[-1]


def test_torch_threads_default_leaves_cores_for_other_runs(in_tmp):
    """Issue 13: --torch-threads 0 means half the cores (at least 1, at most 4); a number is kept."""
    import sac_v2

    threads_before = torch.get_num_threads()
    try:
        sac_v2.main(tiny_args("sac_v2", total_timesteps=210))
        assert torch.get_num_threads() == max(1, min(4, (os.cpu_count() or 1) // 2))
        sac_v2.main(tiny_args("sac_v2", total_timesteps=210, torch_threads=3))
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(threads_before)


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_a_compiled_run_trains(in_tmp, script):
    """--compile runs the same training loop: every update happens and the policy is evaluated."""
    result = importlib.import_module(script).main(tiny_args(script, compile=True))
    assert result["status"] == "finished" and result["gradient_updates"] == 200
    assert torch.isfinite(torch.tensor(result["eval_return_mean"]))
    if script == "sac_v2":  # autotuned α has moved down from 1
        assert result["alpha"] < 1.0


@pytest.mark.parametrize("script", SCRIPTS)
def test_cudagraphs_without_cuda_is_one_notice_then_a_compiled_run(in_tmp, script, capsys):
    """--cudagraphs needs CUDA; on a CPU it says so in one line and runs as --compile (the warm-up
    only here, so nothing compiles: a compiled run is test_a_compiled_run_trains)."""
    module = importlib.import_module(script)
    result = module.main(tiny_args(script, cudagraphs=True, total_timesteps=200))
    assert result["status"] == "finished" and result["gradient_updates"] == 0
    notices = [line for line in capsys.readouterr().out.splitlines() if "cudagraphs" in line]
    assert notices == ["notice: --cudagraphs needs CUDA; running with --compile alone"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_same_seed_same_result_and_other_seed_differs(in_tmp, script):
    module = importlib.import_module(script)
    first, second = module.main(tiny_args(script)), module.main(tiny_args(script))
    third = module.main(tiny_args(script, seed=2))
    strip = lambda summary: {k: v for k, v in summary.items() if k not in TIME_KEYS}  # noqa: E731
    assert strip(first) == strip(second)
    assert strip(first) != strip(third)


# ------------------------------------------------------------------------------------------------
# Checkpoints and resume
# ------------------------------------------------------------------------------------------------
CASES = [(script, TINY[script]["env_id"]) for script in SCRIPTS] + [("sac_v2", "Hopper-v4")]


def tensors_in(item) -> list[torch.Tensor]:
    """Every tensor in a nest of dicts, lists and tuples."""
    if isinstance(item, torch.Tensor):
        return [item]
    children = item.values() if isinstance(item, dict) else item
    if isinstance(item, dict | list | tuple):
        return [tensor for child in children for tensor in tensors_in(child)]
    return []


@pytest.mark.parametrize("script, env_id", CASES)
def test_resume_restores_every_learned_and_counted_state(
    in_tmp, script, env_id, monkeypatch, capsys
):
    """After --resume, every restored tensor and counter equals the checkpoint's (weights, targets,
    optimizers, α, buffer rows, torch's RNG, steps), and the run ends at the full step count."""
    module = importlib.import_module(script)
    run = dict(env_id=env_id, total_timesteps=300, learning_starts=100, save_model=True, num_envs=2)
    straight = module.main(tiny_args(script, **run, eval_frequency=150))
    first_half = module.main(
        tiny_args(
            script, **{**run, "total_timesteps": 150}, eval_frequency=150, checkpoint_frequency=150
        )
    )
    checkpoint = Path(first_half["run_dir"]) / "checkpoint.pt"
    saved = torch.load(checkpoint, weights_only=True)
    for tensor in tensors_in(saved):  # no tensor drags a bigger storage (the buffer's 10,000 rows)
        assert tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size()

    restored = {}
    start = module.Run.start

    def start_and_record(run, model, training, policy, report):
        obs = start(run, model, training, policy, report)
        restored["state"] = {name: copy.deepcopy(item if isinstance(item, torch.Tensor)
                                                 else item.state_dict())
                             for name, item in {**model, **training}.items()}  # fmt: skip
        restored["rng"] = torch.get_rng_state()
        restored["counters"] = (run.global_step, run.gradient_updates, run.policy_updates)
        return obs

    monkeypatch.setattr(module.Run, "start", start_and_record)
    capsys.readouterr()
    resumed = module.main(module.Args(resume=str(checkpoint), total_timesteps=300, cuda=False))
    not_state = ("algorithm", "args", "report", "loop", "rng", "global_step")
    names = [name for name in saved if name not in not_state]
    assert set(names) == set(restored["state"]) and {"buffer", "q_optimizer"} <= set(names)
    for name in names:
        (expected, got) = (tensors_in(saved[name]), tensors_in(restored["state"][name]))
        assert len(expected) == len(got) > 0, name
        for a, b in zip(expected, got, strict=True):
            assert torch.equal(a, b.cpu()), name
    assert torch.equal(restored["rng"], saved["rng"]["torch"])
    loop = saved["loop"]
    assert restored["counters"] == (loop["global_step"], loop["gradient_updates"],
                                    loop["policy_updates"]) == (150, first_half["gradient_updates"], first_half["policy_updates"])  # fmt: skip
    assert "resumed " in capsys.readouterr().out
    # the run goes on to the full step count, in its directory, with the checkpoint's settings
    assert resumed["run_dir"] == first_half["run_dir"] and resumed["status"] == "finished"
    for key in ["global_step", "gradient_updates", "policy_updates", "eval_episodes"]:
        assert resumed[key] == straight[key], key
    assert resumed["args"]["eval_frequency"] == 150 and resumed["args"]["total_timesteps"] == 300
    assert resumed["train_time_s"] > first_half["train_time_s"]  # both segments count
    assert torch.load(checkpoint, weights_only=True)["loop"]["global_step"] == 300
    # metrics.jsonl reads as one run: losses and evaluations on the straight run's steps
    shape = lambda rows: [(row["global_step"], sorted(row)) for row in rows  # noqa: E731
                          if "charts/episodic_return" not in row]  # fmt: skip
    assert shape(read_metrics(resumed["run_dir"])) == shape(read_metrics(straight["run_dir"]))


def test_resume_drops_metrics_rows_logged_after_the_checkpoint(in_tmp):
    """A run that went on past its checkpoint (then crashed) and is resumed from that checkpoint
    must not log the steps after it twice (issue 12, bug 7)."""
    import shutil

    import sac_v2

    first_half = sac_v2.main(
        tiny_args("sac_v2", total_timesteps=150, learning_starts=100, checkpoint_frequency=150)
    )
    run_dir = Path(first_half["run_dir"])
    shutil.copy(run_dir / "checkpoint.pt", run_dir / "at150.pt")
    resume = sac_v2.Args(resume=str(run_dir / "at150.pt"), total_timesteps=300, cuda=False)
    once = sac_v2.main(resume)
    rows_once = read_metrics(run_dir)
    assert max(row["global_step"] for row in rows_once) == 300
    twice = sac_v2.main(resume)  # the second resume replays steps 151-300
    shape = lambda rows: [(row["global_step"], sorted(row)) for row in rows]  # noqa: E731
    assert shape(read_metrics(run_dir)) == shape(rows_once)
    assert twice["eval_return_mean"] == once["eval_return_mean"]


def test_a_typed_flag_wins_over_the_checkpoint_even_when_it_equals_the_default():
    """Issue 12, bug 2: saved at --total-timesteps 100, resumed with --total-timesteps 1000000
    (the default) must run to 1000000; untyped flags keep the checkpoint's values."""
    import sac_v2

    saved = {**vars(sac_v2.Args(total_timesteps=100, eval_frequency=7, seed=5))}
    argv = ["--resume", "run/checkpoint.pt", "--total-timesteps", "1000000", "--no-cuda"]
    typed = sac_v2.typed_flags(argv)
    assert {"resume", "total_timesteps", "cuda"} <= typed
    args = sac_v2.resumed_args(saved, sac_v2.tyro.cli(sac_v2.Args, args=argv), typed)
    assert args.total_timesteps == 1_000_000 and args.cuda is False
    assert args.eval_frequency == 7 and args.seed == 5 and args.resume == "run/checkpoint.pt"
    # a typed flag that a resumed run may not change (the seed) keeps the checkpoint's value
    args = sac_v2.resumed_args(saved, sac_v2.Args(resume="x.pt", seed=9), {"seed"})
    assert args.seed == 5


STOPS = [(script, signal.SIGINT) for script in SCRIPTS] + [("sac_v2", signal.SIGTERM)]


@pytest.mark.parametrize("script, stop", STOPS)
def test_ctrl_c_or_sigterm_on_the_command_line_saves_a_checkpoint_that_resumes(
    in_tmp, script, stop, monkeypatch, capsys
):
    module = importlib.import_module(script)
    run = settings(
        script, env_id=conftest_env(script, "InterruptingCounting"), total_timesteps=120,
        learning_starts=30, batch_size=8, save_model=True,
    )  # fmt: skip
    monkeypatch.setitem(INTERRUPT_AT, "call", 70)  # the signal arrives during the 70th env step
    monkeypatch.setitem(INTERRUPT_AT, "signal", stop)
    monkeypatch.setitem(INTERRUPT_AT, "calls", 0)
    handler_before = signal.getsignal(signal.SIGINT)
    assert module.command_line(as_argv(run)) == 130
    (run_dir,) = Path("runs").iterdir()
    interrupted = read_summary(run_dir)
    assert interrupted["status"] == "interrupted" and interrupted["global_step"] == 70
    assert interrupted["gradient_updates"] == 40
    assert signal.getsignal(signal.SIGINT) is handler_before  # the command line restored it
    checkpoint = run_dir / "checkpoint.pt"
    last_line = capsys.readouterr().out.strip().splitlines()[-1]
    assert last_line == f"continue with: python {script}.py --resume {checkpoint}"

    monkeypatch.setitem(INTERRUPT_AT, "call", None)
    assert module.command_line(["--resume", str(checkpoint), "--no-cuda"]) == 0
    resumed = read_summary(run_dir)
    assert resumed["status"] == "finished"
    assert resumed["global_step"] == 120 and resumed["gradient_updates"] == 90
    assert math.isfinite(resumed["eval_return_mean"]) and (run_dir / "model.pt").exists()


def test_main_called_as_a_function_leaves_ctrl_c_alone(in_tmp, monkeypatch):
    """Issue 13: in pytest or a notebook, Ctrl-C must stop at once, not be swallowed by main()."""
    import sac_v2

    monkeypatch.setitem(INTERRUPT_AT, "call", 50)
    monkeypatch.setitem(INTERRUPT_AT, "calls", 0)
    args = tiny_args("sac_v2", env_id="softrl-test/InterruptingCounting-v0", total_timesteps=120,
                     learning_starts=30, batch_size=8)  # fmt: skip
    # Python's own Ctrl-C behaviour, as in a notebook (a background job may have SIGINT ignored)
    handler_before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            sac_v2.main(args)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # main() left it
    finally:
        signal.signal(signal.SIGINT, handler_before)
    (run_dir,) = Path("runs").iterdir()
    assert read_summary(run_dir)["status"] == "aborted"


@pytest.mark.parametrize("script", SCRIPTS)
def test_eval_checkpoint_evaluates_a_saved_policy(in_tmp, script):
    module = importlib.import_module(script)
    trained = module.main(tiny_args(script, save_model=True, checkpoint_frequency=400))
    for name in ["model.pt", "checkpoint.pt"]:
        path = str(Path(trained["run_dir"]) / name)
        result = module.main(module.Args(eval_checkpoint=path, eval_episodes=1, cuda=False))
        assert result["status"] == "evaluated" and result["gradient_updates"] == 0
        assert result["global_step"] == 400
        # the saved policy, evaluated on the same seeds, scores what the run scored
        assert result["eval_return_mean"] == pytest.approx(trained["eval_return_mean"], abs=1e-6)
        assert result["alpha"] == trained["alpha"]
        assert read_summary(result["run_dir"])["status"] == "evaluated"
    # a typed --env-id other than the checkpoint's is an error, not a silent switch
    path = str(Path(trained["run_dir"]) / "model.pt")
    other = "Hopper-v4" if script != "sql_discrete" else "Acrobot-v1"
    with pytest.raises(module.UsageError, match=f"--env-id {other}: .* was trained on"):
        module.main(module.Args(eval_checkpoint=path, env_id=other, cuda=False))
    assert module.command_line(["--eval-checkpoint", path, "--env-id", other, "--no-cuda"]) == 2


def test_capture_video_writes_an_mp4_per_evaluation(in_tmp):
    import sac_v2

    result = sac_v2.main(
        tiny_args("sac_v2", capture_video=True, total_timesteps=220, eval_frequency=110)
    )
    videos = sorted((Path(result["run_dir"]) / "videos").glob("eval-episode-*.mp4"))
    assert len(videos) == 2 and videos[0].stat().st_size > 1000


def test_wandb_offline_tracking(in_tmp, monkeypatch):
    import sac_v2

    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    result = sac_v2.main(tiny_args("sac_v2", track=True, total_timesteps=250))
    assert list((Path(result["run_dir"]) / "wandb").glob("offline-run-*"))


# ------------------------------------------------------------------------------------------------
# Divergence
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("script", SCRIPTS)
def test_diverging_run_stops_and_keeps_the_last_good_checkpoint(in_tmp, script):
    module = importlib.import_module(script)
    args = tiny_args(
        script, env_id=conftest_env(script, "InfiniteReward"), total_timesteps=200,
        learning_starts=40, batch_size=8, log_frequency=10, checkpoint_frequency=40,
    )  # fmt: skip
    with pytest.raises(module.TrainingDiverged):
        module.main(args)
    (run_dir,) = Path("runs").iterdir()
    assert read_summary(run_dir)["status"] == "diverged"
    checkpoint = load(run_dir, "checkpoint.pt")
    assert checkpoint["loop"]["global_step"] == 40
    networks = [
        item for name, item in checkpoint.items() if name != "buffer" and isinstance(item, dict)
    ]
    weights = [tensor for network in networks for tensor in network.values()]
    assert all(
        torch.isfinite(t).all()
        for t in weights
        if isinstance(t, torch.Tensor) and t.is_floating_point()
    )


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_model_diverging_between_loss_logs_is_not_saved_as_finished(in_tmp, script):
    """Issue 12, bug 5: the weights are checked before model.pt is written, not only the losses."""
    module = importlib.import_module(script)
    args = tiny_args(
        script, env_id=conftest_env(script, "InfiniteReward"), total_timesteps=200,
        learning_starts=40, batch_size=8, log_frequency=10_000, save_model=True,
        **({"loss": "mse"} if script == "sql_discrete" else {}),  # Huber's gradient stays finite
    )  # fmt: skip
    # sql_discrete acts by sampling softmax(Q/α), which already refuses NaN Q-values while acting
    message = "non-finite Q-values" if script == "sql_discrete" else "non-finite network weights"
    with pytest.raises(module.TrainingDiverged, match=message):
        module.main(args)
    (run_dir,) = Path("runs").iterdir()
    assert read_summary(run_dir)["status"] == "diverged"
    assert not (run_dir / "model.pt").exists()


# ------------------------------------------------------------------------------------------------
# Bad input: one line, exit status 2, nothing written
# ------------------------------------------------------------------------------------------------
BAD_INPUT = [
    ({"env_id": "NoSuchEnv-v0"}, "unknown environment"),
    ({"total_timesteps": 0}, "--total-timesteps must be positive"),
    ({"num_envs": -1}, "--num-envs must be positive"),
    ({"torch_threads": -1}, "--torch-threads must be >= 0"),
    ({"batch_size": 512, "buffer_size": 100}, "exceeds --buffer-size"),
    ({"gamma": 1.5}, "--gamma"),
    ({"tau": 0.0}, "--tau"),
    ({"resume": "missing/checkpoint.pt"}, "does not exist"),
    ({"eval_checkpoint": "missing/model.pt"}, "does not exist"),
]


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("overrides, message", BAD_INPUT)
def test_bad_input_is_a_usage_error_that_writes_nothing(in_tmp, script, overrides, message):
    module = importlib.import_module(script)
    with pytest.raises(module.UsageError, match=message):
        module.main(tiny_args(script, **overrides))
    assert not Path("runs").exists()


@pytest.mark.parametrize("script", SCRIPTS)
def test_unusable_saved_files_are_usage_errors(in_tmp, script):
    module = importlib.import_module(script)
    Path("corrupt.pt").write_bytes(b"not a checkpoint")
    torch.save({"algorithm": "someone_else", "args": {}}, "other.pt")
    for flag, path, message in [
        ("resume", "corrupt.pt", "cannot be read"),
        ("eval_checkpoint", "corrupt.pt", "cannot be read"),
        ("resume", "other.pt", f"not a {script}"),
        ("resume", ".", "'.' is a directory; give a checkpoint.pt file"),
        ("eval_checkpoint", ".", "is a directory; give a model.pt or checkpoint.pt file"),
    ]:
        with pytest.raises(module.UsageError, match=message):
            module.main(tiny_args(script, **{flag: path}))
    assert not Path("runs").exists()
    trained = module.main(tiny_args(script, save_model=True))
    with pytest.raises(module.UsageError, match="--resume needs a checkpoint.pt"):
        module.main(tiny_args(script, resume=str(Path(trained["run_dir"]) / "model.pt")))


@pytest.mark.parametrize("script", SCRIPTS)
def test_command_line_bad_input_exits_2_with_one_line(in_tmp, script, capsys):
    """Our own checks: one line, exit status 2. What tyro cannot parse: tyro's own message (it
    names the flag) and exit status 2, never a traceback."""
    module = importlib.import_module(script)
    for argv in [["--env-id", "NoSuchEnv-v0"], ["--resume", "nowhere.pt"], ["--batch-size", "0"]]:
        assert module.command_line([*argv, "--no-cuda"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    for argv, flag in [(["--seed", "abc"], "--seed"), (["--no-such-flag", "1"], "--no-such-flag")]:
        with pytest.raises(SystemExit) as stop:
            module.command_line(argv)
        assert stop.value.code == 2 and flag in capsys.readouterr().err
    assert not Path("runs").exists()
    for argv, ours in [(["--env-id", "NoSuchEnv-v0"], True), (["--seed", "abc"], False)]:
        process = subprocess.run(  # as a real process
            [sys.executable, str(ROOT / f"{script}.py"), *argv], capture_output=True, text=True
        )
        assert process.returncode == 2 and "Traceback" not in process.stderr
        assert argv[0] in process.stderr if not ours else argv[1] in process.stderr
        if ours:
            assert process.stderr.startswith("error: ")
            assert len(process.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_lists_the_shared_flags_with_their_docstrings(script):
    process = subprocess.run(
        [sys.executable, str(ROOT / f"{script}.py"), "--help"], capture_output=True, text=True
    )
    assert process.returncode == 0
    for flag in ["--env-id", "--seed", "--torch-threads", "--eval-frequency", "--log-frequency",
                 "--checkpoint-frequency", "--resume", "--eval-checkpoint", "--compile"]:  # fmt: skip
        assert flag in process.stdout, flag
    assert "env steps between" in process.stdout


def test_a_mujoco_v4_run_prints_no_library_warning(in_tmp):
    """The headline env is a v4 MuJoCo env, which gymnasium flags as out of date in raw terminal
    colour codes; the command line keeps its console to the run's own lines."""
    tiny = settings("sac_v2", env_id="Walker2d-v4", total_timesteps=60, learning_starts=50)
    argv = [sys.executable, str(ROOT / "sac_v2.py"), *as_argv({**tiny, "batch_size": 8})]
    process = subprocess.run(argv, capture_output=True, text=True)
    console = process.stdout + process.stderr
    assert process.returncode == 0, console
    assert "\x1b[" not in console and "out of date" not in console
    assert console.splitlines()[-1].startswith("finished: 60 steps")
