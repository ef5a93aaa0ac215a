"""Tests of sac_v1.py: the value, Q and policy losses against hand-built networks with closed-form
outputs, the log-density, the reward-scale equivalence, gradient isolation, the update, the training
loop's bookkeeping, the script's own flags, and a short run that really learns.
(The run harness shared by the deep-RL scripts is tested once, in test_harness.py.)"""

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import tyro
from conftest import MAX_EPISODE_STEPS, random_transitions
from torch.distributions import AffineTransform, Normal, TanhTransform, TransformedDistribution

import sac_v1


def tiny_args(**overrides) -> sac_v1.Args:
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
    return sac_v1.Args(**settings)


def reference_distribution(mean, log_std, scale=1.0, bias=0.0):
    """The squashed (and scaled) Gaussian built from torch.distributions: an independent oracle."""
    transforms = [TanhTransform(), AffineTransform(loc=bias, scale=scale)]
    return TransformedDistribution(Normal(mean, log_std.exp()), transforms)


# ------------------------------------------------------------------------------------------------
# Hand-built networks whose outputs are known in closed form
# ------------------------------------------------------------------------------------------------
OFFSET = 10.0  # every test input stays within ±OFFSET, so relu(x + OFFSET) = x + OFFSET
# (float32 rounds x + OFFSET to ~1e-6, hence the absolute tolerances below)


def affine_value_network(weight, constant, hidden_dim=8):
    """A SoftValueNetwork computing V(s) = constant + weight·s exactly (for |s| < OFFSET)."""
    n = len(weight)
    vf = sac_v1.SoftValueNetwork(n, hidden_dim)
    first, second, last = vf.net[0], vf.net[2], vf.net[4]
    with torch.no_grad():
        for parameter in vf.parameters():
            parameter.zero_()
        first.weight[:n, :n] = torch.eye(n)  # h1 = s + OFFSET  (positive, so relu passes it)
        first.bias[:n] = OFFSET
        second.weight[:n, :n] = torch.eye(n)  # h2 = h1
        last.weight[0, :n] = torch.tensor(weight)
        last.bias[0] = constant - OFFSET * sum(weight)
    return vf


def affine_twin_q(obs_dim, action_weights, constants, hidden_dim=8):
    """A TwinSoftQNetwork computing Q_i(s, a) = constants[i] + action_weights[i]·a exactly."""
    act_dim = len(action_weights[0])
    qf = sac_v1.TwinSoftQNetwork(obs_dim, act_dim, hidden_dim)
    with torch.no_grad():
        for parameter in qf.parameters():
            parameter.zero_()
        for i in range(2):
            for j in range(act_dim):
                qf.weights[0][i, obs_dim + j, j] = 1.0  # h1_j = a_j + OFFSET
                qf.biases[0][i, 0, j] = OFFSET
                qf.weights[1][i, j, j] = 1.0  # h2_j = h1_j
                qf.weights[2][i, j, 0] = action_weights[i][j]
            qf.biases[2][i, 0, 0] = constants[i] - OFFSET * sum(action_weights[i])
    return qf


def constant_actor(obs_dim, act_dim, mean, log_std, low, high):
    """An Actor with μ(s) = mean and log σ(s) = log_std in every state."""
    actor = sac_v1.Actor(obs_dim, act_dim, 8, np.full(act_dim, low), np.full(act_dim, high))
    with torch.no_grad():
        for parameter in actor.parameters():
            parameter.zero_()
        actor.mean_and_log_std.bias.copy_(torch.tensor([mean] * act_dim + [log_std] * act_dim))
    return actor


def closed_form_log_prob(mean, log_std, act_dim):
    """log π of the [−1, 1] action at ε = 0 (u = μ): Σ_j [log N(μ; μ, σ) − log(1 − tanh² μ)]."""
    per_dim = -log_std - 0.5 * math.log(2 * math.pi) - math.log(1 - math.tanh(mean) ** 2)
    return act_dim * per_dim


def test_hand_built_networks_compute_their_formulas():
    """The helpers above are oracles only if they really compute what they say."""
    obs = torch.randn(5, 3)
    action = torch.rand(5, 2) * 2 - 1
    vf = affine_value_network([1.0, -2.0, 0.5], 0.25)
    torch.testing.assert_close(vf(obs), 0.25 + obs @ torch.tensor([1.0, -2.0, 0.5]))
    qf = affine_twin_q(3, [[3.0, 3.0], [-1.0, 0.0]], [1.0, 2.0])
    q = qf(obs, action)
    torch.testing.assert_close(q[0], 1.0 + 3.0 * action.sum(-1))
    torch.testing.assert_close(q[1], 2.0 - action[:, 0])


