"""Tests of sql_continuous.py: the importance-sampled soft value against quadrature, the SVGD kernel
and direction against hand computations and autograd, the amortized sampler on a known density,
the multi-goal env, the training loop's bookkeeping, checkpoints, bad input, and learning runs."""

import json
import math
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import INTERRUPT_AT
from scipy import integrate

import sql_continuous as sqlc

SCRIPT = Path(__file__).resolve().parents[1] / "sql_continuous.py"
TIME_KEYS = {"train_time_s", "learn_sps", "run_dir"}


def tiny_args(**overrides) -> sqlc.Args:
    """A run small enough for a unit test that still performs gradient updates."""
    settings = dict(
        env_id="Pendulum-v1",
        total_timesteps=300,
        learning_starts=200,
        batch_size=32,
        buffer_size=10_000,
        hidden_dim=32,
        kernel_n_particles=8,
        value_n_particles=8,
        eval_n_particles=4,
        target_network_frequency=20,
        eval_episodes=1,
        eval_frequency=0,
        log_frequency=50,
        cuda=False,
    )
    settings.update(overrides)
    return sqlc.Args(**settings)


def read_summary(run_dir):
    return json.loads((Path(run_dir) / "summary.json").read_text())


# ------------------------------------------------------------------------------------------------
# The importance-sampled soft value V = α log ∫ exp(Q/α) da
# ------------------------------------------------------------------------------------------------
ALPHA = 0.5


def q_1d(a):
    """A bumpy 1-D Q whose exp(Q/α) has two peaks of different heights in [−1, 1]."""
    sin = torch.sin if torch.is_tensor(a) else math.sin  # tensors here, floats for scipy
    return 1.5 * sin(3.0 * a) + 0.8 * a**2


def partition_by_quadrature(q, alpha):
    return integrate.quad(lambda a: math.exp(q(a) / alpha), -1.0, 1.0, epsabs=1e-12)[0]


def test_soft_value_matches_quadrature_within_its_monte_carlo_error_and_converges():
    z_true = partition_by_quadrature(q_1d, ALPHA)
    v_true = ALPHA * math.log(z_true)
    generator = torch.Generator().manual_seed(0)
    repeats, errors = 4000, {}
    for num_particles in [4, 64, 1024]:
        actions = torch.rand(repeats, num_particles, generator=generator, dtype=torch.float64)
        values = sqlc.uniform_soft_value(q_1d(actions * 2 - 1), ALPHA, act_dim=1)
        # exp(V/α) is an unbiased estimate of Z: its mean over repeats is Z within 4 standard errors
        z_hat = torch.exp(values / ALPHA)
        assert abs(z_hat.mean().item() - z_true) < 4 * z_hat.std().item() / math.sqrt(repeats)
        # V itself is within a few of its own Monte-Carlo standard deviations of the truth
        assert abs(values.mean().item() - v_true) < 4 * values.std().item()
        errors[num_particles] = (values - v_true).pow(2).mean().sqrt().item()
    # the error shrinks like 1/√M: 16× the particles, about 4× smaller
    assert errors[64] < errors[4] / 2.5 and errors[1024] < errors[64] / 3
    assert errors[1024] < 0.02


def test_soft_value_in_two_dimensions_includes_the_d_log_2_proposal_density():
    q_first = lambda a: torch.sin(2 * a) if torch.is_tensor(a) else math.sin(2 * a)  # noqa: E731
    q_second = lambda a: -(a**2) + 0.5 * a  # noqa: E731
    z_true = partition_by_quadrature(q_first, ALPHA) * partition_by_quadrature(q_second, ALPHA)
    generator = torch.Generator().manual_seed(1)
    actions = torch.rand(1, 2**18, 2, generator=generator, dtype=torch.float64) * 2 - 1
    q_values = q_first(actions[..., 0]) + q_second(actions[..., 1])
    value = sqlc.uniform_soft_value(q_values, ALPHA, act_dim=2).item()
    weights = torch.exp(q_values / ALPHA) * 4.0  # importance weights exp(Q/α)/q(a), q = 1/4
    standard_error = ALPHA * (weights.std() / weights.mean()).item() / math.sqrt(2**18)
    assert abs(value - ALPHA * math.log(z_true)) < 4 * standard_error
    assert standard_error < 0.01  # far sharper than the α·d·log 2 = 0.69 the term adds


