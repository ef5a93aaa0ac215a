"""Tests for sql_discrete.py: soft-math against independent oracles, the training loop end to end."""

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import sql_discrete as sqld

SCRIPT = Path(__file__).resolve().parents[1] / "sql_discrete.py"


def plain_soft_value(q: list[float], alpha: float) -> float:
    """α·log Σ exp(q/α) in float64 python, shifted by the max so it cannot overflow."""
    m = max(q)
    return m + alpha * math.log(sum(math.exp((x - m) / alpha) for x in q))


def plain_softmax(q: list[float], alpha: float) -> list[float]:
    m = max(q)
    e = [math.exp((x - m) / alpha) for x in q]
    return [x / sum(e) for x in e]


# ---------------------------------------------------------------------------- soft value, policy
@pytest.mark.parametrize("alpha", [0.01, 0.3, 1.0, 7.0])
def test_soft_value_matches_plain_logsumexp(alpha):
    q = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3
    got = sqld.soft_value(q, alpha)
    want = [plain_soft_value(row.tolist(), alpha) for row in q]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)


def test_soft_value_is_finite_and_bounded_for_huge_q_over_alpha():
    alpha = 1e-2
    q = torch.tensor([[100.0, 0.0, -100.0], [-100.0, -100.0, -100.0]])  # q/α up to ±1e4
    v = sqld.soft_value(q, alpha)
    assert torch.isfinite(v).all()
    # max ≤ V ≤ max + α log|A| always; here the max dominates, or all actions tie.
    assert v[0].item() == pytest.approx(100.0, abs=1e-4)
    assert v[1].item() == pytest.approx(-100.0 + alpha * math.log(3), abs=1e-4)


def test_soft_value_limits():
    q = torch.tensor([[1.0, -2.0, 0.5, 3.0]], dtype=torch.float64)
    for alpha in (1e-2, 1e-4, 1e-6):  # α → 0: the hard max, within α log|A|
        v = sqld.soft_value(q, alpha).item()
        assert 3.0 <= v <= 3.0 + alpha * math.log(4) + 1e-12
    errors = []
    for alpha in (1e2, 1e4, 1e6):  # α → ∞: mean + α log|A|, error O(1/α)
        v = sqld.soft_value(q, alpha).item()
        errors.append(abs(v - (q.mean().item() + alpha * math.log(4))))
    assert errors[0] < 0.05 and errors[1] < 1e-3 and errors[2] < 1e-5


def test_boltzmann_policy_matches_softmax_and_sums_to_one():
    q = torch.randn(8, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 5
    for alpha in (0.05, 1.0, 20.0):
        probs = sqld.boltzmann_log_probs(q, alpha).exp()
        np.testing.assert_allclose(probs.sum(-1).numpy(), 1.0, rtol=0, atol=1e-12)
        want = [plain_softmax(row.tolist(), alpha) for row in q]
        np.testing.assert_allclose(probs.numpy(), want, rtol=1e-10, atol=1e-14)
        # And V = E_π[Q − α log π] (the soft value is the entropy-regularised expectation).
        dist = torch.distributions.Categorical(logits=q / alpha)
        v = (dist.probs * q).sum(-1) + alpha * dist.entropy()
        np.testing.assert_allclose(sqld.soft_value(q, alpha).numpy(), v.numpy(), rtol=1e-10)
        np.testing.assert_allclose(
            sqld.entropy(sqld.boltzmann_log_probs(q, alpha)).numpy(),
            dist.entropy().numpy(),
            rtol=1e-10,
            atol=1e-14,
        )


# ---------------------------------------------------------------------------- double soft-Q
def test_double_soft_value_equals_soft_value_when_networks_agree():
    q = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 4
    for alpha in (0.1, 1.0, 10.0):
        np.testing.assert_allclose(
            sqld.double_soft_value(q, q, alpha).numpy(),
            sqld.soft_value(q, alpha).numpy(),
            rtol=1e-10,
        )


def test_double_soft_value_identity_and_alpha_to_zero_limit():
    gen = torch.Generator().manual_seed(3)
    q_online = torch.randn(16, 4, dtype=torch.float64, generator=gen) * 2
    q_target = torch.randn(16, 4, dtype=torch.float64, generator=gen) * 2
    for alpha in (0.2, 1.0, 5.0):  # = α log Z₁ + E_{π₁}[Q̄ − Q₁], written out by hand
        want = []
        for q1, qt in zip(q_online.tolist(), q_target.tolist(), strict=True):
            pi = plain_softmax(q1, alpha)
            want.append(
                plain_soft_value(q1, alpha)
                + sum(p * (b - a) for p, a, b in zip(pi, q1, qt, strict=True))
            )
        got = sqld.double_soft_value(q_target, q_online, alpha)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-10)
    # α → 0: double DQN's Q̄(s′, argmax Q₁), not max Q̄.
    double_dqn = q_target.gather(1, q_online.argmax(1, keepdim=True)).squeeze(1)
    assert not torch.allclose(double_dqn, q_target.max(1).values)
    for alpha, tol in ((1e-3, 1e-2), (1e-6, 1e-5)):
        got = sqld.double_soft_value(q_target, q_online, alpha)
        np.testing.assert_allclose(got.numpy(), double_dqn.numpy(), atol=tol)


