"""Tests of sac_v1.py: the value, Q and policy losses against hand-built networks with closed-form
outputs, the log-density, the reward-scale equivalence, gradient isolation, the update in Algorithm
1's order and in the optimizers' idiom (weight decay, SGD, clipping hold), the training loop's
bookkeeping, the script's own flags, and a short run that really learns.
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


def affine_actor(obs_dim, act_dim, mean_weight, mean_constant, log_std, hidden_dim=8):
    """An Actor on [−1, 1] with μ_j(s) = mean_constant + mean_weight·s in every dim j and log σ =
    log_std, exactly (for |s| < OFFSET)."""
    actor = sac_v1.Actor(obs_dim, act_dim, hidden_dim, -np.ones(act_dim), np.ones(act_dim))
    first, second, head = actor.trunk[0], actor.trunk[2], actor.mean_and_log_std
    with torch.no_grad():
        for parameter in actor.parameters():
            parameter.zero_()
        first.weight[:obs_dim, :obs_dim] = torch.eye(obs_dim)  # h1 = s + OFFSET
        first.bias[:obs_dim] = OFFSET
        second.weight[:obs_dim, :obs_dim] = torch.eye(obs_dim)  # h2 = h1
        head.weight[:act_dim, :obs_dim] = torch.tensor(mean_weight)
        head.bias[:act_dim] = mean_constant - OFFSET * sum(mean_weight)
        head.bias[act_dim:] = log_std
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
    mean, log_std = affine_actor(3, 2, [0.5, -1.0, 2.0], 0.1, -1.5)(obs)
    torch.testing.assert_close(
        mean, (0.1 + obs @ torch.tensor([0.5, -1.0, 2.0]))[:, None].repeat(1, 2)
    )
    torch.testing.assert_close(log_std, torch.full((5, 2), -1.5))


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
def optimizers_for(actor, qf, vf, log_alpha, optimizer=torch.optim.SGD, lr=0.1, **settings):
    """Optimizers for V, the Qs, π and α, in update()'s order (α's None when log α is not learned).
    Plain SGD by default: its step is exactly −lr × the gradient, so a step shows the very gradient
    each network received. `q_lr` / `v_lr` in settings override lr for the Qs / V."""
    q_lr, v_lr = settings.pop("q_lr", lr), settings.pop("v_lr", lr)
    return [
        optimizer(vf.parameters(), lr=v_lr, **settings),
        optimizer(qf.parameters(), lr=q_lr, **settings),
        optimizer(actor.parameters(), lr=lr, **settings),
        optimizer([log_alpha], lr=lr, **settings) if log_alpha.requires_grad else None,
    ]


def run_update(networks, log_alpha, optimizers, batch, tau=0.005, reward_scale=5.0):
    """One sac_v1.update with γ = 0.99 and H̄ = −2 on (actor, qf, vf, vf_target)."""
    return sac_v1.update(
        batch, *networks, log_alpha, *optimizers, 0.99, tau, reward_scale, -2.0
    )  # fmt: skip


def test_value_loss_targets_a_fresh_policy_action_at_s_and_the_twin_minimum(monkeypatch):
    """J_V through the real update: ã ~ π(·|s) at s (a policy whose mean differs between s and s′
    tells them apart), the minimum of the twin Qs at ã (not at the replayed a), minus α log π(ã|s)."""
    obs_dim, act_dim, log_std, alpha = 3, 2, -1.0, 0.3
    mean_weight, mean_constant = [0.2, -0.1, 0.1], 0.3
    actor = affine_actor(obs_dim, act_dim, mean_weight, mean_constant, log_std)
    monkeypatch.setattr(torch, "randn_like", torch.zeros_like)  # ε = 0: ã = tanh(μ(s)) exactly
    # Q_1 = 1 + 3(a_1 + a_2), Q_2 = 2 − (a_1 + a_2): the minimum is Q_2 where Σa > 0.25, else Q_1
    qf = affine_twin_q(obs_dim, [[3.0, 3.0], [-1.0, -1.0]], [1.0, 2.0])
    v_weight, v_constant = [1.0, -2.0, 0.5], 0.25
    vf = affine_value_network(v_weight, v_constant)
    vf_target = affine_value_network([0.0, 0.0, 0.0], 100.0).requires_grad_(False)
    obs = torch.tensor([[0.1, 0.2, 0.3], [-1.0, 0.5, 2.0], [0.0, 0.0, -3.0], [2.0, 1.0, 1.0]])
    replayed_action = torch.tensor([[-0.9, -0.5]] * 4)
    batch = (obs, replayed_action, torch.ones(4, 1), torch.zeros(4, 1), obs + 1.0)
    log_alpha = torch.tensor(math.log(alpha))

    def oracle(states):
        mean = mean_constant + states.double().numpy() @ np.array(mean_weight)
        fresh = np.tanh(mean)  # the policy's action, in [−1, 1] units, in every dimension
        q_min = np.minimum(1.0 + 3.0 * 2 * fresh, 2.0 - 2 * fresh)
        per_dim = -log_std - 0.5 * math.log(2 * math.pi) - np.log(1 - np.tanh(mean) ** 2)
        log_prob = act_dim * per_dim  # of the [−1, 1] action
        return q_min, log_prob, q_min - alpha * log_prob

    q_min, log_prob, target = oracle(obs)
    values = v_constant + obs.double().numpy() @ np.array(v_weight)
    action_sums = 2 * torch.tanh(mean_constant + obs @ torch.tensor(mean_weight))  # Σ_j ã_j
    assert (action_sums > 0.25).any() and (action_sums < 0.25).any()  # both Qs are the minimum
    # row by row, before the update steps V, the pure loss: ½(V(s) − target)², target a constant
    for i in range(4):
        row = slice(i, i + 1)
        loss, row_values = sac_v1.value_loss(vf, qf, actor, obs[row], alpha)
        assert loss.item() == pytest.approx(0.5 * (values[i] - target[i]) ** 2, rel=1e-5, abs=1e-9)
        assert row_values.item() == pytest.approx(values[i], rel=1e-5)
    # the Qs do not step (lr 0), so the logged J_π is at the same Qs as J_V
    optimizers = optimizers_for(actor, qf, vf, log_alpha, q_lr=0.0)
    logged = run_update([actor, qf, vf, vf_target], log_alpha, optimizers, batch)

    expected = 0.5 * np.mean((values - target) ** 2)
    assert logged["losses/vf_loss"].item() == pytest.approx(expected, rel=1e-5)
    assert logged["losses/vf_loss"].item() != pytest.approx(
        0.5 * np.mean((values - oracle(obs + 1.0)[2]) ** 2), rel=1e-3
    )  # ã drawn at s′ would give another loss
    assert logged["losses/soft_value"].item() == pytest.approx(values.mean(), rel=1e-5)
    assert logged["charts/policy_entropy"].item() == pytest.approx(-log_prob.mean(), rel=1e-5)
    # the same ã drives the policy loss: J_π = α log π(ã|s) − min_i Q_i(s, ã)
    assert logged["losses/actor_loss"].item() == pytest.approx(
        np.mean(alpha * log_prob - q_min), rel=1e-5
    )


def test_q_target_bootstraps_from_the_target_value_at_s_next_and_stops_only_at_termination():
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

    r, d = reward.double().numpy()[:, 0], terminated.double().numpy()[:, 0]
    a = action.double().numpy()
    q1, q2 = 0.5 + a[:, 0], 1.5 - 2.0 * a[:, 1]

    def q_target(states):
        next_value = target_constant + states.double().numpy() @ np.array(target_weight)
        return reward_scale * r + gamma * (1 - d) * next_value

    def q_loss(target, rows=slice(None)):
        return sum(0.5 * np.mean((q[rows] - target[rows]) ** 2) for q in (q1, q2))

    loss, q_values = sac_v1.critic_loss(qf, vf_target, batch, gamma, reward_scale)
    assert loss.item() == pytest.approx(q_loss(q_target(next_obs)), rel=1e-5)
    assert loss.item() != pytest.approx(q_loss(q_target(obs)), rel=1e-3)  # V̄(s) is not it
    np.testing.assert_allclose(q_values.numpy(), np.stack([q1, q2]), atol=1e-5)
    assert not q_values.requires_grad
    for i in range(3):  # row by row: each row's target, terminated or not
        row = slice(i, i + 1)
        row_batch = tuple(column[row] for column in batch)
        row_loss = sac_v1.critic_loss(qf, vf_target, row_batch, gamma, reward_scale)[0]
        assert row_loss.item() == pytest.approx(q_loss(q_target(next_obs), row), rel=1e-5)
    # through the real update: the Q loss is taken before any target moves
    log_alpha = torch.tensor(0.0)
    optimizers = optimizers_for(actor, qf, vf, log_alpha)
    logged = sac_v1.update(
        batch, actor, qf, vf, vf_target, log_alpha, *optimizers, gamma, 0.5, reward_scale, -2.0
    )
    assert logged["losses/qf_loss"].item() == pytest.approx(q_loss(q_target(next_obs)), rel=1e-5)


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
    """(actor, qf, vf, vf_target) with random weights; V̄ is not a copy of V."""
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
    by exactly k (so every row's critic loss by k²) and the policy loss and its gradient by k, so the
    policy's Adam steps (invariant to a constant gradient scale) are the same: only α/k matters."""
    actor, qf, vf, vf_target = random_networks(dtype=torch.float64)
    batch = random_transitions(dtype=torch.float64)
    obs, gamma = batch[0], 0.99

    def losses(reward_scale, alpha, scale_networks_by, rows=slice(None)):
        q, v, v_target = (scaled_copy(net, scale_networks_by) for net in (qf, vf, vf_target))
        row_batch = tuple(column[rows] for column in batch)
        torch.manual_seed(7)  # the same fresh actions ã in both settings
        vf_loss, values = sac_v1.value_loss(v, q, actor, obs[rows], alpha)
        qf_loss, q_values = sac_v1.critic_loss(q, v_target, row_batch, gamma, reward_scale)
        policy_loss = sac_v1.actor_loss(actor, q, obs[rows], alpha)[0]
        return {"vf_loss": vf_loss, "values": values, "qf_loss": qf_loss, "q_values": q_values,
                "actor_loss": policy_loss}  # fmt: skip

    scaled = losses(reward_scale=k, alpha=1.0, scale_networks_by=k)
    unscaled = losses(reward_scale=1.0, alpha=1.0 / k, scale_networks_by=1.0)
    for name in ["values", "q_values"]:
        torch.testing.assert_close(scaled[name], k * unscaled[name], rtol=1e-12, atol=1e-12)
    for i in range(len(obs)):  # row by row: each row's target differs by exactly k
        row = slice(i, i + 1)
        scaled_row, unscaled_row = losses(k, 1.0, k, row), losses(1.0, 1.0 / k, 1.0, row)
        for name in ["qf_loss", "vf_loss"]:
            torch.testing.assert_close(scaled_row[name], k**2 * unscaled_row[name], rtol=1e-10, atol=1e-12)  # fmt: skip
    torch.testing.assert_close(
        scaled["actor_loss"], k * unscaled["actor_loss"], rtol=1e-12, atol=1e-12
    )
    scaled_grad = torch.autograd.grad(scaled["actor_loss"], list(actor.parameters()))
    unscaled_grad = torch.autograd.grad(unscaled["actor_loss"], list(actor.parameters()))
    for a, b in zip(scaled_grad, unscaled_grad, strict=True):
        torch.testing.assert_close(a, k * b, rtol=1e-10, atol=1e-12)
    # and the reward scale really is in play: without the scaled critics the losses differ
    plain = losses(reward_scale=k, alpha=1.0, scale_networks_by=1.0)
    assert not torch.allclose(plain["qf_loss"], k**2 * unscaled["qf_loss"])