def test_soft_q_target_by_hand():
    reward = torch.tensor([1.0, 2.0, -1.0])
    terminated = torch.tensor([1.0, 0.0, 0.0])
    next_value = torch.tensor([10.0, 10.0, 4.0])
    target = sqlc.soft_q_target(reward, terminated, next_value, 0.9)
    torch.testing.assert_close(target, torch.tensor([1.0, 2.0 + 9.0, -1.0 + 3.6]))


def constant_q(obs_dim, act_dim, value):
    """A SoftQNetwork that outputs `value` for every input."""
    qf = sqlc.SoftQNetwork(obs_dim, act_dim, hidden_dim=8)
    with torch.no_grad():
        for parameter in qf.parameters():
            parameter.zero_()
        qf.net[-1].bias.fill_(value)
    return qf


def test_critic_loss_on_a_hand_built_batch_bootstraps_truncation_not_termination():
    obs_dim, act_dim, alpha, gamma, scale = 3, 2, 0.5, 0.9, 10.0
    qf, qf_target = constant_q(obs_dim, act_dim, 1.0), constant_q(obs_dim, act_dim, 4.0)
    # Q̄ ≡ 4, so V = α log ∫ exp(4/α) da over [−1, 1]² = 4 + α log 4, whatever the samples
    next_value = 4.0 + alpha * math.log(4.0)
    reward = torch.tensor([[1.0], [2.0], [3.0]])  # rows: terminated, truncated, ordinary
    terminated = torch.tensor([[1.0], [0.0], [0.0]])
    batch = (torch.randn(3, obs_dim), torch.rand(3, act_dim), reward, terminated)
    batch += (torch.randn(3, obs_dim),)
    loss, q_values, values = sqlc.critic_loss(qf, qf_target, batch, alpha, gamma, scale, 7)
    targets = np.array([10.0, 20.0 + gamma * next_value, 30.0 + gamma * next_value])
    assert loss.item() == pytest.approx(0.5 * np.mean((1.0 - targets) ** 2), rel=1e-6)
    torch.testing.assert_close(values, torch.full((3,), next_value))
    torch.testing.assert_close(q_values, torch.ones(3))


def test_each_loss_reaches_only_its_own_network():
    torch.manual_seed(0)
    sampler = sqlc.SamplingNetwork(3, 2, 16, -np.ones(2), np.ones(2))
    qf, qf_target = sqlc.SoftQNetwork(3, 2, 16), sqlc.SoftQNetwork(3, 2, 16).requires_grad_(False)
    batch = (torch.randn(32, 3), torch.rand(32, 2) * 2 - 1, torch.randn(32, 1))
    batch += (torch.zeros(32, 1), torch.randn(32, 3))
    sqlc.critic_loss(qf, qf_target, batch, 1.0, 0.99, 1.0, 8)[0].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in qf.parameters())
    assert all(p.grad is None for p in [*sampler.parameters(), *qf_target.parameters()])
    qf.zero_grad(set_to_none=True)
    log_density = sqlc.squashed_log_density(qf, alpha=0.5)
    sqlc.svgd_sampler_loss(sampler, batch[0], log_density, 8, 0.5)[0].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in sampler.parameters())
    assert all(p.grad is None for p in qf.parameters())


# ------------------------------------------------------------------------------------------------
# The tanh change of variables, the kernel, the Stein direction
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("u", [-50.0, -10.0, -0.3, 0.0, 2.0, 20.0, 50.0])
def test_tanh_log_det_is_minus_2_log_cosh_even_where_the_naive_formula_breaks(u):
    pre_tanh = torch.tensor([[u, u / 2]])
    expected = -2 * math.log(math.cosh(u)) - 2 * math.log(math.cosh(u / 2))
    assert sqlc.tanh_log_det(pre_tanh).item() == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_squashed_log_density_is_the_density_of_u_whose_tanh_has_density_exp_q_over_alpha():
    """∫ exp(log p(u)) du over the real line equals ∫ exp(Q(a)/α) da over [−1, 1]."""
    torch.manual_seed(0)
    qf = sqlc.SoftQNetwork(obs_dim=2, act_dim=1, hidden_dim=16).double()
    obs = torch.tensor([0.3, -0.7], dtype=torch.float64)
    log_density = sqlc.squashed_log_density(qf, alpha=0.4)
    u = torch.linspace(-25, 25, 400_001, dtype=torch.float64)[:, None]
    a = torch.linspace(-1, 1, 400_001, dtype=torch.float64)[:, None]
    with torch.no_grad():
        over_u = torch.trapezoid(log_density(obs.expand(len(u), -1), u).exp(), u[:, 0])
        over_a = torch.trapezoid((qf(obs.expand(len(a), -1), a) / 0.4).exp(), a[:, 0])
    assert over_u.item() == pytest.approx(over_a.item(), rel=1e-6)


