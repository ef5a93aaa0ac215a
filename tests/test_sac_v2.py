"""Tests of sac_v2.py: the soft-actor-critic math against independent oracles, the training loop's
bookkeeping at episode ends, checkpoints, bad input, and short runs that really learn."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import MAX_EPISODE_STEPS, random_transitions
from torch.distributions import Normal, TanhTransform, TransformedDistribution

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


def reference_distribution(mean, log_std):
    """a = tanh(u), u ~ N(mean, exp(log_std)), built from torch.distributions: an independent oracle."""
    return TransformedDistribution(Normal(mean, log_std.exp()), [TanhTransform()])


# ------------------------------------------------------------------------------------------------
# Math
# ------------------------------------------------------------------------------------------------
def test_squashed_log_prob_matches_torch_distributions():
    generator = torch.Generator().manual_seed(0)
    shape = (512, 4)
    mean = torch.randn(shape, generator=generator, dtype=torch.float64)
    log_std = torch.rand(shape, generator=generator, dtype=torch.float64) * 3 - 2
    noise = torch.randn(shape, generator=generator, dtype=torch.float64)
    pre_tanh = (mean + log_std.exp() * noise).clamp(
        -4, 4
    )  # keep atanh inside torch.distributions accurate
    noise = (pre_tanh - mean) / log_std.exp()

    ours = sac_v2.squashed_gaussian_log_prob(noise, log_std, pre_tanh)
    oracle = reference_distribution(mean, log_std).log_prob(torch.tanh(pre_tanh)).sum(-1)
    torch.testing.assert_close(ours, oracle, atol=1e-5, rtol=0)


@pytest.mark.parametrize("pre_tanh_value", [-50.0, -20.0, -10.0, 10.0, 20.0, 50.0])
def test_squashed_log_prob_is_finite_and_exact_where_naive_formula_breaks(pre_tanh_value):
    pre_tanh = torch.full((1, 2), pre_tanh_value)
    log_std = torch.zeros(1, 2)  # mean 0, σ 1: the noise is the pre-tanh value itself

    naive_log_det = torch.log(1 - torch.tanh(pre_tanh).pow(2))
    assert not torch.isfinite(naive_log_det).all(), "the naive formula should break here"

    ours = sac_v2.squashed_gaussian_log_prob(pre_tanh, log_std, pre_tanh)
    assert torch.isfinite(ours).all()
    # float64 closed form: log(1 − tanh² u) = −2 log cosh u
    u = pre_tanh_value
    gaussian = -0.5 * u * u - 0.5 * math.log(2 * math.pi)
    expected = 2 * gaussian + 2 * 2 * math.log(math.cosh(u))
    assert ours.item() == pytest.approx(expected, rel=1e-6)


def test_actor_sample_log_prob_is_the_density_of_the_unit_action():
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
    torch.testing.assert_close(
        env_action, unit_action * torch.tensor([2.0, 0.5]) + torch.tensor([0.0, 0.5])
    )

    mean, log_std = actor(obs)
    inside = unit_action.abs().max(-1).values < 0.999  # atanh is ill-conditioned at the edges
    oracle = reference_distribution(mean, log_std).log_prob(unit_action).sum(-1)
    torch.testing.assert_close(log_prob[inside], oracle[inside], atol=2e-3, rtol=0)
    assert inside.sum() > 200


def test_log_prob_and_entropy_do_not_depend_on_the_env_action_units():
    """Issue 12, bug 1: log π is measured on the [−1, 1] action, so a ±0.4 box (Humanoid) and a
    ±1 box give the same entropy and H̄ = −dim(A) means the paper's target on both."""
    torch.manual_seed(0)
    unit_box = sac_v2.Actor(3, 17, 32, -np.ones(17), np.ones(17))
    humanoid_box = sac_v2.Actor(3, 17, 32, np.full(17, -0.4), np.full(17, 0.4))
    humanoid_box.load_state_dict(
        unit_box.state_dict() | {"action_scale": humanoid_box.action_scale}
    )
    obs = torch.randn(64, 3)
    torch.manual_seed(1)
    _, log_prob_unit = unit_box.sample(obs)
    torch.manual_seed(1)
    _, log_prob_humanoid = humanoid_box.sample(obs)
    torch.testing.assert_close(log_prob_humanoid, log_prob_unit, atol=0, rtol=0)