def test_each_loss_reaches_only_the_networks_it_should():
    """J_V reaches only ψ and J_Q only θ (their targets are constants, V̄ never takes a gradient),
    J(α) only log α; J_π reaches φ and, through the graph, θ: update() restricts its backward."""
    actor, qf, vf, vf_target = random_networks()
    log_alpha = torch.tensor(0.1, requires_grad=True)
    batch = random_transitions()
    groups = {
        "actor": list(actor.parameters()), "qf": list(qf.parameters()),
        "vf": list(vf.parameters()), "log_alpha": [log_alpha],
    }  # fmt: skip
    alpha = log_alpha.detach().exp()
    policy_loss, log_prob = sac_v1.actor_loss(actor, qf, batch[0], alpha)
    losses = {
        "vf": sac_v1.value_loss(vf, qf, actor, batch[0], alpha)[0],
        "qf": sac_v1.critic_loss(qf, vf_target, batch, 0.99, 5.0)[0],
        "actor": policy_loss,
        "log_alpha": sac_v1.temperature_loss(log_alpha, log_prob, -2.0),
    }
    reaches = {"vf": {"vf"}, "qf": {"qf"}, "actor": {"actor", "qf"}, "log_alpha": {"log_alpha"}}
    for loss_name, loss in losses.items():
        for group_name, parameters in groups.items():
            grads = torch.autograd.grad(loss, parameters, retain_graph=True, allow_unused=True)
            if group_name in reaches[loss_name]:
                assert all(g is not None and g.abs().sum() > 0 for g in grads), loss_name
            else:
                assert all(g is None for g in grads), (loss_name, group_name)
    assert all(not p.requires_grad and p.grad is None for p in vf_target.parameters())