def test_median_bandwidth_on_known_points():
    # squared distances between {0, 1, 4} and {0, 2}: 0, 4, 1, 1, 16, 4 → sorted 0 1 1 4 4 16;
    # the lower middle value 1 (the reference code's top-k convention) over log K_f = log 3
    fixed, updated = torch.tensor([[0.0], [1.0], [4.0]]), torch.tensor([[0.0], [2.0]])
    assert sqlc.median_bandwidth(fixed, updated).item() == pytest.approx(1 / math.log(3))
    # 2-D, batched, odd count: distances² from (0,0), (3,4), (1,1), (0,2) to (0,0) are 0, 25, 2, 4
    # → lower median of [0, 2, 4, 25] is 2; and a collapsed set gets the floor h_min
    fixed = torch.tensor([[[0.0, 0.0], [3.0, 4.0], [1.0, 1.0], [0.0, 2.0]], [[1.0, 1.0]] * 4])
    updated = torch.tensor([[[0.0, 0.0]], [[1.0, 1.0]]])
    bandwidth = sqlc.median_bandwidth(fixed, updated)
    torch.testing.assert_close(bandwidth, torch.tensor([2 / math.log(4), 1e-3]))


def test_rbf_kernel_values_by_hand_and_gradient_against_autograd():
    generator = torch.Generator().manual_seed(3)
    fixed = torch.randn(5, 3, generator=generator, dtype=torch.float64)
    updated = torch.randn(4, 3, generator=generator, dtype=torch.float64)
    h = torch.tensor(1.7, dtype=torch.float64)
    kappa, kappa_grad = sqlc.rbf_kernel(fixed, updated, h)
    for j in range(5):
        for i in range(4):
            distance_sq = sum((fixed[j, k].item() - updated[i, k].item()) ** 2 for k in range(3))
            assert kappa[j, i].item() == pytest.approx(math.exp(-distance_sq / 1.7), rel=1e-12)
    jacobian = torch.autograd.functional.jacobian(
        lambda x: sqlc.rbf_kernel(x, updated, h)[0], fixed
    )  # [K_f, K_u, K_f, d]: κ(x_j, y_i) depends on x_j alone
    for j in range(5):
        torch.testing.assert_close(kappa_grad[j], jacobian[j, :, j], rtol=1e-12, atol=1e-14)