# ---------------------------------------------------------------------------- target, temperature
def test_target_masks_termination_but_not_truncation():
    rewards = torch.tensor([1.0, 1.0, -2.0])
    terminated = torch.tensor([0.0, 1.0, 0.0])  # the third transition is a truncation
    next_value = torch.tensor([10.0, 10.0, 4.0])
    y = sqld.soft_td_target(rewards, terminated, next_value, gamma=0.9)
    np.testing.assert_allclose(y.numpy(), [1.0 + 9.0, 1.0, -2.0 + 3.6], rtol=1e-6)


@pytest.mark.parametrize("entropy, should_grow", [(0.6, False), (0.05, True)])
def test_temperature_update_moves_alpha_toward_the_target_entropy(entropy, should_grow):
    log_alpha = torch.tensor(0.0, requires_grad=True)
    optimizer = torch.optim.Adam([log_alpha], lr=0.1)
    loss = sqld.temperature_loss(log_alpha, torch.tensor(entropy), target_entropy=0.3)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert (log_alpha.item() > 0.0) == should_grow and log_alpha.item() != 0.0


# ---------------------------------------------------------------------------- training loop
def tiny_args(**overrides) -> sqld.Args:
    base = dict(
        total_timesteps=600,
        learning_starts=100,
        batch_size=32,
        buffer_size=1000,
        hidden_sizes=(32, 32),
        log_frequency=50,
        eval_frequency=0,
        eval_episodes=2,
        cuda=False,
    )
    return sqld.Args(**(base | overrides))


def read_run(result: dict) -> tuple[dict, list[dict]]:
    run_dir = Path(result["run_dir"])
    summary = json.loads((run_dir / "summary.json").read_text())
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return summary, metrics


def test_replay_stores_true_final_obs_and_termination_only(in_tmp):
    # CountingDiscrete: obs = [t, episode]; even episodes terminate at t = 3, odd ones are
    # truncated by the time limit at t = 5; the reward is t after the step.
    result = sqld.main(
        tiny_args(
            env_id="softrl-test/CountingDiscrete-v0",
            num_envs=2,
            total_timesteps=400,
            checkpoint_frequency=400,
        )
    )
    buffer = torch.load(Path(result["run_dir"]) / "checkpoint.pt", weights_only=True)["buffer"]
    t, episode = buffer["obs"][:, 0], buffer["obs"][:, 1]
    next_t, next_episode = buffer["next_obs"][:, 0], buffer["next_obs"][:, 1]
    # SAME_STEP autoreset hands back the next episode's first obs; the buffer must hold the
    # real last one, so every row continues its own episode, also at episode ends.
    np.testing.assert_array_equal(next_t.numpy(), t.numpy() + 1)
    np.testing.assert_array_equal(next_episode.numpy(), episode.numpy())
    np.testing.assert_array_equal(buffer["rewards"].numpy(), next_t.numpy())
    terminates = (episode % 2 == 0) & (next_t == 3)
    np.testing.assert_array_equal(buffer["terminated"].numpy(), terminates.float().numpy())
    truncated = (episode % 2 == 1) & (next_t == 5)
    assert terminates.any() and truncated.any() and (buffer["terminated"][truncated] == 0).all()