def test_actor_loss_follows_the_gradient_of_q_through_the_action():
    """J_π's gradient must carry ∂Q/∂ã: the entropy term alone has a different gradient."""
    actor, qf, _, _ = random_networks()
    obs = random_transitions()[0]
    policy_loss, log_prob = sac_v1.actor_loss(actor, qf, obs, torch.tensor(1.0))
    with_q = torch.autograd.grad(policy_loss, list(actor.parameters()), retain_graph=True)
    entropy_only = torch.autograd.grad(log_prob.mean(), list(actor.parameters()))
    assert any(not torch.allclose(a, b) for a, b in zip(with_q, entropy_only, strict=True))


# ------------------------------------------------------------------------------------------------
# The update
# ------------------------------------------------------------------------------------------------
def parameters_of(actor, qf, vf, log_alpha) -> dict[str, list[torch.Tensor]]:
    return {"vf": list(vf.parameters()), "qf": list(qf.parameters()),
            "actor": list(actor.parameters()), "log_alpha": [log_alpha]}  # fmt: skip


def test_update_steps_v_then_q_then_pi_then_alpha_each_on_its_own_loss_then_averages_the_target():
    """Algorithm 1 in order, through the real update with SGD: each network's .grad after the
    update is its own loss's gradient alone (J_V, J_Q at the starting weights; J_π at the Qs just
    stepped; J(α)), every parameter moved by exactly −lr × it, then V̄ by Polyak."""
    actor, qf, vf, vf_target = random_networks(dtype=torch.float64)
    batch = random_transitions(dtype=torch.float64)
    log_alpha = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    lr, tau, gamma, reward_scale, target_entropy = 0.1, 0.25, 0.99, 5.0, -2.0
    # the oracle: the steps by hand, on copies, with torch.autograd.grad
    actor_c, qf_c, vf_c, vf_target_c = (copy.deepcopy(n) for n in (actor, qf, vf, vf_target))
    log_alpha_c = log_alpha.detach().clone().requires_grad_(True)
    alpha = log_alpha_c.detach().exp()
    own = parameters_of(actor_c, qf_c, vf_c, log_alpha_c)
    torch.manual_seed(3)
    vf_loss = sac_v1.value_loss(vf_c, qf_c, actor_c, batch[0], alpha)[0]
    qf_loss = sac_v1.critic_loss(qf_c, vf_target_c, batch, gamma, reward_scale)[0]
    grads = {"vf": torch.autograd.grad(vf_loss, own["vf"])}
    grads["qf"] = torch.autograd.grad(qf_loss, own["qf"])
    rng, qf_before_step = torch.get_rng_state(), copy.deepcopy(qf_c)
    before_q_step = sac_v1.actor_loss(actor_c, qf_before_step, batch[0], alpha)[0]
    stale = torch.autograd.grad(before_q_step, own["actor"])
    with torch.no_grad():
        for parameter, grad in zip(own["qf"], grads["qf"], strict=True):
            parameter.sub_(lr * grad)  # the Q step comes before the policy step
    torch.set_rng_state(rng)  # the same ã for J_π
    policy_loss, log_prob = sac_v1.actor_loss(actor_c, qf_c, batch[0], alpha)
    grads["actor"] = torch.autograd.grad(policy_loss, own["actor"])
    alpha_loss = sac_v1.temperature_loss(log_alpha_c, log_prob, target_entropy)
    grads["log_alpha"] = torch.autograd.grad(alpha_loss, own["log_alpha"])
    assert any(not torch.allclose(a, b) for a, b in zip(stale, grads["actor"], strict=True))
    start = {name: [p.detach().clone() for p in ps] for name, ps in parameters_of(actor, qf, vf, log_alpha).items()}  # fmt: skip
    target_before = [p.clone() for p in vf_target.parameters()]

    torch.manual_seed(3)  # the same fresh actions
    optimizers = optimizers_for(actor, qf, vf, log_alpha, lr=lr)
    logged = sac_v1.update(
        batch, actor, qf, vf, vf_target, log_alpha, *optimizers, gamma, tau, reward_scale,
        target_entropy,
    )  # fmt: skip
    for name, parameters in parameters_of(actor, qf, vf, log_alpha).items():
        for parameter, old, grad in zip(parameters, start[name], grads[name], strict=True):
            torch.testing.assert_close(parameter.grad, grad, rtol=0, atol=1e-12)
            torch.testing.assert_close(parameter.detach(), old - lr * grad, rtol=0, atol=1e-12)
    # V̄ moves after the gradient steps, towards the updated V, and never has a gradient
    for old, new, online in zip(target_before, vf_target.parameters(), vf.parameters(), strict=True):  # fmt: skip
        torch.testing.assert_close(new, (1 - tau) * old + tau * online, rtol=0, atol=1e-12)
        assert new.grad is None and not new.requires_grad
    # the logged values are the losses of this step, detached
    expected = {"vf_loss": vf_loss, "qf_loss": qf_loss, "actor_loss": policy_loss,
                "alpha_loss": alpha_loss}  # fmt: skip
    for name, loss in expected.items():
        assert logged[f"losses/{name}"].item() == pytest.approx(loss.item(), rel=1e-12)
        assert not logged[f"losses/{name}"].requires_grad
    assert logged["charts/policy_entropy"].item() == pytest.approx(-log_prob.mean().item())
    assert logged["losses/soft_value"].item() == pytest.approx(vf(batch[0]).mean().item(), abs=1)
    assert logged["losses/alpha"].item() == pytest.approx(math.exp(0.1))