def test_stein_direction_against_a_plain_loop():
    generator = torch.Generator().manual_seed(4)
    fixed = torch.randn(2, 6, 2, generator=generator, dtype=torch.float64)
    updated = torch.randn(2, 3, 2, generator=generator, dtype=torch.float64)
    grad_log_p = torch.randn(2, 6, 2, generator=generator, dtype=torch.float64)
    direction, _ = sqlc.stein_direction(fixed, updated, grad_log_p)
    for b in range(2):
        x, y, g = fixed[b].numpy(), updated[b].numpy(), grad_log_p[b].numpy()
        distances = sorted(float(np.sum((xj - yi) ** 2)) for xj in x for yi in y)
        h = distances[(len(distances) - 1) // 2] / math.log(6)  # lower median over log K_f
        for i in range(3):
            total = np.zeros(2)
            for j in range(6):
                kappa = math.exp(-np.sum((x[j] - y[i]) ** 2) / h)
                total += kappa * g[j] - 2 * (x[j] - y[i]) / h * kappa
            np.testing.assert_allclose(direction[b, i].numpy(), total / 6, rtol=1e-10)


def test_sampler_loss_moves_a_collapsed_sampler_up_the_log_density():
    """A sampler with zero weights outputs u = b for every ξ: the kernel terms vanish (κ = 1,
    ∇κ = 0), Δu = ∇ log p(b), and the surrogate's gradient in b is exactly −∇ log p(b)."""
    sampler = sqlc.SamplingNetwork(obs_dim=2, act_dim=2, hidden_dim=8, action_low=-np.ones(2),
                                   action_high=np.ones(2))  # fmt: skip
    with torch.no_grad():
        for parameter in sampler.parameters():
            parameter.zero_()
        sampler.net[-1].bias.copy_(torch.tensor([0.5, -1.0]))
    mode = torch.tensor([0.3, 0.2])
    log_density = lambda obs, u: -0.5 * (u - mode).pow(2).sum(-1)  # noqa: E731
    loss, direction_norm, _ = sqlc.svgd_sampler_loss(
        sampler, torch.randn(5, 2), log_density, 8, 0.5
    )
    loss.backward()
    expected = -(mode - torch.tensor([0.5, -1.0]))  # −∇ log p(b) = b − mode
    torch.testing.assert_close(sampler.net[-1].bias.grad, expected)
    assert direction_norm.item() == pytest.approx(expected.norm().item(), rel=1e-6)


# ------------------------------------------------------------------------------------------------
# The amortized SVGD sampler on a fixed, known density (no RL)
# ------------------------------------------------------------------------------------------------
MODES, MODE_STD = (-0.5, 0.5), 0.25  # a valley at 27% of the peaks' height between the modes


def bimodal_log_density_of_a(a):
    """log of ½N(a; −0.5, 0.25²) + ½N(a; 0.5, 0.25²) on [−1, 1], up to a constant."""
    parts = [-0.5 * ((a - m) / MODE_STD) ** 2 for m in MODES]
    return torch.logsumexp(torch.stack(parts), dim=0)


def test_amortized_svgd_sampler_learns_a_bimodal_density():
    """Seeds 0-4 all pass (variance within −9%..+2%, bin masses within 0.041); the reference code's
    a-space variant ends 24-32% too narrow, since its fixed point is p(a)·(1 − a²)."""
    torch.manual_seed(0)
    sampler = sqlc.SamplingNetwork(1, 1, 64, action_low=[-1.0], action_high=[1.0])
    optimizer = torch.optim.Adam(sampler.parameters(), lr=3e-3)
    obs = torch.zeros(16, 1)  # one state, 16 independent particle sets per step

    def log_density(obs, pre_tanh):  # the target for a = tanh(u), pulled back to u
        a = torch.tanh(pre_tanh[..., 0])
        return bimodal_log_density_of_a(a) + sqlc.tanh_log_det(pre_tanh)

    for _ in range(1500):
        loss, _, _ = sqlc.svgd_sampler_loss(sampler, obs, log_density, 32, 0.5)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    with torch.no_grad():
        samples = torch.tanh(sampler.particles(torch.zeros(1, 1), 20_000)[1]).flatten().numpy()
    density = lambda a: math.exp(bimodal_log_density_of_a(torch.tensor(a)).item())  # noqa: E731
    mass = integrate.quad(density, -1, 1)[0]
    mean = integrate.quad(lambda a: a * density(a), -1, 1)[0] / mass
    variance = integrate.quad(lambda a: (a - mean) ** 2 * density(a), -1, 1)[0] / mass
    assert 0.4 < np.mean(samples < 0) < 0.6  # both modes hold their half
    assert abs(samples.mean() - mean) < 0.06
    assert samples.var() == pytest.approx(variance, rel=0.15)
    edges = [-1.0, -0.6, -0.2, 0.2, 0.6, 1.0]  # two outer bins per mode, the valley in the middle
    bin_mass = [integrate.quad(density, lo, hi)[0] / mass for lo, hi in pairwise(edges)]
    sample_mass = np.histogram(samples, edges)[0] / len(samples)
    np.testing.assert_allclose(sample_mass, bin_mass, atol=0.05)


# ------------------------------------------------------------------------------------------------
# The multi-goal environment
# ------------------------------------------------------------------------------------------------
def test_multigoal_env_reward_termination_clipping_and_time_limit():
    env = gym.make("MultiGoal-v0")
    assert env.spec.max_episode_steps == 30
    obs, _ = env.reset(seed=0)
    assert np.all(np.abs(obs) < 0.5)  # starts near the origin (σ = 0.1)
    env.unwrapped.state = np.array([4.5, 0.0])
    obs, reward, terminated, truncated, _ = env.step(np.array([0.2, 0.0]))
    # −30‖a‖² − (distance to (5, 0))² + 10 for arriving within 1 of the goal
    assert reward == pytest.approx(-30 * 0.04 - 0.3**2 + 10)
    assert terminated and not truncated
    env.unwrapped.state = np.array([6.5, -0.5])
    obs, reward, terminated, _, _ = env.step(np.array([3.0, -3.0]))  # clipped to (1, −1)
    np.testing.assert_allclose(obs, [7.0, -1.5])  # and the position to the box [−7, 7]²
    assert reward == pytest.approx(-30 * 2 - (2.0**2 + 1.5**2)) and not terminated
    env.reset(seed=1)
    for step in range(30):
        _, _, terminated, truncated, _ = env.step(np.zeros(2))
        assert not terminated and truncated == (step == 29)


def test_reward_scale_defaults_follow_the_reference_code():
    assert sqlc.default_reward_scale("MultiGoal-v0") == 0.1
    assert sqlc.default_reward_scale("HalfCheetah-v4") == 30.0
    assert sqlc.default_reward_scale("Walker2d-v5") == 10.0
    assert sqlc.default_reward_scale("Ant-v4") == 300.0
    assert sqlc.default_reward_scale("MountainCarContinuous-v0") == 1.0


def test_update_target_copies_or_averages():
    online = sqlc.SoftQNetwork(3, 2, 8).double()
    target = sqlc.SoftQNetwork(3, 2, 8).double()
    before = [p.clone() for p in target.parameters()]
    sqlc.update_target(target, online, tau=0.1)
    for old, new, theta in zip(before, target.parameters(), online.parameters(), strict=True):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * theta, atol=1e-15, rtol=0)
    sqlc.update_target(target, online, tau=1.0)
    assert all(
        torch.equal(a, b) for a, b in zip(target.parameters(), online.parameters(), strict=True)
    )