# ------------------------------------------------------------------------------------------------
# The log-density of the squashed Gaussian
# ------------------------------------------------------------------------------------------------
def test_squashed_log_prob_matches_torch_distributions():
    generator = torch.Generator().manual_seed(0)
    shape = (512, 4)
    mean = torch.randn(shape, generator=generator, dtype=torch.float64).clamp(-2, 2)
    log_std = torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 2
    noise = torch.randn(shape, generator=generator, dtype=torch.float64).clamp(-2, 2)
    pre_tanh = (
        mean + log_std.exp() * noise
    )  # |u| ≤ 4 keeps atanh inside torch.distributions accurate

    ours = sac_v1.squashed_gaussian_log_prob(noise, log_std, pre_tanh)
    oracle = reference_distribution(mean, log_std).log_prob(torch.tanh(pre_tanh)).sum(-1)
    torch.testing.assert_close(ours, oracle, atol=1e-8, rtol=0)


@pytest.mark.parametrize("pre_tanh_value", [-50.0, -20.0, -10.0, 10.0, 20.0, 50.0])
def test_squashed_log_prob_is_finite_and_exact_where_naive_formula_breaks(pre_tanh_value):
    pre_tanh = torch.full((1, 2), pre_tanh_value)  # μ = 0, σ = 1, so the noise is u itself
    assert not torch.isfinite(torch.log(1 - torch.tanh(pre_tanh).pow(2))).all()

    ours = sac_v1.squashed_gaussian_log_prob(pre_tanh, torch.zeros(1, 2), pre_tanh)
    # float64 closed form: log(1 − tanh² u) = −2 log cosh u
    u = pre_tanh_value
    gaussian = -0.5 * u * u - 0.5 * math.log(2 * math.pi)
    expected = 2 * gaussian + 2 * 2 * math.log(math.cosh(u))
    assert ours.item() == pytest.approx(expected, rel=1e-6)


def test_actor_sample_log_prob_is_the_density_of_the_unit_action():
    torch.manual_seed(0)
    low, high = np.array([-2.0, 0.0]), np.array([2.0, 1.0])
    actor = sac_v1.Actor(obs_dim=3, act_dim=2, hidden_dim=32, action_low=low, action_high=high)
    obs = torch.randn(256, 3)
    unit_action, log_prob = actor.sample(obs)
    env_action = torch.as_tensor(actor.to_env_action(unit_action))
    assert (env_action >= torch.as_tensor(low)).all()
    assert (env_action <= torch.as_tensor(high)).all()
    torch.testing.assert_close(env_action, unit_action * torch.tensor([2.0, 0.5]) + torch.tensor([0.0, 0.5]))  # fmt: skip

    mean, log_std = actor(obs)
    inside = unit_action.abs().max(-1).values < 0.999  # atanh is ill-conditioned at the edges
    oracle = reference_distribution(mean, log_std).log_prob(unit_action).sum(-1)
    torch.testing.assert_close(log_prob[inside], oracle[inside], atol=2e-3, rtol=0)
    assert inside.sum() > 200


def test_log_prob_and_entropy_do_not_depend_on_the_env_action_units():
    """Issue 12, bug 1: log π is measured on the [−1, 1] action the critics see. An actor for a
    ±0.4 box (Humanoid's) and one for a ±1 box, with the same weights and the same noise, give the
    same log π; in env units they would differ by Σ_j log 0.4 = 17 · (−0.92) on Humanoid."""
    act_dim = 17
    wide = sac_v1.Actor(5, act_dim, 16, -np.ones(act_dim), np.ones(act_dim))
    narrow = sac_v1.Actor(5, act_dim, 16, np.full(act_dim, -0.4), np.full(act_dim, 0.4))
    narrow.load_state_dict(wide.state_dict() | {"action_scale": narrow.action_scale})
    obs = torch.randn(64, 5)
    torch.manual_seed(1)
    wide_action, wide_log_prob = wide.sample(obs)
    torch.manual_seed(1)
    narrow_action, narrow_log_prob = narrow.sample(obs)
    torch.testing.assert_close(narrow_action, wide_action, rtol=0, atol=0)
    torch.testing.assert_close(narrow_log_prob, wide_log_prob, rtol=0, atol=0)
    # the two actors really do act on different boxes
    np.testing.assert_allclose(narrow.to_env_action(narrow_action), 0.4 * wide.to_env_action(wide_action), rtol=1e-6)  # fmt: skip


