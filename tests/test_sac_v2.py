"""Tests of sac_v2.py: the soft-actor-critic math against independent oracles, the training loop's
bookkeeping at episode ends, checkpoints, bad input, and short runs that really learn."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import INTERRUPT_AT, MAX_EPISODE_STEPS
from torch.distributions import AffineTransform, Normal, TanhTransform, TransformedDistribution

import sac_v2

SCRIPT = Path(__file__).resolve().parents[1] / "sac_v2.py"
TIME_KEYS = {"train_time_s", "learn_sps", "run_dir"}


def tiny_args(**overrides) -> sac_v2.Args:
    """A run small enough for a unit test that still performs gradient updates."""
    settings = dict(
        env_id="Pendulum-v1",
        total_timesteps=400,
        learning_starts=200,
        batch_size=32,
        buffer_size=10_000,
        hidden_dim=64,
        eval_episodes=1,
        eval_frequency=0,
        log_frequency=100,
        cuda=False,
    )
    settings.update(overrides)
    return sac_v2.Args(**settings)


def reference_distribution(mean, log_std, scale, bias):
    """The squashed, scaled Gaussian built from torch.distributions: an independent oracle."""
    transforms = [TanhTransform(), AffineTransform(loc=bias, scale=scale)]
    return TransformedDistribution(Normal(mean, log_std.exp()), transforms)


# ------------------------------------------------------------------------------------------------
# Math
# ------------------------------------------------------------------------------------------------
def test_squashed_log_prob_matches_torch_distributions():
    generator = torch.Generator().manual_seed(0)
    shape = (512, 4)
    mean = torch.randn(shape, generator=generator, dtype=torch.float64)
    log_std = torch.rand(shape, generator=generator, dtype=torch.float64) * 3 - 2
    pre_tanh = mean + log_std.exp() * torch.randn(shape, generator=generator, dtype=torch.float64)
    pre_tanh = pre_tanh.clamp(-4, 4)  # keep atanh inside torch.distributions accurate
    scale = torch.tensor([0.5, 1.0, 2.0, 40.0], dtype=torch.float64)
    bias = torch.tensor([0.0, 1.0, -3.0, 10.0], dtype=torch.float64)
    action = scale * torch.tanh(pre_tanh) + bias

    ours = sac_v2.squashed_gaussian_log_prob(pre_tanh, mean, log_std, scale)
    oracle = reference_distribution(mean, log_std, scale, bias).log_prob(action).sum(-1)
    torch.testing.assert_close(ours, oracle, atol=1e-5, rtol=0)


@pytest.mark.parametrize("pre_tanh_value", [-50.0, -20.0, -10.0, 10.0, 20.0, 50.0])
def test_squashed_log_prob_is_finite_and_exact_where_naive_formula_breaks(pre_tanh_value):
    pre_tanh = torch.full((1, 2), pre_tanh_value)
    mean, log_std = torch.zeros(1, 2), torch.zeros(1, 2)
    scale = torch.tensor([1.0, 3.0])

    naive_log_det = torch.log(1 - torch.tanh(pre_tanh).pow(2))
    assert not torch.isfinite(naive_log_det).all(), "the naive formula should break here"

    ours = sac_v2.squashed_gaussian_log_prob(pre_tanh, mean, log_std, scale)
    assert torch.isfinite(ours).all()
    # float64 closed form: log(1 − tanh² u) = −2 log cosh u
    u = pre_tanh_value
    gaussian = -0.5 * u * u - 0.5 * math.log(2 * math.pi)
    expected = 2 * gaussian + 2 * 2 * math.log(math.cosh(u)) - math.log(3.0)
    assert ours.item() == pytest.approx(expected, rel=1e-6)


def test_actor_sample_log_prob_is_the_density_of_the_env_action():
    torch.manual_seed(0)
    low, high = np.array([-2.0, 0.0]), np.array([2.0, 1.0])
    actor = sac_v2.Actor(obs_dim=3, act_dim=2, hidden_dim=32, action_low=low, action_high=high)
    obs = torch.randn(256, 3)
    torch.manual_seed(1)
    unit_action, log_prob = actor.sample(obs)
    env_action = torch.as_tensor(actor.to_env_action(unit_action))
    assert (env_action >= torch.as_tensor(low)).all() and (
        env_action <= torch.as_tensor(high)
    ).all()

    mean, log_std = actor(obs)
    scale = torch.tensor([2.0, 0.5])
    bias = torch.tensor([0.0, 0.5])
    reference = reference_distribution(mean, log_std, scale, bias)
    inside = unit_action.abs().max(-1).values < 0.999  # atanh is ill-conditioned at the edges
    oracle = reference.log_prob(env_action.float()).sum(-1)
    torch.testing.assert_close(log_prob[inside], oracle[inside], atol=2e-3, rtol=0)
    assert inside.sum() > 200


def test_soft_q_target_by_hand():
    reward = torch.tensor([1.0, 2.0, -1.0])
    terminated = torch.tensor([1.0, 0.0, 0.0])
    next_q_min = torch.tensor([10.0, 10.0, 4.0])
    next_log_prob = torch.tensor([-1.0, -1.0, 2.0])
    target = sac_v2.soft_q_target(reward, terminated, next_q_min, next_log_prob, 0.9, 0.5)
    expected = torch.tensor([1.0, 2.0 + 0.9 * (10.0 + 0.5), -1.0 + 0.9 * (4.0 - 1.0)])
    torch.testing.assert_close(target, expected)


def constant_twin_q(obs_dim, act_dim, values):
    """A TwinSoftQNetwork whose critics output the constants `values` for every input."""
    qf = sac_v2.TwinSoftQNetwork(obs_dim, act_dim, hidden_dim=8)
    with torch.no_grad():
        for weight in qf.weights:
            weight.zero_()
        for bias in qf.biases:
            bias.zero_()
        qf.biases[-1].copy_(torch.tensor(values).view(2, 1, 1))
    return qf


def test_critic_loss_on_a_hand_built_batch_bootstraps_truncation_not_termination(monkeypatch):
    obs_dim, act_dim = 3, 2
    qf = constant_twin_q(obs_dim, act_dim, [1.0, 2.0])
    qf_target = constant_twin_q(obs_dim, act_dim, [7.0, 5.0])  # min_i Q̄_i = 5
    actor = sac_v2.Actor(obs_dim, act_dim, 8, np.full(act_dim, -3.0), np.full(act_dim, 3.0))
    with torch.no_grad():  # μ = 0 and log σ = 0 for every state
        for parameter in actor.parameters():
            parameter.zero_()
    monkeypatch.setattr(torch, "randn_like", torch.zeros_like)  # ε = 0, so u = μ = 0
    # log π(a′) = Σ_j [log N(0; 0, 1) − log(1 − tanh² 0) − log 3]
    next_log_prob = act_dim * (-0.5 * math.log(2 * math.pi) - math.log(3.0))

    # rows: terminated, truncated (stored with terminated = 0), ordinary
    reward = torch.tensor([[1.0], [2.0], [3.0]])
    terminated = torch.tensor([[1.0], [0.0], [0.0]])
    batch = (torch.randn(3, obs_dim), torch.rand(3, act_dim), reward, terminated)
    batch += (torch.randn(3, obs_dim),)
    alpha, gamma = torch.tensor(0.2), 0.9
    loss, q_values = sac_v2.critic_loss(qf, qf_target, actor, batch, alpha, gamma)

    bootstrap = 5.0 - 0.2 * next_log_prob
    targets = np.array([1.0, 2.0 + gamma * bootstrap, 3.0 + gamma * bootstrap])
    expected = sum(0.5 * np.mean((q - targets) ** 2) for q in (1.0, 2.0))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    torch.testing.assert_close(q_values, torch.tensor([[1.0] * 3, [2.0] * 3]))


@pytest.mark.parametrize(
    "log_prob_value, alpha_should",
    [(3.0, "rise"), (-3.0, "fall")],  # target H̄ = −1: entropy −3 is below it, entropy 3 above
)
def test_temperature_update_direction(log_prob_value, alpha_should):
    log_alpha = torch.tensor(0.0, requires_grad=True)
    optimizer = torch.optim.SGD([log_alpha], lr=0.1)
    log_prob = torch.full((64,), log_prob_value, requires_grad=True)
    loss = sac_v2.temperature_loss(log_alpha, log_prob, target_entropy=-1.0)
    loss.backward()
    assert log_prob.grad is None  # the temperature loss never trains the policy
    optimizer.step()
    assert (log_alpha.item() > 0.0) == (alpha_should == "rise")
    assert log_alpha.item() != 0.0


def networks(obs_dim=3, act_dim=2, dtype=torch.float32):
    torch.manual_seed(0)
    actor = sac_v2.Actor(obs_dim, act_dim, 16, -np.ones(act_dim), np.ones(act_dim)).to(dtype)
    qf = sac_v2.TwinSoftQNetwork(obs_dim, act_dim, 16).to(dtype)
    qf_target = sac_v2.TwinSoftQNetwork(obs_dim, act_dim, 16).to(dtype).requires_grad_(False)
    return actor, qf, qf_target


def random_batch(obs_dim=3, act_dim=2, n=32):
    return (
        torch.randn(n, obs_dim),
        torch.rand(n, act_dim) * 2 - 1,
        torch.randn(n, 1),
        (torch.rand(n, 1) < 0.3).float(),
        torch.randn(n, obs_dim),
    )


def test_critic_loss_reaches_only_the_critics():
    actor, qf, qf_target = networks()
    loss, _ = sac_v2.critic_loss(qf, qf_target, actor, random_batch(), torch.tensor(0.3), 0.99)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in qf.parameters())
    assert all(p.grad is None for p in actor.parameters())
    assert all(p.grad is None for p in qf_target.parameters())


def test_actor_and_temperature_losses_reach_only_their_own_parameters():
    actor, qf, qf_target = networks()
    log_alpha = torch.tensor(0.1, requires_grad=True)
    actor_loss, alpha_loss, _ = sac_v2.actor_and_temperature_loss(
        actor, qf, log_alpha, random_batch()[0], target_entropy=-2.0
    )
    actor_loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in actor.parameters())
    assert all(p.grad is None for p in qf.parameters())
    assert log_alpha.grad is None
    for p in actor.parameters():
        p.grad = None
    alpha_loss.backward()
    assert log_alpha.grad is not None and log_alpha.grad != 0
    assert all(p.grad is None for p in actor.parameters())
    assert all(p.grad is None for p in qf.parameters())


def test_actor_loss_follows_the_gradient_of_the_critic_through_the_action():
    """J_π's gradient must carry ∂Q/∂a: the same loss with the critic's output detached differs."""
    actor, qf, _ = networks()
    obs = random_batch()[0]
    torch.manual_seed(5)
    loss, _, _ = sac_v2.actor_and_temperature_loss(actor, qf, torch.tensor(0.0), obs, -2.0)
    with_critic = torch.autograd.grad(loss, list(actor.parameters()))
    torch.manual_seed(5)
    action, log_prob = actor.sample(obs)
    entropy_only = torch.autograd.grad(log_prob.mean(), list(actor.parameters()))
    assert any(not torch.allclose(a, b) for a, b in zip(with_critic, entropy_only, strict=True))


def test_polyak_update_matches_its_formula():
    _, qf, qf_target = networks(dtype=torch.float64)
    before = [p.clone() for p in qf_target.parameters()]
    sac_v2.polyak_update(qf_target, qf, tau=0.005)
    for old, new, online in zip(before, qf_target.parameters(), qf.parameters(), strict=True):
        torch.testing.assert_close(new, 0.995 * old + 0.005 * online, atol=1e-15, rtol=0)
        assert new.grad is None and not new.requires_grad


def test_twin_critics_are_two_independent_mlps():
    """The batched module equals two separate nn.Linear MLPs built from its weights."""
    _, qf, _ = networks()
    obs, action = random_batch()[:2]
    x = torch.cat([obs, action], -1)
    for i in range(2):
        hidden = x
        for layer, (weight, bias) in enumerate(zip(qf.weights, qf.biases, strict=True)):
            hidden = torch.nn.functional.linear(hidden, weight[i].T, bias[i, 0])
            hidden = torch.relu(hidden) if layer < 2 else hidden
        torch.testing.assert_close(qf(obs, action)[i], hidden.squeeze(-1))


def test_bf16_autocast_keeps_float32_outputs_close_to_the_float32_networks():
    """--bf16 runs hidden layers in bfloat16 but the Q values and the policy head in float32."""
    actor, qf, _ = networks()
    obs, action = random_batch()[:2]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q_bf16, (mean_bf16, log_std_bf16) = qf(obs, action), actor(obs)
    assert q_bf16.dtype == mean_bf16.dtype == log_std_bf16.dtype == torch.float32
    q, (mean, log_std) = qf(obs, action), actor(obs)
    assert not torch.equal(q_bf16, q)  # the hidden layers really ran in lower precision
    # bf16 keeps 8 significant bits: errors of a few parts in a thousand of each layer's scale.
    torch.testing.assert_close(q_bf16, q, atol=0.02 * q.abs().max().item(), rtol=0)
    torch.testing.assert_close(mean_bf16, mean, atol=0.02 * mean.abs().max().item(), rtol=0)
    torch.testing.assert_close(log_std_bf16, log_std, atol=0.02, rtol=0)


def test_bf16_run_trains(in_tmp):
    result = sac_v2.main(tiny_args(bf16=True))
    assert result["gradient_updates"] == 200 and math.isfinite(result["eval_return_mean"])
    assert result["alpha"] != 1.0


# ------------------------------------------------------------------------------------------------
# The training loop
# ------------------------------------------------------------------------------------------------
def read_summary(run_dir):
    return json.loads((Path(run_dir) / "summary.json").read_text())


def test_vector_env_episode_ends_are_stored_correctly(in_tmp):
    """num_envs=2 on an env that terminates at t=3 (even episodes) or is truncated at t=5 (odd)."""
    args = tiny_args(
        env_id="softrl-test/Counting-v0",
        num_envs=2,
        total_timesteps=80,
        learning_starts=40,
        batch_size=8,
        checkpoint_frequency=80,
    )
    result = sac_v2.main(args)
    assert result["gradient_updates"] == 40
    checkpoint = torch.load(
        Path(result["run_dir"]) / "checkpoint.pt", map_location="cpu", weights_only=True
    )
    rows = checkpoint["buffer"]["rows"]
    assert len(rows) == 80
    obs, reward, terminated, next_obs = rows[:, 0:2], rows[:, 3], rows[:, 4], rows[:, 5:7]
    t, episode, next_t, next_episode = obs[:, 0], obs[:, 1], next_obs[:, 0], next_obs[:, 1]
    # no transition crosses an episode boundary
    assert torch.equal(next_t, t + 1) and torch.equal(next_episode, episode)
    torch.testing.assert_close(reward, next_t)
    # termination is flagged exactly where it happens ...
    expected_terminated = (episode % 2 == 0) & (next_t == 3)
    assert torch.equal(terminated.bool(), expected_terminated)
    # ... and truncated transitions keep the true last observation (t = limit, not a reset obs)
    truncated = (episode % 2 == 1) & (next_t == MAX_EPISODE_STEPS)
    assert truncated.sum() >= 4 and expected_terminated.sum() >= 4
    assert not terminated[truncated].any()


def test_smoke_pendulum_writes_summary_and_metrics(in_tmp):
    result = sac_v2.main(tiny_args(save_model=True, eval_frequency=200))
    summary = read_summary(result["run_dir"])
    required = {
        "algorithm", "env_id", "seed", "global_step", "gradient_updates", "policy_updates",
        "train_time_s", "learn_sps", "episodic_return_last", "eval_return_mean",
        "eval_return_std", "eval_episodes", "alpha",
    }  # fmt: skip
    assert required <= summary.keys()
    assert summary["algorithm"] == "sac_v2" and summary["env_id"] == "Pendulum-v1"
    assert summary["global_step"] == 400
    assert summary["gradient_updates"] == summary["policy_updates"] == 200
    assert summary["learn_sps"] > 0 and summary["eval_episodes"] == 1
    assert -2000 < summary["eval_return_mean"] <= 0 and summary["episodic_return_last"] < 0
    assert summary["alpha"] != 1.0  # the temperature was trained
    metrics = (Path(result["run_dir"]) / "metrics.jsonl").read_text().splitlines()
    lines = [json.loads(line) for line in metrics]
    keys = set().union(*lines)
    assert {"losses/qf_loss", "losses/actor_loss", "losses/alpha", "charts/policy_entropy"} <= keys
    assert {"charts/episodic_return", "eval/episodic_return", "charts/SPS"} <= keys
    assert sum("eval/episodic_return" in line for line in lines) == 2  # at 200 and at the end
    model = torch.load(Path(result["run_dir"]) / "model.pt", weights_only=True)
    assert {"actor", "qf", "qf_target", "args"} <= model.keys()


def test_smoke_mujoco_with_two_envs(in_tmp):
    result = sac_v2.main(
        tiny_args(env_id="Hopper-v4", num_envs=2, total_timesteps=300, learning_starts=100)
    )
    summary = read_summary(result["run_dir"])
    assert summary["env_id"] == "Hopper-v4" and summary["status"] == "finished"
    assert summary["global_step"] == 300 and summary["gradient_updates"] == 200
    assert summary["target_entropy"] == -3.0  # −dim(A) for Hopper's 3 actuators
    assert math.isfinite(summary["eval_return_mean"]) and summary["eval_return_mean"] > 0


@pytest.mark.slow
def test_compiled_update_trains(in_tmp):
    result = sac_v2.main(tiny_args(compile=True, total_timesteps=300))
    assert result["gradient_updates"] == 100 and math.isfinite(result["eval_return_mean"])
    assert result["alpha"] < 1.0


def test_same_seed_same_result_and_other_seed_differs(in_tmp):
    first = sac_v2.main(tiny_args())
    second = sac_v2.main(tiny_args())
    third = sac_v2.main(tiny_args(seed=2))
    strip = lambda summary: {k: v for k, v in summary.items() if k not in TIME_KEYS}  # noqa: E731
    assert strip(first) == strip(second)
    assert strip(first) != strip(third)


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "Hopper-v4"])
def test_resume_ends_where_an_uninterrupted_run_ends(in_tmp, env_id):
    settings = dict(env_id=env_id, total_timesteps=300, learning_starts=100, save_model=True)
    straight = sac_v2.main(tiny_args(**settings, num_envs=2))
    first_half = sac_v2.main(
        tiny_args(**{**settings, "total_timesteps": 150}, num_envs=2, checkpoint_frequency=150)
    )
    resumed = sac_v2.main(
        sac_v2.Args(
            resume=str(Path(first_half["run_dir"]) / "checkpoint.pt"),
            total_timesteps=300,
            cuda=False,
        )
    )
    for key in ["global_step", "gradient_updates", "eval_return_mean", "alpha"]:
        assert resumed[key] == straight[key], key
    assert resumed["episodic_return_last"] == straight["episodic_return_last"]
    load = lambda run: torch.load(Path(run["run_dir"]) / "model.pt", weights_only=True)  # noqa: E731
    for name, tensor in load(straight)["actor"].items():
        assert torch.equal(tensor, load(resumed)["actor"][name]), name


def test_ctrl_c_saves_a_checkpoint_that_resumes_exactly(in_tmp, monkeypatch):
    settings = dict(
        env_id="softrl-test/InterruptingCounting-v0",
        total_timesteps=120,
        learning_starts=30,
        batch_size=8,
        save_model=True,
    )
    monkeypatch.setitem(INTERRUPT_AT, "call", None)
    straight = sac_v2.main(tiny_args(**settings))

    monkeypatch.setitem(INTERRUPT_AT, "call", 70)  # Ctrl-C during the 70th env step
    monkeypatch.setitem(INTERRUPT_AT, "calls", 0)
    interrupted = sac_v2.main(tiny_args(**settings))
    assert interrupted["status"] == "interrupted" and interrupted["global_step"] == 70
    assert read_summary(interrupted["run_dir"])["status"] == "interrupted"

    monkeypatch.setitem(INTERRUPT_AT, "call", None)
    checkpoint = Path(interrupted["run_dir"]) / "checkpoint.pt"
    resumed = sac_v2.main(sac_v2.Args(resume=str(checkpoint), cuda=False))
    assert resumed["run_dir"] == interrupted["run_dir"]
    assert resumed["global_step"] == 120 and resumed["gradient_updates"] == 90
    for key in ["eval_return_mean", "episodic_return_last", "alpha"]:
        assert resumed[key] == straight[key], key
    load = lambda run: torch.load(Path(run["run_dir"]) / "model.pt", weights_only=True)  # noqa: E731
    for name, tensor in load(straight)["qf"].items():
        assert torch.equal(tensor, load(resumed)["qf"][name]), name


def test_eval_checkpoint_evaluates_a_saved_policy(in_tmp):
    trained = sac_v2.main(tiny_args(save_model=True))
    model_path = str(Path(trained["run_dir"]) / "model.pt")
    result = sac_v2.main(sac_v2.Args(eval_checkpoint=model_path, eval_episodes=1, cuda=False))
    assert result["gradient_updates"] == 0 and result["eval_episodes"] == 1
    # the saved deterministic policy, evaluated on the same seeds, scores what the run scored
    assert result["eval_return_mean"] == pytest.approx(trained["eval_return_mean"], abs=1e-6)
    assert read_summary(result["run_dir"])["status"] == "evaluated"


def test_capture_video_writes_an_mp4(in_tmp):
    result = sac_v2.main(tiny_args(capture_video=True, total_timesteps=220))
    videos = list((Path(result["run_dir"]) / "videos").glob("*.mp4"))
    assert videos and videos[0].stat().st_size > 1000


def test_wandb_offline_tracking(in_tmp, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    result = sac_v2.main(tiny_args(track=True, total_timesteps=250))
    assert list((Path(result["run_dir"]) / "wandb").glob("offline-run-*"))


def test_diverging_run_stops_and_keeps_the_last_good_checkpoint(in_tmp):
    args = tiny_args(
        env_id="softrl-test/InfiniteReward-v0",
        total_timesteps=200,
        learning_starts=40,
        batch_size=8,
        log_frequency=10,
        checkpoint_frequency=40,
    )
    with pytest.raises(sac_v2.TrainingDiverged):
        sac_v2.main(args)
    (run_dir,) = Path("runs").iterdir()
    assert read_summary(run_dir)["status"] == "diverged"
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert checkpoint["loop"]["global_step"] == 40
    assert all(torch.isfinite(p).all() for p in checkpoint["qf"].values())


# ------------------------------------------------------------------------------------------------
# Bad input: one line, exit status 2, nothing written
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"env_id": "NoSuchEnv-v0"}, "unknown environment"),
        ({"env_id": "CartPole-v1"}, "Discrete action space"),
        ({"total_timesteps": 0}, "--total-timesteps must be positive"),
        ({"num_envs": -1}, "--num-envs must be positive"),
        ({"batch_size": 512, "buffer_size": 100}, "exceeds --buffer-size"),
        ({"gamma": 1.5}, "--gamma"),
        ({"alpha": float("nan"), "autotune": False}, "--alpha"),
        ({"resume": "missing/checkpoint.pt"}, "does not exist"),
        ({"eval_checkpoint": "missing/model.pt"}, "does not exist"),
    ],
)
def test_bad_input_is_a_usage_error_that_writes_nothing(in_tmp, overrides, message):
    with pytest.raises(sac_v2.UsageError, match=message):
        sac_v2.main(tiny_args(**overrides))
    assert not Path("runs").exists()


def test_corrupt_resume_file_is_a_usage_error(in_tmp):
    Path("checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(sac_v2.UsageError, match="cannot be read"):
        sac_v2.main(tiny_args(resume="checkpoint.pt"))
    assert not Path("runs").exists()


@pytest.mark.parametrize(
    "cli", [["--env-id", "NoSuchEnv-v0"], ["--resume", "nowhere.pt"], ["--batch-size", "0"]]
)
def test_command_line_bad_input_exits_2_with_one_line(in_tmp, cli):
    process = subprocess.run(
        [sys.executable, str(SCRIPT), *cli, "--no-cuda"], capture_output=True, text=True
    )
    assert process.returncode == 2
    assert process.stderr.startswith("error: ") and "Traceback" not in process.stderr
    assert len(process.stderr.strip().splitlines()) == 1
    assert not Path("runs").exists()


def test_help_lists_every_flag_with_its_docstring():
    process = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True
    )
    assert process.returncode == 0
    for flag in ["--env-id", "--autotune", "--target-entropy", "--resume", "--eval-checkpoint"]:
        assert flag in process.stdout
    assert "entropy target" in process.stdout


# ------------------------------------------------------------------------------------------------
# Learning
# ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_learns_pendulum_within_15k_steps(in_tmp):
    """The README's quick-start run: deterministic eval return ≥ −250 after 15k env steps."""
    result = sac_v2.main(
        sac_v2.Args(
            env_id="Pendulum-v1",
            total_timesteps=15_000,
            learning_starts=1_000,
            eval_frequency=0,
            eval_episodes=10,
            cuda=False,
        )
    )
    assert result["eval_return_mean"] >= -250, result