def test_the_actor_step_leaves_no_gradient_in_the_q_functions():
    """With the Qs' learning rate 0 the Qs stay as they were, and their .grad after the update is
    J_Q's gradient alone: J_π's backward added nothing to it."""
    actor, qf, vf, vf_target = random_networks()
    batch = random_transitions()
    log_alpha = torch.tensor(0.0, requires_grad=True)
    before = [p.detach().clone() for p in qf.parameters()]
    j_q = sac_v1.critic_loss(qf, vf_target, batch, 0.99, 5.0)[0]
    j_q_grads = torch.autograd.grad(j_q, list(qf.parameters()))
    optimizers = optimizers_for(actor, qf, vf, log_alpha, q_lr=0.0)
    run_update([actor, qf, vf, vf_target], log_alpha, optimizers, batch)
    for parameter, old, grad in zip(qf.parameters(), before, j_q_grads, strict=True):
        assert torch.equal(parameter.detach(), old)
        torch.testing.assert_close(parameter.grad, grad, rtol=1e-6, atol=1e-7)
    assert all(p.grad is None for p in vf_target.parameters())


def test_update_with_fixed_alpha_leaves_alpha_alone():
    actor, qf, vf, vf_target = random_networks()
    log_alpha = torch.tensor(math.log(0.3))
    optimizers = optimizers_for(actor, qf, vf, log_alpha)
    assert optimizers[-1] is None
    logged = run_update([actor, qf, vf, vf_target], log_alpha, optimizers, random_transitions())
    assert log_alpha.item() == torch.tensor(math.log(0.3)).item()
    assert logged["losses/alpha"].item() == pytest.approx(0.3)