def test_log_prob_uses_the_drawn_noise_when_sigma_is_tiny():
    """Issue 12, bug 12: with μ = 1 and log σ = −20, u = 1 + 2e-9·ε rounds to 1 in float32, so
    recomputing ε = (u − μ)/σ would give 0; log π must use the ε that was drawn."""
    act_dim = 3
    actor = constant_actor(2, act_dim, mean=1.0, log_std=-20.0, low=-1.0, high=1.0)
    obs = torch.zeros(8, 2)
    torch.manual_seed(4)
    _, log_prob = actor.sample(obs)
    torch.manual_seed(4)
    noise = torch.randn(8, act_dim).double()  # the ε that sample() drew
    u = 1.0 + math.exp(-20.0) * noise
    expected = -0.5 * noise**2 + 20.0 - 0.5 * math.log(2 * math.pi) + 2 * torch.log(torch.cosh(u))
    expected = expected.sum(-1)
    assert (0.5 * noise**2).sum(-1).min() > 0.01  # the term a recomputed ε would lose
    torch.testing.assert_close(log_prob.double(), expected, rtol=1e-6, atol=0)


# ------------------------------------------------------------------------------------------------
# The losses
# ------------------------------------------------------------------------------------------------
def test_value_target_uses_fresh_policy_actions_and_the_twin_minimum(monkeypatch):
    obs_dim, act_dim, mean, log_std, scale, alpha = 3, 2, 0.5, -1.0, 2.0, 0.3
    actor = constant_actor(obs_dim, act_dim, mean, log_std, low=-scale, high=scale)
    monkeypatch.setattr(torch, "randn_like", torch.zeros_like)  # ε = 0: ã = tanh(μ) exactly
    # Q_1 = 1 + 3(a_1 + a_2), Q_2 = 2 − (a_1 + a_2): at the policy's ã = tanh(0.5) ≈ 0.46 the
    # minimum is Q_2; at the replayed actions (sum −1.4) it would be Q_1.
    qf = affine_twin_q(obs_dim, [[3.0, 3.0], [-1.0, -1.0]], [1.0, 2.0])
    v_weight, v_constant = [1.0, -2.0, 0.5], 0.25
    vf = affine_value_network(v_weight, v_constant)
    vf_target = affine_value_network([0.0, 0.0, 0.0], 100.0).requires_grad_(False)

    obs = torch.tensor([[0.1, 0.2, 0.3], [-1.0, 0.5, 2.0], [0.0, 0.0, -3.0], [2.0, 1.0, 1.0]])
    replayed_action = torch.tensor([[-0.9, -0.5]] * 4)
    batch = (obs, replayed_action, torch.ones(4, 1), torch.zeros(4, 1), obs + 1.0)
    losses = sac_v1.sac_v1_losses(
        actor, qf, vf, vf_target, torch.tensor(math.log(alpha)), batch, 0.99, 5.0, -2.0
    )

    fresh = math.tanh(mean)  # the policy's action, in [−1, 1] units, in every dimension
    q_min = min(1.0 + 3.0 * 2 * fresh, 2.0 - 2 * fresh)
    log_prob = closed_form_log_prob(mean, log_std, act_dim)  # of the [−1, 1] action: no log 2
    target = q_min - alpha * log_prob
    values = v_constant + obs.double().numpy() @ np.array(v_weight)
    np.testing.assert_allclose(losses["value_target"].numpy(), target, rtol=1e-5)
    np.testing.assert_allclose(losses["log_prob"].numpy(), log_prob, rtol=1e-5)
    assert losses["vf_loss"].item() == pytest.approx(
        0.5 * np.mean((values - target) ** 2), rel=1e-5
    )
    assert not losses["value_target"].requires_grad
    # the same ã drives the policy loss: J_π = α log π(ã|s) − min_i Q_i(s, ã)
    assert losses["actor_loss"].item() == pytest.approx(alpha * log_prob - q_min, rel=1e-5)