def test_log_prob_uses_the_drawn_noise_when_the_policy_is_nearly_deterministic(monkeypatch):
    """Issue 12, bug 12: with log σ = −20 and μ = 1, (u − μ)/σ rounds to 0 in float32; the drawn ε
    gives the exact Gaussian term −½ε² − log σ − ½ log 2π."""
    actor = sac_v2.Actor(3, 2, 8, -np.ones(2), np.ones(2))
    monkeypatch.setattr(
        actor, "forward", lambda obs: (torch.ones(len(obs), 2), torch.full((len(obs), 2), -20.0))
    )
    torch.manual_seed(3)
    noise = torch.randn(4, 2).double()
    torch.manual_seed(3)
    _, log_prob = actor.sample(torch.zeros(4, 3))
    pre_tanh = 1.0 + math.exp(-20.0) * noise
    log_det = torch.log(1 - torch.tanh(pre_tanh) ** 2)
    expected = (-0.5 * noise**2 + 20.0 - 0.5 * math.log(2 * math.pi) - log_det).sum(-1)
    torch.testing.assert_close(log_prob.double(), expected, atol=1e-4, rtol=0)


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
    # log π(a′) = Σ_j [log N(0; 0, 1) − log(1 − tanh² 0)], on the [−1, 1] action (not env units)
    next_log_prob = act_dim * (-0.5 * math.log(2 * math.pi))

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
    "log_prob_value, target_entropy, alpha_should",
    [
        (3.0, -1.0, "rise"),  # entropy −3 below the target −1
        (-3.0, -1.0, "fall"),  # entropy 3 above it
        (
            1.0,
            -2.0,
            "fall",
        ),  # |log π| < |H̄|: entropy −1 is above −2 (a sign flip in log π + H̄ rises)
        (-1.5, 2.0, "rise"),  # |log π| < |H̄|: entropy 1.5 is below 2
    ],
)
def test_temperature_update_direction(log_prob_value, target_entropy, alpha_should):
    log_alpha = torch.tensor(0.0, requires_grad=True)
    optimizer = torch.optim.SGD([log_alpha], lr=0.1)
    log_prob = torch.full((64,), log_prob_value, requires_grad=True)
    loss = sac_v2.temperature_loss(log_alpha, log_prob, target_entropy=target_entropy)
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


def test_critic_loss_reaches_only_the_critics():
    actor, qf, qf_target = networks()
    loss, _ = sac_v2.critic_loss(
        qf, qf_target, actor, random_transitions(), torch.tensor(0.3), 0.99
    )
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in qf.parameters())
    assert all(p.grad is None for p in actor.parameters())
    assert all(p.grad is None for p in qf_target.parameters())


def test_actor_loss_reaches_the_actor_through_the_action():
    actor, qf, _ = networks()
    loss, log_prob = sac_v2.actor_loss(actor, qf, random_transitions()[0], torch.tensor(0.1))
    loss.backward(inputs=list(actor.parameters()))  # as update() takes it
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in actor.parameters())
    assert all(p.grad is None for p in qf.parameters())
    assert log_prob.requires_grad  # J(α) gets log π and detaches it itself


def test_actor_loss_follows_the_gradient_of_the_critic_through_the_action():
    """J_π's gradient must carry ∂Q/∂a: the same loss with the critic's output detached differs."""
    actor, qf, _ = networks()
    obs = random_transitions()[0]
    torch.manual_seed(5)
    loss, _ = sac_v2.actor_loss(actor, qf, obs, torch.tensor(1.0))
    with_critic = torch.autograd.grad(loss, list(actor.parameters()))
    torch.manual_seed(5)
    action, log_prob = actor.sample(obs)
    entropy_only = torch.autograd.grad(log_prob.mean(), list(actor.parameters()))
    assert any(not torch.allclose(a, b) for a, b in zip(with_critic, entropy_only, strict=True))