@pytest.mark.parametrize(
    "env_id, num_envs, updates",
    # 600 env steps, learning from step 101: 500 updates, or with 3 envs one per vector step
    # from step 102 to 600, i.e. 167.
    [
        ("CartPole-v1", 1, 500),
        ("Acrobot-v1", 1, 500),
        ("MountainCar-v0", 3, 167),
        ("LunarLander-v3", 1, 500),
    ],
)
def test_smoke_runs_perform_gradient_updates(env_id, num_envs, updates, in_tmp):
    args = tiny_args(
        env_id=env_id, num_envs=num_envs, eval_episodes=1, double_soft_q=env_id == "Acrobot-v1"
    )
    summary, metrics = read_run(sqld.main(args))
    required = {
        "algorithm",
        "env_id",
        "seed",
        "global_step",
        "gradient_updates",
        "policy_updates",
        "train_time_s",
        "learn_sps",
        "episodic_return_last",
        "eval_return_mean",
        "eval_return_std",
        "eval_episodes",
        "alpha",
    }
    assert required <= summary.keys() and summary["env_id"] == env_id
    assert summary["status"] == "finished"
    assert summary["global_step"] == 600 and summary["gradient_updates"] == updates
    assert math.isfinite(summary["eval_return_mean"]) and summary["learn_sps"] > 0
    losses = [m for m in metrics if "losses/qf_loss" in m]
    assert len(losses) == updates // 50 and all(math.isfinite(m["losses/qf_loss"]) for m in losses)
    episodes = [m for m in metrics if "charts/episodic_return" in m]
    assert episodes and summary["episodic_return_last"] == pytest.approx(
        np.mean([m["charts/episodic_return"] for m in episodes[-10:]])
    )
    assert summary["alpha"] != 1.0  # autotune moved the temperature


def test_stochastic_evaluation_is_seeded_and_leaves_the_training_rng_alone():
    q_network = sqld.QNetwork(4, 2, (16,))
    rng_before = torch.get_rng_state()
    runs = [
        sqld.evaluate(q_network, "CartPole-v1", 3, 7, torch.device("cpu"), 10.0, True)
        for _ in range(2)
    ]
    assert runs[0] == runs[1] and torch.equal(torch.get_rng_state(), rng_before)


RUN = dict(double_soft_q=True, save_model=True, total_timesteps=800)


def in_dir(directory: Path, **overrides) -> dict:
    """main() run from `directory`, with run_dir made absolute."""
    cwd = os.getcwd()
    os.chdir(directory)
    try:
        result = sqld.main(tiny_args(**(RUN | overrides)))
    finally:
        os.chdir(cwd)
    return result | {"run_dir": str(directory / result["run_dir"])}


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory) -> dict:
    """One uninterrupted 800-step run that the determinism and resume tests compare against."""
    return in_dir(tmp_path_factory.mktemp("straight"))


def assert_same_run(a: dict, b: dict) -> None:
    for key in (
        "global_step",
        "gradient_updates",
        "episodic_return_last",
        "eval_return_mean",
        "alpha",
    ):
        assert a[key] == b[key], key
    wa, wb = (
        torch.load(Path(r["run_dir"]) / "model.pt", weights_only=True)["q_network"] for r in (a, b)
    )
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_same_seed_gives_the_same_run(straight_run, tmp_path):
    assert_same_run(straight_run, in_dir(tmp_path))
    assert in_dir(tmp_path, seed=2)["alpha"] != straight_run["alpha"]