# ------------------------------------------------------------------------------------------------
# The training loop
# ------------------------------------------------------------------------------------------------
def test_smoke_pendulum_performs_updates_and_writes_the_run(in_tmp):
    result = sqlc.main(tiny_args(save_model=True))
    assert result["gradient_updates"] == 100 and result["policy_updates"] == 100
    assert result["reward_scale"] == 5.0 and result["alpha"] == 1.0
    run_dir = Path(result["run_dir"])
    summary = read_summary(run_dir)
    for key in ["algorithm", "env_id", "seed", "global_step", "train_time_s", "learn_sps"]:
        assert key in summary
    assert summary["eval_episodes"] == 1 and math.isfinite(summary["eval_return_mean"])
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [row for row in rows if "losses/qf_loss" in row]
    assert [row["global_step"] for row in losses] == [250, 300]
    assert all(math.isfinite(row["losses/kernel_bandwidth"]) for row in losses)
    model = torch.load(run_dir / "model.pt", weights_only=True)
    assert {"sampler", "qf", "qf_target", "args"} <= model.keys()


def test_smoke_multigoal_with_plot_and_its_eval_checkpoint(in_tmp):
    pytest.importorskip("matplotlib")
    args = tiny_args(env_id="MultiGoal-v0", learning_starts=100, plot=True, save_model=True)
    result = sqlc.main(args)
    assert result["gradient_updates"] == 200 and result["reward_scale"] == 0.1
    assert 0 <= result["goals_reached"] <= 4 and 0 <= result["rollouts_at_goal"] <= 50
    png = Path(result["run_dir"]) / "multigoal.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    # the saved sampler, rolled out with the same seeds, reaches the goals the run reported
    model_path = str(Path(result["run_dir"]) / "model.pt")
    again = sqlc.main(sqlc.Args(eval_checkpoint=model_path, eval_episodes=1, plot=True, cuda=False))
    for key in ["goals_reached", "rollouts_at_goal"]:
        assert again[key] == result[key]
    assert (Path(again["run_dir"]) / "multigoal.png").exists()


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
    result = sqlc.main(args)
    assert result["gradient_updates"] == 40
    checkpoint = torch.load(Path(result["run_dir"]) / "checkpoint.pt", weights_only=True)
    rows = checkpoint["buffer"]["rows"]
    assert len(rows) == 80
    obs, reward, terminated, next_obs = rows[:, 0:2], rows[:, 3], rows[:, 4], rows[:, 5:7]
    # no transition crosses an episode boundary, and the stored reward is the raw one
    assert torch.equal(next_obs[:, 0], obs[:, 0] + 1) and torch.equal(next_obs[:, 1], obs[:, 1])
    torch.testing.assert_close(reward, next_obs[:, 0])
    # only even episodes terminate (at t=3); odd ones are truncated at t=5 with terminated = 0
    expected = (obs[:, 1] % 2 == 0) & (next_obs[:, 0] == 3)
    assert torch.equal(terminated.bool(), expected) and expected.any()
    assert ((obs[:, 1] % 2 == 1) & (next_obs[:, 0] == 5)).any()