def test_q_target_bootstraps_from_the_target_value_network_and_stops_only_at_termination():
    obs_dim, act_dim, gamma, reward_scale = 3, 2, 0.9, 5.0
    qf = affine_twin_q(obs_dim, [[1.0, 0.0], [0.0, -2.0]], [0.5, 1.5])
    vf = affine_value_network([9.0, 9.0, 9.0], -7.0)  # the online V must not be the bootstrap
    target_weight, target_constant = [1.0, -1.0, 2.0], 3.0
    vf_target = affine_value_network(target_weight, target_constant).requires_grad_(False)
    actor = constant_actor(obs_dim, act_dim, 0.0, 0.0, low=-1.0, high=1.0)

    # rows: terminated, truncated (stored with terminated = 0), ordinary
    obs = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [2.0, 0.0, -1.0]])
    action = torch.tensor([[0.5, -0.5], [1.0, 0.2], [-0.3, 0.9]])
    reward = torch.tensor([[1.0], [2.0], [-3.0]])
    terminated = torch.tensor([[1.0], [0.0], [0.0]])
    next_obs = torch.tensor([[4.0, 1.0, 0.0], [-2.0, 3.0, 1.0], [0.5, 0.5, 0.5]])
    batch = (obs, action, reward, terminated, next_obs)
    losses = sac_v1.sac_v1_losses(
        actor, qf, vf, vf_target, torch.tensor(0.0), batch, gamma, reward_scale, -2.0
    )

    next_value = target_constant + next_obs.double().numpy() @ np.array(target_weight)
    r, d = reward.double().numpy()[:, 0], terminated.double().numpy()[:, 0]
    expected_target = reward_scale * r + gamma * (1 - d) * next_value
    np.testing.assert_allclose(losses["q_target"].numpy(), expected_target, rtol=1e-6, atol=1e-5)
    a = action.double().numpy()
    q1, q2 = 0.5 + a[:, 0], 1.5 - 2.0 * a[:, 1]
    expected_loss = sum(0.5 * np.mean((q - expected_target) ** 2) for q in (q1, q2))
    assert losses["qf_loss"].item() == pytest.approx(expected_loss, rel=1e-5)
    np.testing.assert_allclose(losses["q_values"].numpy(), np.stack([q1, q2]), atol=1e-5)


@pytest.mark.parametrize(
    "log_prob_value, target_entropy, alpha_should",
    [
        (3.0, -1.0, "rise"),  # entropy −3 is below H̄ = −1
        (1.5, -1.0, "rise"),  # entropy −1.5 is below H̄ = −1
        (-3.0, -1.0, "fall"),  # entropy 3 is above H̄ = −1
        (0.5, -1.0, "fall"),  # entropy −0.5 is above H̄ = −1, and |log π| < |H̄|
        (-0.5, 1.0, "rise"),  # entropy 0.5 is below H̄ = 1, and |log π| < |H̄|
        (-2.0, 1.0, "fall"),  # entropy 2 is above H̄ = 1
    ],
)
def test_temperature_update_direction(log_prob_value, target_entropy, alpha_should):
    """α rises when the entropy −log π is below H̄ and falls when above, on both sides of the
    target (a sign flip inside log π + H̄ fails the |log π| < |H̄| cases)."""
    log_alpha = torch.tensor(0.0, requires_grad=True)
    optimizer = torch.optim.SGD([log_alpha], lr=0.1)
    log_prob = torch.full((64,), log_prob_value, requires_grad=True)
    loss = sac_v1.temperature_loss(log_alpha, log_prob, target_entropy)
    loss.backward()
    assert log_prob.grad is None  # the temperature loss never trains the policy
    optimizer.step()
    assert (log_alpha.item() > 0.0) == (alpha_should == "rise")
    # the step is the gradient of J(α) = −α (log π + H̄) at α = 1
    assert log_alpha.item() == pytest.approx(0.1 * (log_prob_value + target_entropy))