def test_critic_target_draws_the_next_action_at_the_next_state(monkeypatch):
    """y uses a′ ~ π(·|s′) and log π(a′|s′): with a policy whose mean differs between s and s′, an
    oracle built from torch.distributions at s′ matches, one built at s does not."""
    actor, qf, qf_target = networks()
    monkeypatch.setattr(torch, "randn_like", torch.zeros_like)  # ε = 0: a′ = tanh(μ(s′))
    batch = random_transitions()
    obs, action, reward, terminated, next_obs = batch
    alpha, gamma = torch.tensor(0.3), 0.9
    loss, _ = sac_v2.critic_loss(qf, qf_target, actor, batch, alpha, gamma)

    def oracle(state):
        with torch.no_grad():
            mean, log_std = actor(state)
            next_action = torch.tanh(mean)
            log_prob = reference_distribution(mean, log_std).log_prob(next_action).sum(-1)
            next_q = qf_target(next_obs, next_action).min(dim=0).values
            y = reward[:, 0] + gamma * (1 - terminated[:, 0]) * (next_q - alpha * log_prob)
            return 0.5 * (qf(obs, action) - y).pow(2).mean(dim=1).sum().item()

    assert loss.item() == pytest.approx(oracle(next_obs), rel=1e-4)
    assert abs(oracle(obs) - oracle(next_obs)) > 1e-2 * abs(oracle(next_obs))  # the test can tell


def test_polyak_update_matches_its_formula():
    _, qf, qf_target = networks(dtype=torch.float64)
    before = [p.clone() for p in qf_target.parameters()]
    sac_v2.polyak_update(qf_target, qf, tau=0.005)
    for old, new, online in zip(before, qf_target.parameters(), qf.parameters(), strict=True):
        torch.testing.assert_close(new, 0.995 * old + 0.005 * online, atol=1e-15, rtol=0)
        assert new.grad is None and not new.requires_grad


def one_update(qf_target_offset=0.0, q_lr=0.0, optimizer=torch.optim.Adam, reward_scale=1.0,
               flat_critics=False, autotune=True, **settings):  # fmt: skip
    """One sac_v2.update from a fixed start; the target critics shifted by `qf_target_offset`,
    every network stepped by `optimizer(params, lr, **settings)`."""
    actor, qf, qf_target = networks()
    with torch.no_grad():
        if flat_critics:  # Q_i(s, a) = constant: only the entropy term moves the actor
            for weight in qf.weights:
                weight.zero_()
        for p_target, p in zip(qf_target.parameters(), qf.parameters(), strict=True):
            p_target.copy_(p + qf_target_offset)
    log_alpha = torch.tensor(-1.0, requires_grad=autotune)
    optimizers = [
        optimizer(qf.parameters(), lr=q_lr, **settings),
        optimizer(actor.parameters(), lr=1e-2, **settings),
        optimizer([log_alpha], lr=1e-2, **settings) if autotune else None,
    ]
    torch.manual_seed(7)
    obs, action, reward, terminated, next_obs = random_transitions()
    batch = (obs, action, reward * reward_scale, terminated, next_obs)
    losses = sac_v2.update(batch, actor, qf, qf_target, log_alpha, *optimizers, 0.99, 0.005, -2.0)
    return actor, qf, qf_target, log_alpha, losses