def test_same_seed_same_result_and_other_seed_differs(in_tmp):
    first = sqlc.main(tiny_args())
    second = sqlc.main(tiny_args())
    third = sqlc.main(tiny_args(seed=2))
    strip = lambda summary: {k: v for k, v in summary.items() if k not in TIME_KEYS}  # noqa: E731
    assert strip(first) == strip(second)
    assert strip(first) != strip(third)


def test_resume_ends_where_an_uninterrupted_run_ends(in_tmp):
    settings = dict(total_timesteps=300, learning_starts=100, save_model=True, num_envs=2)
    straight = sqlc.main(tiny_args(**settings))
    first_half = sqlc.main(
        tiny_args(**{**settings, "total_timesteps": 150}, checkpoint_frequency=150)
    )
    resumed = sqlc.main(
        sqlc.Args(
            resume=str(Path(first_half["run_dir"]) / "checkpoint.pt"),
            total_timesteps=300,
            cuda=False,
        )
    )
    for key in ["global_step", "gradient_updates", "eval_return_mean", "episodic_return_last"]:
        assert resumed[key] == straight[key], key
    load = lambda run: torch.load(Path(run["run_dir"]) / "model.pt", weights_only=True)  # noqa: E731
    for network in ["sampler", "qf", "qf_target"]:
        for name, tensor in load(straight)[network].items():
            assert torch.equal(tensor, load(resumed)[network][name]), (network, name)


def test_ctrl_c_saves_a_checkpoint_that_resumes_exactly(in_tmp, monkeypatch):
    settings = dict(
        env_id="softrl-test/InterruptingCounting-v0",
        total_timesteps=120,
        learning_starts=30,
        batch_size=8,
        save_model=True,
    )
    monkeypatch.setitem(INTERRUPT_AT, "call", None)
    straight = sqlc.main(tiny_args(**settings))

    monkeypatch.setitem(INTERRUPT_AT, "call", 70)  # Ctrl-C during the 70th env step
    monkeypatch.setitem(INTERRUPT_AT, "calls", 0)
    interrupted = sqlc.main(tiny_args(**settings))
    assert interrupted["status"] == "interrupted" and interrupted["global_step"] == 70
    assert read_summary(interrupted["run_dir"])["status"] == "interrupted"

    monkeypatch.setitem(INTERRUPT_AT, "call", None)
    checkpoint = Path(interrupted["run_dir"]) / "checkpoint.pt"
    resumed = sqlc.main(sqlc.Args(resume=str(checkpoint), cuda=False))
    assert resumed["run_dir"] == interrupted["run_dir"]
    assert resumed["global_step"] == 120 and resumed["gradient_updates"] == 90
    for key in ["eval_return_mean", "episodic_return_last"]:
        assert resumed[key] == straight[key], key
    load = lambda run: torch.load(Path(run["run_dir"]) / "model.pt", weights_only=True)  # noqa: E731
    for name, tensor in load(straight)["sampler"].items():
        assert torch.equal(tensor, load(resumed)["sampler"][name]), name


def test_eval_checkpoint_evaluates_a_saved_policy(in_tmp):
    trained = sqlc.main(tiny_args(save_model=True, eval_episodes=2))
    model_path = str(Path(trained["run_dir"]) / "model.pt")
    result = sqlc.main(
        sqlc.Args(eval_checkpoint=model_path, eval_episodes=2, eval_n_particles=4, cuda=False)
    )
    assert result["gradient_updates"] == 0 and result["eval_episodes"] == 2
    # the saved greedy policy, evaluated with the same seeds, scores exactly what the run scored
    assert result["eval_return_mean"] == trained["eval_return_mean"]
    assert read_summary(result["run_dir"])["status"] == "evaluated"