def random_networks(obs_dim=3, act_dim=2, dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    actor = sac_v1.Actor(obs_dim, act_dim, 16, -2 * np.ones(act_dim), 2 * np.ones(act_dim))
    qf = sac_v1.TwinSoftQNetwork(obs_dim, act_dim, 16)
    vf = sac_v1.SoftValueNetwork(obs_dim, 16)
    vf_target = sac_v1.SoftValueNetwork(obs_dim, 16).requires_grad_(False)
    return [net.to(dtype) for net in (actor, qf, vf, vf_target)]


def scaled_copy(network, factor):
    """The same network with its output multiplied by `factor` (last layer scaled)."""
    network = copy.deepcopy(network)
    with torch.no_grad():
        if isinstance(network, sac_v1.TwinSoftQNetwork):
            network.weights[-1].mul_(factor)
            network.biases[-1].mul_(factor)
        else:
            network.net[-1].weight.mul_(factor)
            network.net[-1].bias.mul_(factor)
    return network


@pytest.mark.parametrize("k", [5.0, 20.0])
def test_reward_scale_k_with_alpha_1_equals_scale_1_with_alpha_1_over_k(k):
    """(k, α = 1) and (1, α = 1/k): with critics that differ by the factor k, every target differs
    by exactly k, the critic losses by k² and the policy loss and its gradient by k, so the policy's
    Adam steps (invariant to a constant gradient scale) are the same: only α/k matters."""
    actor, qf, vf, vf_target = random_networks(dtype=torch.float64)
    batch = random_transitions(dtype=torch.float64)
    gamma, target_entropy = 0.99, -2.0

    def losses(reward_scale, alpha, scale_networks_by):
        torch.manual_seed(7)  # the same fresh actions ã in both settings
        networks = [scaled_copy(net, scale_networks_by) for net in (qf, vf, vf_target)]
        log_alpha = torch.tensor(math.log(alpha), dtype=torch.float64)
        return sac_v1.sac_v1_losses(
            actor, *networks, log_alpha, batch, gamma, reward_scale, target_entropy
        )

    scaled = losses(reward_scale=k, alpha=1.0, scale_networks_by=k)
    unscaled = losses(reward_scale=1.0, alpha=1.0 / k, scale_networks_by=1.0)
    for name in ["value_target", "q_target", "values", "q_values"]:
        torch.testing.assert_close(scaled[name], k * unscaled[name], rtol=1e-12, atol=1e-12)
    for name in ["qf_loss", "vf_loss"]:
        torch.testing.assert_close(scaled[name], k**2 * unscaled[name], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        scaled["actor_loss"], k * unscaled["actor_loss"], rtol=1e-12, atol=1e-12
    )
    scaled_grad = torch.autograd.grad(scaled["actor_loss"], list(actor.parameters()))
    unscaled_grad = torch.autograd.grad(unscaled["actor_loss"], list(actor.parameters()))
    for a, b in zip(scaled_grad, unscaled_grad, strict=True):
        torch.testing.assert_close(a, k * b, rtol=1e-10, atol=1e-12)
    # and the reward scale really is in play: without the scaled critics the targets differ
    plain = losses(reward_scale=k, alpha=1.0, scale_networks_by=1.0)
    assert not torch.allclose(plain["q_target"], k * unscaled["q_target"])


def test_each_loss_reaches_only_its_own_network_and_one_backward_gives_each_its_own_gradient():
    actor, qf, vf, vf_target = random_networks()
    log_alpha = torch.tensor(0.1, requires_grad=True)
    groups = {
        "qf_loss": list(qf.parameters()),
        "vf_loss": list(vf.parameters()),
        "actor_loss": list(actor.parameters()),
        "alpha_loss": [log_alpha],
    }
    torch.manual_seed(3)
    losses = sac_v1.sac_v1_losses(actor, qf, vf, vf_target, log_alpha, random_transitions(), 0.99, 5.0, -2.0)  # fmt: skip
    own_gradients = {}
    for loss_name in groups:
        for group_name, parameters in groups.items():
            grads = torch.autograd.grad(
                losses[loss_name], parameters, retain_graph=True, allow_unused=True
            )
            if group_name == loss_name:
                assert all(g is not None and g.abs().sum() > 0 for g in grads), loss_name
                own_gradients[loss_name] = grads
            else:
                assert all(g is None for g in grads), (loss_name, group_name)

    total = sum(losses[name] for name in groups)
    total.backward()
    for name, parameters in groups.items():
        for parameter, own in zip(parameters, own_gradients[name], strict=True):
            torch.testing.assert_close(parameter.grad, own, rtol=0, atol=0)
    # the target V̄ takes part in the forward pass but never receives a gradient
    assert all(not p.requires_grad and p.grad is None for p in vf_target.parameters())


def test_actor_loss_follows_the_gradient_of_q_through_the_action():
    """J_π's gradient must carry ∂Q/∂ã: the entropy term alone has a different gradient."""
    actor, qf, vf, vf_target = random_networks()
    batch = random_transitions()
    torch.manual_seed(5)
    losses = sac_v1.sac_v1_losses(actor, qf, vf, vf_target, torch.tensor(0.0), batch, 0.99, 5.0, -2.0)  # fmt: skip
    with_q = torch.autograd.grad(losses["actor_loss"], list(actor.parameters()))
    torch.manual_seed(5)
    _, log_prob = actor.sample(batch[0])
    entropy_only = torch.autograd.grad(log_prob.mean(), list(actor.parameters()))
    assert any(not torch.allclose(a, b) for a, b in zip(with_q, entropy_only, strict=True))


# ------------------------------------------------------------------------------------------------
# The update
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def sgd_optimizers(monkeypatch):
    """Optimizers for V, the Qs, π and α, in update()'s order, whose step is exactly −lr × the
    gradient: update() steps them with torch's functional Adam, swapped here for plain SGD, so a
    step shows the very gradient each network received (Adam would hide its scale)."""

    def sgd(params, grads, *state, lr, **settings):
        for param, grad in zip(params, grads, strict=True):
            param.sub_(lr * grad)

    monkeypatch.setattr(sac_v1, "functional_adam", sgd)

    def make(actor, qf, vf, log_alpha, lr=0.1):
        groups = [vf.parameters(), qf.parameters(), actor.parameters(), [log_alpha]]
        return [torch.optim.Adam(parameters, lr=lr) for parameters in groups]

    return make


def test_update_steps_each_network_by_its_own_loss_then_averages_the_target(sgd_optimizers):
    actor, qf, vf, vf_target = random_networks(dtype=torch.float64)
    batch = random_transitions(dtype=torch.float64)
    log_alpha = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    lr, tau = 0.1, 0.25
    groups = {
        "vf_loss": list(vf.parameters()),
        "qf_loss": list(qf.parameters()),
        "actor_loss": list(actor.parameters()),
        "alpha_loss": [log_alpha],
    }
    torch.manual_seed(3)
    losses = sac_v1.sac_v1_losses(actor, qf, vf, vf_target, log_alpha, batch, 0.99, 5.0, -2.0)
    expected = {}
    for name, parameters in groups.items():
        grads = torch.autograd.grad(losses[name], parameters, retain_graph=True)
        expected[name] = [p.detach() - lr * g for p, g in zip(parameters, grads, strict=True)]
    target_before = [p.clone() for p in vf_target.parameters()]

    torch.manual_seed(3)  # the same fresh ã
    optimizers = sgd_optimizers(actor, qf, vf, log_alpha, lr)
    logged = sac_v1.update(
        batch, actor, qf, vf, vf_target, log_alpha, *optimizers, 0.99, tau, 5.0, -2.0
    )
    for name, parameters in groups.items():
        for parameter, value in zip(parameters, expected[name], strict=True):
            torch.testing.assert_close(parameter.detach(), value, rtol=0, atol=1e-12)
    # V̄ moves after the gradient steps, towards the updated V
    for old, new, online in zip(target_before, vf_target.parameters(), vf.parameters(), strict=True):  # fmt: skip
        torch.testing.assert_close(new, (1 - tau) * old + tau * online, rtol=0, atol=1e-12)
    # the logged values are the losses of this step, detached
    for name in groups:
        assert logged[f"losses/{name}"].item() == losses[name].item()
        assert not logged[f"losses/{name}"].requires_grad
    assert logged["charts/policy_entropy"].item() == pytest.approx(
        -losses["log_prob"].mean().item()
    )
    assert logged["losses/soft_value"].item() == pytest.approx(losses["values"].mean().item())


def test_update_with_fixed_alpha_leaves_alpha_alone(sgd_optimizers):
    actor, qf, vf, vf_target = random_networks()
    log_alpha = torch.tensor(math.log(0.3))
    optimizers = sgd_optimizers(actor, qf, vf, log_alpha)[:3] + [None]
    batch = random_transitions()
    logged = sac_v1.update(batch, actor, qf, vf, vf_target, log_alpha, *optimizers, 0.99, 0.005, 5.0, -2.0)  # fmt: skip
    assert log_alpha.item() == torch.tensor(math.log(0.3)).item()
    assert logged["losses/alpha"].item() == pytest.approx(0.3)


def actor_after_one_update(sgd_optimizers, perturb: str | None = None) -> list[torch.Tensor]:
    """The actor's weights after one update; `perturb` names a network given other weights."""
    actor, qf, vf, vf_target = random_networks()
    if perturb is not None:
        with torch.no_grad():
            for parameter in {"vf_target": vf_target, "qf": qf}[perturb].parameters():
                parameter.add_(torch.randn_like(parameter))
    log_alpha = torch.tensor(0.0, requires_grad=True)
    optimizers = sgd_optimizers(actor, qf, vf, log_alpha)
    torch.manual_seed(3)
    sac_v1.update(random_transitions(), actor, qf, vf, vf_target, log_alpha, *optimizers, 0.99, 0.005, 5.0, -2.0)  # fmt: skip
    return [p.detach().clone() for p in actor.parameters()]


def test_update_trains_the_actor_against_the_online_q_functions_not_the_target_value(sgd_optimizers):  # fmt: skip
    reference = actor_after_one_update(sgd_optimizers)
    other_target = actor_after_one_update(sgd_optimizers, perturb="vf_target")
    other_q = actor_after_one_update(sgd_optimizers, perturb="qf")
    assert all(torch.equal(a, b) for a, b in zip(reference, other_target, strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(reference, other_q, strict=True))


def test_polyak_update_of_the_target_value_network_matches_its_formula():
    _, _, vf, vf_target = random_networks(dtype=torch.float64)
    before = [p.clone() for p in vf_target.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(before, vf.parameters(), strict=True))
    sac_v1.polyak_update(vf_target, vf, tau=0.005)
    for old, new, online in zip(before, vf_target.parameters(), vf.parameters(), strict=True):
        torch.testing.assert_close(new, 0.995 * old + 0.005 * online, atol=1e-15, rtol=0)
        assert new.grad is None and not new.requires_grad


def test_twin_q_functions_are_two_independent_mlps():
    """The batched module equals two separate nn.Linear MLPs built from its weights."""
    _, qf, _, _ = random_networks()
    obs, action = random_transitions()[:2]
    x = torch.cat([obs, action], -1)
    for i in range(2):
        hidden = x
        for layer, (weight, bias) in enumerate(zip(qf.weights, qf.biases, strict=True)):
            hidden = torch.nn.functional.linear(hidden, weight[i].T, bias[i, 0])
            hidden = torch.relu(hidden) if layer < 2 else hidden
        torch.testing.assert_close(qf(obs, action)[i], hidden.squeeze(-1))


# ------------------------------------------------------------------------------------------------
# The training loop
# ------------------------------------------------------------------------------------------------
def read_summary(run_dir):
    return json.loads((Path(run_dir) / "summary.json").read_text())


def load_model(run):
    return torch.load(Path(run["run_dir"]) / "model.pt", weights_only=True)


def test_vector_env_episode_ends_are_stored_correctly_with_unscaled_rewards(in_tmp):
    """num_envs=2 on an env that terminates at t=3 (even episodes) or is truncated at t=5 (odd)."""
    args = tiny_args(
        env_id="softrl-test/Counting-v0",
        num_envs=2,
        total_timesteps=80,
        learning_starts=40,
        batch_size=8,
        checkpoint_frequency=80,
        reward_scale=5.0,
    )
    result = sac_v1.main(args)
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
    # the buffer keeps the env's reward; the scale enters only the Q target
    torch.testing.assert_close(reward, next_t)
    # termination is flagged exactly where it happens ...
    expected_terminated = (episode % 2 == 0) & (next_t == 3)
    assert torch.equal(terminated.bool(), expected_terminated)
    # ... and truncated transitions keep the true last observation (t = limit, not a reset obs)
    truncated = (episode % 2 == 1) & (next_t == MAX_EPISODE_STEPS)
    assert truncated.sum() >= 4 and expected_terminated.sum() >= 4
    assert not terminated[truncated].any()
    # logged training returns are the env's, unscaled: 1+2+3 (terminated) or 1+…+5 (truncated)
    metrics = (Path(result["run_dir"]) / "metrics.jsonl").read_text().splitlines()
    returns = {json.loads(line).get("charts/episodic_return") for line in metrics} - {None}
    assert returns == {6.0, 15.0}


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "Hopper-v4"])
def test_smoke_run_writes_summary_metrics_and_model(in_tmp, env_id):
    result = sac_v1.main(tiny_args(env_id=env_id, save_model=True, eval_frequency=200))
    summary = read_summary(result["run_dir"])
    assert summary["algorithm"] == "sac_v1" and summary["env_id"] == env_id
    assert summary["status"] == "finished" and summary["global_step"] == 400
    assert summary["gradient_updates"] == summary["policy_updates"] == 200
    assert summary["learn_sps"] > 0 and summary["eval_episodes"] == 1
    assert math.isfinite(summary["eval_return_mean"])
    # the temperature is fixed: α = 1 with reward scale 5, i.e. α/k = 0.2
    assert summary["alpha"] == 1.0 and summary["reward_scale"] == 5.0
    assert summary["alpha_per_reward_scale"] == pytest.approx(0.2)
    assert summary["target_entropy"] is None
    lines = [json.loads(line) for line in (Path(result["run_dir"]) / "metrics.jsonl").open()]
    keys = set().union(*lines)
    assert {"losses/qf_loss", "losses/qf1_values", "losses/qf2_values", "losses/vf_loss"} <= keys
    assert {"losses/soft_value", "losses/actor_loss", "losses/alpha"} <= keys
    assert {"charts/policy_entropy", "charts/episodic_return", "eval/episodic_return"} <= keys
    assert all(line.get("losses/alpha", 1.0) == 1.0 for line in lines)
    assert sum("eval/episodic_return" in line for line in lines) == 2  # at 200 and at the end
    model = load_model(result)
    assert {"actor", "qf", "vf", "vf_target", "args"} <= model.keys()
    assert "log_alpha" not in model  # a fixed α is a flag, not a learned parameter
    # training moved V, and V̄ followed it only part of the way (τ = 0.005)
    first_layer = "net.0.weight"
    assert not torch.equal(model["vf"][first_layer], model["vf_target"][first_layer])