def test_resumed_run_ends_where_the_straight_run_ends(tmp_path):
    # A run stopped by its budget at T/2 had a learning-rate schedule over T/2, so compare
    # without annealing here; the Ctrl-C test below covers resuming an annealed run.
    # Hard target copies here (the other runs use Polyak averaging), to cover both.
    fixed = dict(anneal_lr=False, tau=1.0, target_network_frequency=50)
    straight = in_dir(tmp_path, exp_name="straight", **fixed)
    half = in_dir(tmp_path, exp_name="half", total_timesteps=400, checkpoint_frequency=400, **fixed)
    checkpoint = Path(half["run_dir"]) / "checkpoint.pt"
    assert_same_run(straight, in_dir(tmp_path, exp_name="resumed", resume=str(checkpoint), **fixed))
    with pytest.raises(sqld.UsageError, match="--env-id CartPole-v1"):
        in_dir(tmp_path, env_id="Acrobot-v1", resume=str(checkpoint))


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_stop_signal_checkpoints_and_the_run_resumes_exactly(
    stop_signal, straight_run, tmp_path, monkeypatch
):
    real_evaluate = sqld.evaluate

    def evaluate_then_signal(*args, **kwargs):
        os.kill(os.getpid(), stop_signal)  # a user's Ctrl-C or a cluster's preemption, mid-run
        return real_evaluate(*args, **kwargs)

    handlers_before = [signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)]
    monkeypatch.setattr(sqld, "evaluate", evaluate_then_signal)
    interrupted = in_dir(tmp_path, exp_name="interrupted", eval_frequency=300)
    assert [signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)] == handlers_before
    monkeypatch.undo()
    summary = json.loads((Path(interrupted["run_dir"]) / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["global_step"] == 300
    assert (
        summary["eval_return_mean"] is None
        and not (Path(interrupted["run_dir"]) / "model.pt").exists()
    )
    checkpoint = Path(interrupted["run_dir"]) / "checkpoint.pt"
    # Evaluations do not touch the training RNG stream, so the resumed run matches exactly.
    resumed = in_dir(tmp_path, exp_name="resumed", resume=str(checkpoint))
    assert resumed["status"] == "finished"
    assert_same_run(straight_run, resumed)


def test_eval_checkpoint_reproduces_the_final_evaluation(straight_run, in_tmp):
    model = Path(straight_run["run_dir"]) / "model.pt"
    args = sqld.Args(
        eval_checkpoint=str(model),
        env_id="Acrobot-v1",
        eval_episodes=2,
        capture_video=True,
        cuda=False,
    )
    evaluated = sqld.main(args)
    assert evaluated["env_id"] == "CartPole-v1"  # the model's env, not the command line's
    assert evaluated["eval_return_mean"] == straight_run["eval_return_mean"]
    assert evaluated["gradient_updates"] == 0 and evaluated["global_step"] == 800
    assert list(Path(evaluated["run_dir"]).glob("videos/**/*.mp4"))


def test_non_finite_loss_stops_the_run_and_keeps_the_last_checkpoint(in_tmp):
    args = tiny_args(
        env_id="softrl-test/InfiniteRewardDiscrete-v0",
        learning_starts=200,
        checkpoint_frequency=200,
        log_frequency=10,
    )
    with pytest.raises(sqld.TrainingDiverged):
        sqld.main(args)
    (run_dir,) = Path("runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["global_step"] < 400
    kept = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert kept["global_step"] == 200
    assert all(torch.isfinite(p).all() for p in kept["q_network"].values())


def test_track_logs_to_wandb_offline_inside_the_run_directory(in_tmp, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    result = sqld.main(tiny_args(track=True, total_timesteps=300))
    assert list(Path(result["run_dir"]).glob("wandb/offline-run-*"))


def test_compiled_losses_train(in_tmp):
    summary, metrics = read_run(sqld.main(tiny_args(compile=True)))
    assert summary["gradient_updates"] == 500 and math.isfinite(summary["eval_return_mean"])
    losses = [m["losses/qf_loss"] for m in metrics if "losses/qf_loss" in m]
    assert len(losses) == 10 and all(math.isfinite(x) for x in losses)


# ---------------------------------------------------------------------------- bad input (CONVENTIONS §7)
def run_script(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *argv], cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--env-id", "NoSuchEnv-v0"], "NoSuchEnv-v0"),
        (["--env-id", "Pendulum-v1"], "needs a Discrete one"),
        (["--env-id", "FrozenLake-v1"], "flat Box"),
        (["--batch-size", "512", "--buffer-size", "256"], "must be at most --buffer-size"),
        (["--total-timesteps", "0"], "--total-timesteps must be positive"),
        (["--learning-rate", "-1"], "--learning-rate must be positive"),
        (["--resume", "missing.pt"], "does not exist"),
        (["--resume", "corrupt.pt"], "cannot read"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(argv, message, tmp_path):
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    proc = run_script(*argv, "--no-cuda", cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------- learning
@pytest.mark.slow
def test_cartpole_greedy_return_reaches_400_within_40k_steps(in_tmp):
    result = sqld.main(sqld.Args(total_timesteps=40_000, eval_frequency=0, cuda=False))
    assert result["eval_return_mean"] >= 400, result