def test_diverging_run_stops_and_keeps_the_last_good_checkpoint(in_tmp):
    args = tiny_args(
        env_id="softrl-test/InfiniteReward-v0",
        total_timesteps=200,
        learning_starts=40,
        batch_size=8,
        log_frequency=10,
        checkpoint_frequency=40,
    )
    with pytest.raises(sqlc.TrainingDiverged):
        sqlc.main(args)
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
        ({"batch_size": 512, "buffer_size": 100}, "exceeds --buffer-size"),
        ({"alpha": 0.0}, "--alpha must be positive"),
        ({"reward_scale": -1.0}, "--reward-scale must be positive"),
        ({"kernel_n_particles": 2}, "SVGD needs at least 1 and 2"),
        ({"kernel_update_ratio": 1.0}, "SVGD needs at least 1 and 2"),
        ({"plot": True}, "cannot plot Pendulum-v1"),
        ({"env_id": "MultiGoal-v0", "capture_video": True}, "cannot render videos"),
        ({"resume": "missing/checkpoint.pt"}, "does not exist"),
        ({"eval_checkpoint": "missing/model.pt"}, "does not exist"),
    ],
)
def test_bad_input_is_a_usage_error_that_writes_nothing(in_tmp, overrides, message):
    with pytest.raises(sqlc.UsageError, match=message):
        sqlc.main(tiny_args(**overrides))
    assert not Path("runs").exists()


def test_plot_without_matplotlib_is_a_usage_error(in_tmp, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(sqlc.UsageError, match="pip install matplotlib"):
        sqlc.main(tiny_args(env_id="MultiGoal-v0", plot=True))
    assert not Path("runs").exists()


def test_corrupt_resume_file_is_a_usage_error(in_tmp):
    Path("checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(sqlc.UsageError, match="cannot be read"):
        sqlc.main(tiny_args(resume="checkpoint.pt"))
    assert not Path("runs").exists()


@pytest.mark.parametrize(
    "cli", [["--env-id", "CartPole-v1"], ["--resume", "nowhere.pt"], ["--kernel-n-particles", "1"]]
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
    for flag in ["--env-id", "--reward-scale", "--value-n-particles", "--kernel-n-particles",
                 "--kernel-update-ratio", "--target-network-frequency", "--plot"]:  # fmt: skip
        assert flag in process.stdout
    assert "uniform action samples per next state" in process.stdout


# ------------------------------------------------------------------------------------------------
# Learning
# ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_multigoal_policy_keeps_at_least_three_goals(in_tmp):
    """The paper's Figure 1 with the reference code's MultiGoal settings, for 4k of its 100k steps:
    50 rollouts of the sampler from the origin end at ≥ 3 distinct goals. A uniformly random policy
    also touches all four goals by chance, but only ~13 of 50 rollouts end at one (an untrained
    sampler: none), so most rollouts must end at a goal too, and the greedy return must be high
    (untrained: −450 to −750)."""
    result = sqlc.main(
        sqlc.Args(
            env_id="MultiGoal-v0",
            total_timesteps=4_000,
            learning_starts=100,
            batch_size=64,
            kernel_n_particles=32,
            eval_episodes=5,
            eval_frequency=0,
            cuda=False,
        )
    )
    assert result["goals_reached"] >= 3, result
    assert result["rollouts_at_goal"] >= 30, result
    assert result["eval_return_mean"] >= -200, result


@pytest.mark.slow
def test_learns_pendulum_within_20k_steps(in_tmp):
    """Eval return ≥ −300 after 8k env steps, with a setting chosen for speed (measured here, seeds
    1-3: −195, −196, −178 at 8k): 64-unit layers, Polyak targets, Adam 1e-3."""
    result = sqlc.main(
        sqlc.Args(
            env_id="Pendulum-v1",
            total_timesteps=8_000,
            hidden_dim=64,
            tau=0.005,
            target_network_frequency=1,
            q_lr=1e-3,
            policy_lr=1e-3,
            eval_frequency=0,
            eval_episodes=10,
            cuda=False,
        )
    )
    assert result["eval_return_mean"] >= -300, result