def test_target_value_network_is_polyak_averaged_after_every_update(in_tmp):
    """With τ = 1 the Polyak step copies V into V̄, so they end equal; with τ < 1 they do not."""
    settings = dict(env_id="softrl-test/Counting-v0", total_timesteps=60, learning_starts=30)
    settings.update(batch_size=8, save_model=True)
    copied = load_model(sac_v1.main(tiny_args(**settings, tau=1.0)))
    averaged = load_model(sac_v1.main(tiny_args(**settings, tau=0.5)))
    for name, tensor in copied["vf"].items():
        assert torch.equal(tensor, copied["vf_target"][name]), name
    assert not torch.equal(averaged["vf"]["net.0.weight"], averaged["vf_target"]["net.0.weight"])


def test_autotune_extra_learns_the_temperature_and_resumes_it(in_tmp):
    settings = dict(autotune=True, alpha=0.5, total_timesteps=300, learning_starts=100)
    straight = sac_v1.main(tiny_args(**settings, save_model=True))
    assert straight["alpha"] != 0.5 and straight["target_entropy"] == -1.0  # −dim(A) on Pendulum
    assert straight["alpha_per_reward_scale"] == pytest.approx(straight["alpha"] / 5.0)
    assert load_model(straight)["log_alpha"].exp().item() == pytest.approx(straight["alpha"])
    first_half = sac_v1.main(tiny_args(**settings | {"total_timesteps": 150}, checkpoint_frequency=150))  # fmt: skip
    checkpoint = Path(first_half["run_dir"]) / "checkpoint.pt"
    resumed = sac_v1.main(sac_v1.Args(resume=str(checkpoint), total_timesteps=300, cuda=False))
    assert resumed["alpha"] == straight["alpha"]