def test_update_trains_the_actor_against_the_online_critics_not_the_targets():
    """With the critic step frozen (lr 0), target critics with other weights change the critic loss
    but must leave the actor's step unchanged: J_π uses the online Q_i."""
    actor_a, _, _, log_alpha_a, losses_a = one_update(qf_target_offset=0.0)
    actor_b, _, _, log_alpha_b, losses_b = one_update(qf_target_offset=0.3)
    assert losses_a["losses/qf_loss"] != losses_b["losses/qf_loss"]  # the targets did differ
    for a, b in zip(actor_a.parameters(), actor_b.parameters(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(log_alpha_a, log_alpha_b)


def test_update_steps_every_network_and_moves_the_targets_by_polyak():
    actor_before, qf_before, _ = networks()  # one_update's target starts as a copy of qf
    actor, qf, qf_target, log_alpha, losses = one_update(qf_target_offset=0.0, q_lr=1e-2)
    for new, old in [(actor, actor_before), (qf, qf_before)]:
        assert all(
            not torch.equal(a, b) for a, b in zip(new.parameters(), old.parameters(), strict=True)
        )
    assert log_alpha.item() != -1.0
    for target, old, online in zip(
        qf_target.parameters(), qf_before.parameters(), qf.parameters(), strict=True
    ):
        torch.testing.assert_close(target, 0.995 * old + 0.005 * online)
        assert not target.requires_grad
    assert all(not t.requires_grad for t in losses.values())


def test_twin_critics_are_two_independent_mlps():
    """The batched module equals two separate nn.Linear MLPs built from its weights."""
    _, qf, _ = networks()
    obs, action = random_transitions()[:2]
    x = torch.cat([obs, action], -1)
    for i in range(2):
        hidden = x
        for layer, (weight, bias) in enumerate(zip(qf.weights, qf.biases, strict=True)):
            hidden = torch.nn.functional.linear(hidden, weight[i].T, bias[i, 0])
            hidden = torch.relu(hidden) if layer < 2 else hidden
        torch.testing.assert_close(qf(obs, action)[i], hidden.squeeze(-1))


def parameters(*networks) -> list[torch.Tensor]:
    return [p.detach().clone() for network in networks for p in network.parameters()]


def differ(first: list[torch.Tensor], second: list[torch.Tensor]) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_the_actor_step_leaves_the_critics_gradients_as_the_critic_loss_made_them():
    """Each loss reaches only its own network: after update(), the critics' .grad is J_Q's alone."""
    actor, qf, _, _, _ = one_update(q_lr=1e-2)
    actor_0, qf_0, qf_target_0 = networks()
    qf_target_0.load_state_dict(qf_0.state_dict())  # as one_update starts it
    torch.manual_seed(7)
    batch = random_transitions()
    loss, _ = sac_v2.critic_loss(qf_0, qf_target_0, actor_0, batch, torch.tensor(-1.0).exp(), 0.99)
    loss.backward()
    for p, p_0 in zip(qf.parameters(), qf_0.parameters(), strict=True):
        torch.testing.assert_close(p.grad, p_0.grad)
    assert all(p.grad is not None for p in actor.parameters())


def test_the_optimizers_own_settings_hold():
    """weight decay changes the step; SGD in place of Adam trains; clipping between backward()
    and step() sees the gradients (the update keeps the zero_grad/backward/step idiom)."""
    plain = one_update(q_lr=1e-2)
    decayed = one_update(q_lr=1e-2, weight_decay=10.0)
    assert differ(parameters(plain[0], plain[1]), parameters(decayed[0], decayed[1]))
    sgd = one_update(q_lr=1e-2, optimizer=torch.optim.SGD)
    actor_0, qf_0, _ = networks()
    assert differ(parameters(sgd[0]), parameters(actor_0))
    assert differ(parameters(sgd[1]), parameters(qf_0))
    assert all(torch.isfinite(value) for value in sgd[4].values())

    class ClippingAdam(torch.optim.Adam):
        def step(self, closure=None):
            params = [p for group in self.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, max_norm=1e-3)
            return super().step(closure)

    unclipped = one_update(q_lr=1e-2, reward_scale=1e3, optimizer=torch.optim.SGD)
    clipped = one_update(q_lr=1e-2, reward_scale=1e3, optimizer=ClippingAdam)
    adam = one_update(q_lr=1e-2, reward_scale=1e3)
    assert differ(parameters(clipped[1]), parameters(adam[1]))
    assert differ(parameters(clipped[1]), parameters(unclipped[1]))


def test_an_actor_step_against_flat_critics_raises_the_policy_entropy():
    """J_π carries α∇_φ log π: with Q flat in the action, one actor step must raise the entropy."""
    obs = random_transitions()[0]

    def entropy(actor):  # −E[log π] on fixed noise
        torch.manual_seed(3)
        with torch.no_grad():
            return -actor.sample(obs)[1].mean().item()

    actor_0, _, _ = networks()
    actor, _, _, _, losses = one_update(flat_critics=True, autotune=False)
    assert entropy(actor) > entropy(actor_0) + 1e-3


# ------------------------------------------------------------------------------------------------
# The training loop
# ------------------------------------------------------------------------------------------------
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


def test_smoke_pendulum_trains_every_network_and_logs_its_losses(in_tmp):
    """The run machinery is tested in test_harness.py; here what is SAC v2's own."""
    result = sac_v2.main(tiny_args(save_model=True))
    assert result["gradient_updates"] == result["policy_updates"] == 200
    assert -2000 < result["eval_return_mean"] <= 0 and result["episodic_return_last"] < 0
    assert result["alpha"] != 1.0 and result["target_entropy"] == -1.0  # α was trained
    metrics = (Path(result["run_dir"]) / "metrics.jsonl").read_text().splitlines()
    keys = set().union(*(json.loads(line) for line in metrics))
    assert {"losses/qf_loss", "losses/actor_loss", "losses/alpha_loss", "losses/alpha"} <= keys
    assert {"losses/qf1_values", "losses/qf2_values", "charts/policy_entropy"} <= keys
    model = torch.load(Path(result["run_dir"]) / "model.pt", weights_only=True)
    assert {"actor", "qf", "qf_target", "log_alpha", "args"} <= model.keys()
    assert model["log_alpha"].exp().item() == pytest.approx(result["alpha"])


def test_a_fixed_temperature_of_zero_trains_and_saves(in_tmp):
    """--no-autotune --alpha 0 (log α = −inf: no entropy term at all) is a valid run, not a diverged one."""
    result = sac_v2.main(tiny_args(autotune=False, alpha=0.0, save_model=True))
    assert result["status"] == "finished" and result["alpha"] == 0.0
    assert result["target_entropy"] is None
    model = torch.load(Path(result["run_dir"]) / "model.pt", weights_only=True)
    assert "log_alpha" not in model and model["report"]["alpha"] == 0.0


def test_smoke_mujoco_with_two_envs(in_tmp):
    result = sac_v2.main(
        tiny_args(env_id="Hopper-v4", num_envs=2, total_timesteps=300, learning_starts=100)
    )
    summary = result
    assert summary["env_id"] == "Hopper-v4" and summary["status"] == "finished"
    assert summary["global_step"] == 300 and summary["gradient_updates"] == 200
    assert summary["target_entropy"] == -3.0  # −dim(A) for Hopper's 3 actuators
    assert math.isfinite(summary["eval_return_mean"]) and summary["eval_return_mean"] > 0


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"env_id": "CartPole-v1"}, "Discrete action space"),
        ({"alpha": float("nan"), "autotune": False}, "--alpha"),
        ({"alpha": -1.0, "autotune": False}, "--alpha"),
        ({"target_entropy": float("inf")}, "--target-entropy"),
        ({"q_lr": 0.0}, "--q-lr must be positive"),
        ({"hidden_dim": 0}, "--hidden-dim must be positive"),
    ],
)
def test_bad_input_is_a_usage_error_that_writes_nothing(in_tmp, overrides, message):
    with pytest.raises(sac_v2.UsageError, match=message):
        sac_v2.main(tiny_args(**overrides))
    assert not Path("runs").exists()


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