def actor_after_one_update(perturb: str | None = None, q_lr=0.0) -> list[torch.Tensor]:
    """The actor's weights after one update; `perturb` names a network given other weights."""
    actor, qf, vf, vf_target = random_networks()
    if perturb is not None:
        with torch.no_grad():
            for parameter in {"vf_target": vf_target, "qf": qf}[perturb].parameters():
                parameter.add_(torch.randn_like(parameter))
    log_alpha = torch.tensor(0.0, requires_grad=True)
    optimizers = optimizers_for(actor, qf, vf, log_alpha, q_lr=q_lr)
    torch.manual_seed(3)
    run_update([actor, qf, vf, vf_target], log_alpha, optimizers, random_transitions())
    return [p.detach().clone() for p in actor.parameters()]


def test_update_trains_the_actor_against_the_online_q_functions_not_the_target_value():
    """With the Qs held still (lr 0), V̄ does not reach the actor and the Qs do; with the Qs
    stepping first (Algorithm 1), V̄ reaches it only through the Qs' new weights."""
    reference = actor_after_one_update()
    other_target = actor_after_one_update(perturb="vf_target")
    other_q = actor_after_one_update(perturb="qf")
    assert all(torch.equal(a, b) for a, b in zip(reference, other_target, strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(reference, other_q, strict=True))
    stepped = actor_after_one_update(q_lr=0.1)
    stepped_other_target = actor_after_one_update(perturb="vf_target", q_lr=0.1)
    assert any(not torch.equal(a, b) for a, b in zip(stepped, stepped_other_target, strict=True))


def moved_parameters(optimizer, reward_scale=5.0, **settings) -> dict[str, list[torch.Tensor]]:
    """Every learned parameter after one update with these optimizers (autotuned α)."""
    actor, qf, vf, vf_target = random_networks()
    log_alpha = torch.tensor(0.1, requires_grad=True)
    optimizers = optimizers_for(actor, qf, vf, log_alpha, optimizer, **settings)
    torch.manual_seed(3)
    batch = random_transitions()
    logged = run_update([actor, qf, vf, vf_target], log_alpha, optimizers, batch, reward_scale=reward_scale)  # fmt: skip
    assert all(torch.isfinite(value).all() for value in logged.values())
    return {name: [p.detach().clone() for p in ps] for name, ps in parameters_of(actor, qf, vf, log_alpha).items()}  # fmt: skip


def differ(first: dict, second: dict) -> dict[str, bool]:
    return {
        name: any(not torch.allclose(a, b) for a, b in zip(first[name], second[name], strict=True))
        for name in first
    }


def test_the_optimizers_own_weight_decay_holds():
    """The update calls optimizer.step(): weight_decay changes every network's step, Adam's too
    (on the scalar log α Adam's first step is lr·sign(gradient) with or without it, so SGD shows
    the decay on every parameter)."""
    for optimizer, lr in [(torch.optim.Adam, 3e-4), (torch.optim.SGD, 0.01)]:
        plain = moved_parameters(optimizer, lr=lr, weight_decay=0.0)
        decayed = moved_parameters(optimizer, lr=lr, weight_decay=10.0)
        networks = dict.fromkeys(plain, True) | {"log_alpha": optimizer is torch.optim.SGD}
        assert differ(plain, decayed) == networks, optimizer


def test_sgd_in_place_of_every_adam_trains_every_network():
    actor, qf, vf, _ = random_networks()
    start = parameters_of(actor, qf, vf, torch.tensor(0.1))
    moved = moved_parameters(torch.optim.SGD, lr=0.01)
    assert differ(start, moved) == dict.fromkeys(start, True)


class ClippedAdam(torch.optim.Adam):
    """Adam that clips the gradient norm first: it sees .grad only if .grad is set at step time."""

    def step(self, closure=None):
        for group in self.param_groups:
            torch.nn.utils.clip_grad_norm_(group["params"], 1e-3)
        return super().step(closure)


def test_gradient_clipping_between_backward_and_step_takes_effect():
    """A large-reward batch makes J_Q's gradient large: clipped, Adam's steps differ (every
    network's; the scalar log α's first Adam step is lr·sign(gradient), clipped or not)."""
    plain = moved_parameters(torch.optim.Adam, reward_scale=1e4, lr=1e-2)
    clipped = moved_parameters(ClippedAdam, reward_scale=1e4, lr=1e-2)
    assert differ(plain, clipped) == {"vf": True, "qf": True, "actor": True, "log_alpha": False}


def entropy(actor, obs, noise) -> float:
    """−mean log π(a|s) over fixed observations and noises (a = tanh(μ + σ ε))."""
    with torch.no_grad():
        mean, log_std = actor(obs)
        pre_tanh = mean + log_std.exp() * noise
        return -sac_v1.squashed_gaussian_log_prob(noise, log_std, pre_tanh).mean().item()


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_the_actor_step_carries_the_entropy_gradient(alpha):
    """With every Q weight 0 (Q flat in the action, and held there), J_π's gradient is α∇_φ log π
    alone: one actor step of the real update raises the policy's entropy; with α = 0 it is nil."""
    actor, qf, vf, vf_target = random_networks()
    with torch.no_grad():
        for parameter in qf.parameters():
            parameter.zero_()
    generator = torch.Generator().manual_seed(11)
    obs = torch.randn(4096, 3, generator=generator)
    noise = torch.randn(4096, 2, generator=generator)
    before, weights = entropy(actor, obs, noise), [p.detach().clone() for p in actor.parameters()]
    log_alpha = torch.tensor(math.log(alpha) if alpha else -math.inf)
    optimizers = optimizers_for(actor, qf, vf, log_alpha, lr=0.05, q_lr=0.0)
    batch = random_transitions(n=256)
    run_update([actor, qf, vf, vf_target], log_alpha, optimizers, batch)
    if alpha:
        assert entropy(actor, obs, noise) > before + 1e-3
    else:
        assert all(torch.equal(a, b) for a, b in zip(actor.parameters(), weights, strict=True))


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
    # resume: log α and its Adam state come back (episodes in flight restart, so the run does not
    # retrace the straight one; test_harness.py checks every restored state)
    first_half = sac_v1.main(tiny_args(**settings | {"total_timesteps": 150}, checkpoint_frequency=150))  # fmt: skip
    checkpoint = Path(first_half["run_dir"]) / "checkpoint.pt"
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["log_alpha"].exp().item() == first_half["alpha"]
    assert saved["alpha_optimizer"]["state"][0]["step"].item() == 50
    resumed = sac_v1.main(sac_v1.Args(resume=str(checkpoint), total_timesteps=300, cuda=False))
    assert resumed["gradient_updates"] == straight["gradient_updates"] == 200
    assert resumed["alpha"] != first_half["alpha"] and resumed["target_entropy"] == -1.0
    final = torch.load(checkpoint, weights_only=True)  # the resumed run's, in the same directory
    assert final["alpha_optimizer"]["state"][0]["step"].item() == 200
    assert final["log_alpha"].exp().item() == resumed["alpha"]


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
        ({"alpha": -0.1}, "--alpha must be a finite number >= 0"),
        ({"alpha": float("inf")}, "--alpha must be a finite number >= 0"),
        ({"alpha": 0.0, "autotune": True}, "must be a positive --alpha: --autotune learns log α"),
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
    (α/k = 0.2); hidden width 128 keeps the test short."""
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