def test_alpha_zero_trains_without_an_entropy_term_and_saves(in_tmp):
    """α = 0 (log α = −inf) is a valid fixed temperature: the run saves its model and checkpoint."""
    result = sac_v1.main(tiny_args(alpha=0.0, save_model=True, checkpoint_frequency=400))
    assert result["status"] == "finished" and result["alpha"] == 0.0
    assert result["gradient_updates"] == 200 and math.isfinite(result["eval_return_mean"])
    assert (Path(result["run_dir"]) / "checkpoint.pt").exists()
    assert "vf" in load_model(result)


# ------------------------------------------------------------------------------------------------
# The script's own flags and checks (the shared ones are tested in test_harness.py)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"env_id": "CartPole-v1"}, "Discrete action space"),
        ({"reward_scale": 0.0}, "--reward-scale must be positive"),
        ({"reward_scale": float("nan")}, "--reward-scale must be positive"),
        ({"alpha": -0.1}, "--alpha must be >= 0"),
        ({"alpha": float("inf")}, "--alpha must be >= 0"),
        ({"alpha": 0.0, "autotune": True}, "positive starting --alpha"),
        ({"target_entropy": float("nan"), "autotune": True}, "--target-entropy must be finite"),
        ({"policy_lr": 0.0}, "--policy-lr must be positive"),
        ({"q_lr": -1.0}, "--q-lr must be positive"),
        ({"hidden_dim": 0}, "--hidden-dim must be positive"),
    ],
)
def test_bad_input_is_a_usage_error_that_writes_nothing(in_tmp, overrides, message):
    with pytest.raises(sac_v1.UsageError, match=message):
        sac_v1.main(tiny_args(**overrides))
    assert not Path("runs").exists()


def test_help_explains_the_reward_scale_and_the_temperature(capsys):
    with pytest.raises(SystemExit):
        tyro.cli(sac_v1.Args, args=["--help"])
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())  # undo the line wrapping
    for flag in ["--reward-scale", "--alpha", "--autotune", "--target-entropy"]:
        assert flag in text
    assert "only α/k matters" in text and "nats of the [−1, 1] action" in text


# ------------------------------------------------------------------------------------------------
# Learning
# ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_learns_pendulum_within_15k_steps(in_tmp):
    """Deterministic eval return ≥ −250 after 15k env steps, with the paper's reward scale 5
    (α/k = 0.2). Hidden width 128 halves the test's time; measured at 15k steps, eval returns
    −212, −209, −200 for seeds 1–3 (the default width 256: −195, −192, −196)."""
    result = sac_v1.main(
        sac_v1.Args(
            env_id="Pendulum-v1",
            total_timesteps=15_000,
            learning_starts=1_000,
            reward_scale=5.0,
            hidden_dim=128,
            eval_frequency=0,
            eval_episodes=10,
            cuda=False,
        )
    )
    assert result["eval_return_mean"] >= -250, result
