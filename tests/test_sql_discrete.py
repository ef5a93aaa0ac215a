"""Tests of sql_discrete.py: the soft math against independent oracles, the update on hand-built
batches, the training loop's bookkeeping, its own flags, and short runs that really learn. The
shared run harness (resume, signals, checkpoints, bad shared input) is tested in test_harness.py."""

import json
import math
from dataclasses import asdict
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from scipy.special import logsumexp, softmax

import sql_discrete as sqld


def plain_soft_value(q: list[float], alpha: float) -> float:
    """α·log Σ exp(q/α) in float64 python, shifted by the max so it cannot overflow."""
    m = max(q)
    return m + alpha * math.log(sum(math.exp((x - m) / alpha) for x in q))


def plain_softmax(q: list[float], alpha: float) -> list[float]:
    m = max(q)
    e = [math.exp((x - m) / alpha) for x in q]
    return [x / sum(e) for x in e]


def plain_entropy(probs: list[float]) -> float:
    return -sum(p * math.log(p) for p in probs if p > 0)


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


def test_boltzmann_sample_draws_the_softmax_frequencies():
    q = torch.tensor([[1.0, 0.0, -1.0, 2.0]]).expand(40_000, -1)
    torch.manual_seed(0)
    actions = sqld.boltzmann_sample(q, 0.7)
    frequencies = torch.bincount(actions, minlength=4).double() / len(actions)
    want = plain_softmax([1.0, 0.0, -1.0, 2.0], 0.7)
    np.testing.assert_allclose(frequencies.numpy(), want, atol=0.01)  # ≈ 4 standard errors
    with pytest.raises(sqld.TrainingDiverged, match="non-finite"):
        sqld.boltzmann_sample(torch.tensor([[float("nan"), 0.0]]), 1.0)


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


@pytest.mark.parametrize(
    "entropy, target_entropy",
    # both sides of the target, also where the entropy is small beside it (0, 0.05 against 0.3:
    # there H + H̄ and H − H̄ have opposite signs, so a sign flip inside the loss fails)
    [(0.6, 0.3), (0.31, 0.3), (1.0, 0.2), (0.29, 0.3), (0.05, 0.3), (0.0, 0.3), (0.01, 1.5)],
)
def test_temperature_update_moves_alpha_toward_the_target_entropy(entropy, target_entropy):
    log_alpha = torch.tensor(0.0, requires_grad=True)
    policy_entropy = torch.tensor(entropy, requires_grad=True)
    loss = sqld.temperature_loss(log_alpha, policy_entropy, target_entropy)
    loss.backward()
    assert policy_entropy.grad is None  # the temperature loss never trains the Q network
    # J(log α) = log α·(H − H̄): its gradient is exactly H − H̄
    assert log_alpha.grad.item() == pytest.approx(entropy - target_entropy, abs=1e-7)
    torch.optim.SGD([log_alpha], lr=0.1).step()
    should_grow = entropy < target_entropy  # a greedier policy than the target: raise α
    assert (log_alpha.item() > 0.0) == should_grow and log_alpha.item() != 0.0


def test_polyak_update_writes_the_target_only_and_matches_its_formula():
    torch.manual_seed(0)
    online, target = sqld.QNetwork(3, 2, (8,)).double(), sqld.QNetwork(3, 2, (8,)).double()
    online_before = [p.clone() for p in online.parameters()]
    target_before = [p.clone() for p in target.parameters()]
    sqld.polyak_update(target, online, tau=0.005)
    for old, new, theta in zip(target_before, target.parameters(), online_before, strict=True):
        torch.testing.assert_close(new, 0.995 * old + 0.005 * theta, atol=1e-15, rtol=0)
    assert all(torch.equal(a, b) for a, b in zip(online.parameters(), online_before, strict=True))
    sqld.polyak_update(target, online, tau=1.0)  # τ = 1: an exact hard copy
    assert all(torch.equal(a, b) for a, b in zip(target.parameters(), online_before, strict=True))


# ---------------------------------------------------------------------------- the update
def constant_q(values, obs_dim=2) -> sqld.QNetwork:
    """A QNetwork whose output is the constant vector `values` (one per action) for every obs."""
    network = sqld.QNetwork(obs_dim, len(values), (8,))
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.zero_()
        network.net[-1].bias.copy_(torch.tensor(values))
    return network


def optimizers(q_network, log_alpha, autotune=True):
    q_optimizer = torch.optim.Adam(q_network.parameters(), lr=1e-3)
    return q_optimizer, torch.optim.Adam([log_alpha], lr=0.01) if autotune else None


def hand_batch():
    """Rows: terminated, truncated (stored with terminated = 0), ordinary; actions 0, 1, 2."""
    obs, next_obs = torch.randn(3, 2), torch.randn(3, 2)
    actions, rewards = torch.tensor([0, 1, 2]), torch.tensor([1.0, 2.0, -0.5])
    return [obs, next_obs, actions, rewards, torch.tensor([1.0, 0.0, 0.0])]


@pytest.mark.parametrize("double_soft_q", [False, True])
@pytest.mark.parametrize("loss", ["huber", "mse"])
def test_update_losses_on_a_hand_built_batch(double_soft_q, loss):
    q_online, q_next = [0.5, -1.0, 3.0], [2.0, 0.0, -1.0]  # Q_θ(s, ·), Q̄(s′, ·) for every state
    q_network, target_network = constant_q(q_online), constant_q(q_next).requires_grad_(False)
    alpha, gamma, target_entropy = 0.5, 0.9, 0.4
    log_alpha = torch.tensor(math.log(alpha), requires_grad=True)
    result = sqld.update(
        hand_batch(), q_network, target_network, log_alpha, *optimizers(q_network, log_alpha),
        gamma=gamma, tau=0.005, target_entropy=target_entropy,
        double_soft_q=double_soft_q, loss=loss,
    )  # fmt: skip

    pi = plain_softmax(q_online, alpha)  # the online network's Boltzmann policy
    if double_soft_q:  # (6): α log Z₁ + E_{π₁}[Q̄ − Q_θ]
        next_value = plain_soft_value(q_online, alpha) + sum(
            p * (b - a) for p, a, b in zip(pi, q_online, q_next, strict=True)
        )
    else:  # (1) on the target network
        next_value = plain_soft_value(q_next, alpha)
    targets = [1.0, 2.0 + gamma * next_value, -0.5 + gamma * next_value]
    errors = [q_online[a] - y for a, y in zip([0, 1, 2], targets, strict=True)]
    huber = [0.5 * e * e if abs(e) < 1 else abs(e) - 0.5 for e in errors]
    want = np.mean(huber if loss == "huber" else [e * e for e in errors])
    assert result["losses/qf_loss"].item() == pytest.approx(want, rel=1e-5)
    assert result["losses/soft_value"].item() == pytest.approx(next_value, rel=1e-5)
    assert result["losses/alpha"].item() == pytest.approx(alpha, rel=1e-6)
    assert result["charts/policy_entropy"].item() == pytest.approx(plain_entropy(pi), rel=1e-5)
    entropy_gap = plain_entropy(pi) - target_entropy
    assert result["losses/alpha_loss"].item() == pytest.approx(math.log(alpha) * entropy_gap)
    assert not any(value.requires_grad for value in result.values())  # detached


def linear_q(weight, bias) -> torch.nn.Linear:
    """Q(s, ·) = W s + b: a network whose values differ from state to state."""
    network = torch.nn.Linear(len(weight[0]), len(weight))
    with torch.no_grad():
        network.weight.copy_(torch.tensor(weight))
        network.bias.copy_(torch.tensor(bias))
    return network


@pytest.mark.parametrize("double_soft_q", [False, True])
def test_the_soft_target_takes_its_value_at_the_next_state(double_soft_q):
    """y = r + γ V̄(s′), eq. (4): Q̄(s) and Q̄(s′) differ here, and the loss is V̄(s′)'s."""
    w_online, b_online = [[1.0, -0.5], [0.3, 2.0], [-1.5, 0.2]], [0.1, -0.2, 0.4]
    w_target, b_target = [[-0.7, 1.2], [0.8, -0.3], [0.5, 1.0]], [0.3, 0.0, -0.6]
    obs, next_obs = np.array([[1.0, 2.0], [-1.0, 0.5]]), np.array([[-2.0, -3.0], [3.0, -3.0]])
    actions, rewards, alpha, gamma = np.array([2, 0]), np.array([1.0, -0.5]), 0.7, 0.9
    q_network, target_network = linear_q(w_online, b_online), linear_q(w_target, b_target)
    target_network.requires_grad_(False)
    log_alpha = torch.tensor(math.log(alpha), requires_grad=True)
    batch = [torch.tensor(x, dtype=torch.float32) for x in (obs, next_obs)]
    batch += [torch.tensor(actions), torch.tensor(rewards, dtype=torch.float32), torch.zeros(2)]
    result = sqld.update(
        batch, q_network, target_network, log_alpha, *optimizers(q_network, log_alpha),
        gamma, 0.005, 0.3, double_soft_q=double_soft_q, loss="mse",
    )  # fmt: skip

    def value(states):  # V̄ at these states, by scipy: (1) on Q̄, or (6)
        q_target = states @ np.array(w_target).T + b_target
        if not double_soft_q:
            return alpha * logsumexp(q_target / alpha, axis=1)
        q_online = states @ np.array(w_online).T + b_online
        pi = softmax(q_online / alpha, axis=1)
        return alpha * logsumexp(q_online / alpha, axis=1) + (pi * (q_target - q_online)).sum(1)

    q_taken = (obs @ np.array(w_online).T + b_online)[[0, 1], actions]
    loss_at = lambda states: np.mean((q_taken - rewards - gamma * value(states)) ** 2)  # noqa: E731
    assert result["losses/qf_loss"].item() == pytest.approx(loss_at(next_obs), rel=1e-5)
    assert result["losses/soft_value"].item() == pytest.approx(value(next_obs).mean(), rel=1e-5)
    # V̄ taken at s instead would show: it gives another loss, far outside the tolerance above
    assert np.abs(value(obs) - value(next_obs)).min() > 1.0
    assert loss_at(obs) != pytest.approx(loss_at(next_obs), rel=0.03)


@pytest.mark.parametrize(
    "q_values, alpha_should", [([0.0, 0.0, 0.0], "fall"), ([9.0, 0.0, 0.0], "rise")]
)
def test_update_moves_alpha_toward_the_target_entropy(q_values, alpha_should):
    # equal Q values: π uniform, entropy log 3 above H̄ = 0.3 log 3; one Q value 9 higher at α = 1:
    # π nearly greedy, entropy 0.0015, far below H̄
    q_network, target_network = constant_q(q_values), constant_q([0.0, 0.0, 0.0])
    log_alpha = torch.tensor(0.0, requires_grad=True)
    sqld.update(
        hand_batch(), q_network, target_network.requires_grad_(False), log_alpha,
        *optimizers(q_network, log_alpha), 0.99, 0.005, 0.3 * math.log(3),
    )  # fmt: skip
    assert (log_alpha.item() > 0) == (alpha_should == "rise") and log_alpha.item() != 0


def test_update_steps_alpha_on_the_online_network_not_the_target():
    """The policy whose entropy drives α is the online network's: other targets, same α step."""
    steps = []
    for target_values in ([0.0, 0.0, 0.0], [5.0, -3.0, 1.0]):
        q_network = constant_q([1.0, 0.0, -0.5])
        log_alpha = torch.tensor(0.0, requires_grad=True)
        result = sqld.update(
            hand_batch(), q_network, constant_q(target_values).requires_grad_(False), log_alpha,
            *optimizers(q_network, log_alpha), 0.99, 0.005, 0.3,
        )  # fmt: skip
        steps.append((log_alpha.item(), result["charts/policy_entropy"].item()))
    assert steps[0] == steps[1] and steps[0][0] != 0.0


def weights(network) -> list[torch.Tensor]:
    return [p.detach().clone() for p in network.parameters()]


def change(network, before: list[torch.Tensor]) -> torch.Tensor:
    """Every weight's change since `before`, as one flat vector."""
    return torch.cat([(w - b).flatten() for w, b in zip(weights(network), before, strict=True)])


def differ(first: list[torch.Tensor], second: list[torch.Tensor]) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_update_trains_q_at_the_given_rate_and_moves_the_target_only_when_asked():
    torch.manual_seed(0)
    q_network, target_network = sqld.QNetwork(2, 3, (8,)), sqld.QNetwork(2, 3, (8,))
    target_network.requires_grad_(False)
    log_alpha = torch.tensor(0.0, requires_grad=True)
    q_optimizer, alpha_optimizer = optimizers(q_network, log_alpha)
    q_before, target_before = weights(q_network), weights(target_network)

    def step(learning_rate, update_target, alpha_optimizer=alpha_optimizer):
        q_optimizer.param_groups[0]["lr"] = learning_rate
        sqld.update(
            hand_batch(), q_network, target_network, log_alpha, q_optimizer, alpha_optimizer,
            0.99, 0.25, 0.3, update_target=update_target,
        )  # fmt: skip

    step(0.0, update_target=False)  # learning rate 0: Q stays; the target is left alone
    assert not differ(weights(q_network), q_before)
    assert not differ(weights(target_network), target_before)
    assert log_alpha.item() != 0.0  # the temperature has its own optimizer and rate
    step(1e-2, update_target=False)
    assert differ(weights(q_network), q_before)
    assert not differ(weights(target_network), target_before)
    step(1e-2, update_target=True)  # θ̄ ← τθ + (1 − τ)θ̄ with the θ of this step
    for new, old, theta in zip(
        weights(target_network), target_before, weights(q_network), strict=True
    ):
        torch.testing.assert_close(new, 0.75 * old + 0.25 * theta)
    fixed = log_alpha.item()
    step(1e-2, update_target=False, alpha_optimizer=None)  # --no-autotune: α stays
    assert log_alpha.item() == fixed


def random_batch(reward_scale=1.0, n=32):
    generator = torch.Generator().manual_seed(1)
    obs, next_obs = torch.randn(n, 2, generator=generator), torch.randn(n, 2, generator=generator)
    actions = torch.randint(3, (n,), generator=generator)
    rewards = torch.randn(n, generator=generator) * reward_scale
    return [obs, next_obs, actions, rewards, (torch.rand(n, generator=generator) < 0.3).float()]


def one_update(optimizer=torch.optim.Adam, reward_scale=1.0, **settings):
    """One update from fixed networks and batch, with this optimizer class and settings for both
    Q_θ and log α; returns (Q network, its weights before, log α, losses)."""
    torch.manual_seed(0)
    q_network, target_network = sqld.QNetwork(2, 3, (16,)), sqld.QNetwork(2, 3, (16,))
    target_network.load_state_dict(q_network.state_dict())
    target_network.requires_grad_(False)
    before, log_alpha = weights(q_network), torch.tensor(0.0, requires_grad=True)
    q_optimizer = optimizer(q_network.parameters(), lr=1e-2, **settings)
    alpha_optimizer = optimizer([log_alpha], lr=1e-2, **settings)
    losses = sqld.update(
        random_batch(reward_scale), q_network, target_network, log_alpha,
        q_optimizer, alpha_optimizer, 0.99, 0.005, 0.3,
    )  # fmt: skip
    return q_network, before, log_alpha, losses


def test_each_loss_reaches_only_its_own_parameters():
    """After update(), θ's .grad is that of L(θ) alone and log α's that of J(log α) alone: the
    target is detached in (5), the entropy in (7); the target network gets no gradient."""
    q_network, before, log_alpha, losses = one_update()
    fresh = sqld.QNetwork(2, 3, (16,))
    with torch.no_grad():
        for p, w in zip(fresh.parameters(), before, strict=True):
            p.copy_(w)
    alpha = torch.tensor(1.0)
    qf_loss, policy_entropy, _ = sqld.soft_q_loss(random_batch(), fresh, fresh, alpha, 0.99)
    qf_loss.backward()
    for p, p_fresh in zip(q_network.parameters(), fresh.parameters(), strict=True):
        torch.testing.assert_close(p.grad, p_fresh.grad)
    assert log_alpha.grad.item() == pytest.approx(policy_entropy.item() - 0.3, abs=1e-6)
    assert losses["charts/policy_entropy"].item() == pytest.approx(policy_entropy.item())


def test_the_optimizers_own_settings_hold():
    """weight decay changes the step; SGD in place of Adam trains; clipping between backward()
    and step() sees the gradients (the update keeps the zero_grad/backward/step idiom)."""
    plain, decayed = one_update(), one_update(weight_decay=10.0)
    assert differ(weights(plain[0]), weights(decayed[0]))
    q_network, before, log_alpha, losses = one_update(optimizer=torch.optim.SGD)
    assert differ(weights(q_network), before) and log_alpha.item() != 0.0
    assert all(torch.isfinite(value) for value in losses.values())

    class ClippingAdam(torch.optim.Adam):
        def step(self, closure=None):
            params = [p for group in self.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, max_norm=1e-3)
            return super().step(closure)

    adam, clipped = one_update(reward_scale=1e3), one_update(ClippingAdam, reward_scale=1e3)
    assert differ(weights(adam[0]), weights(clipped[0]))
    # the tiny clipped gradients meet Adam's ε, so the clipped step is the smaller
    assert change(*clipped[:2]).norm() < change(*adam[:2]).norm()


# ---------------------------------------------------------------------------- annealed learning rate
@pytest.mark.parametrize(
    "settings, rate_after",
    # the rate of update k (after k updates): 1e-3·(1 − (learning_starts + k·steps/update)/total)
    [
        ({}, lambda k: 1e-3 * (1 - (100 + k) / 600)),
        ({"train_frequency": 2}, lambda k: 1e-3 * (1 - (100 + 2 * k) / 600)),
        ({"gradient_steps": 4}, lambda k: 1e-3 * (1 - (100 + k / 4) / 600)),
        ({"anneal_lr": False}, lambda k: 1e-3),
    ],
)
def test_the_annealed_rate_after_k_updates_is_its_closed_form(settings, rate_after):
    args = sqld.Args(total_timesteps=600, learning_starts=100, learning_rate=1e-3, **settings)
    torch.manual_seed(0)
    q_network, target_network = sqld.QNetwork(2, 3, (16,)), sqld.QNetwork(2, 3, (16,))
    target_network.requires_grad_(False)
    log_alpha = torch.tensor(0.0, requires_grad=True)
    q_optimizer, lr_scheduler, alpha_optimizer = sqld.make_optimizers(args, q_network, log_alpha)
    rate = q_optimizer.param_groups[0]["lr"]
    assert torch.is_tensor(rate) and rate.item() == pytest.approx(rate_after(0), rel=1e-6)
    for k in range(1, 41):
        before = weights(q_network)
        sqld.update(
            random_batch(), q_network, target_network, log_alpha, q_optimizer, alpha_optimizer,
            0.99, 0.005, 0.3,
        )  # fmt: skip
        if k == 1:  # Adam's first step moves every weight by lr·g/(|g| + ε) ≈ lr: the rate used
            step = change(q_network, before).abs().max().item()
            assert step == pytest.approx(rate_after(0), rel=1e-3)
        lr_scheduler.step()
        assert q_optimizer.param_groups[0]["lr"].item() == pytest.approx(rate_after(k), rel=1e-6)
    # filled in place: a compiled update keeps reading the same tensor, never a stale constant
    assert q_optimizer.param_groups[0]["lr"] is rate


def test_the_schedule_never_goes_below_zero():
    args = sqld.Args(total_timesteps=600, learning_starts=100)
    q_optimizer, lr_scheduler, _ = sqld.make_optimizers(
        args, sqld.QNetwork(2, 3, (8,)), torch.tensor(0.0, requires_grad=True)
    )
    for _ in range(520):  # past update 500, whose env step is --total-timesteps
        q_optimizer.step()
        lr_scheduler.step()
    assert q_optimizer.param_groups[0]["lr"].item() == 0.0


def test_a_saved_scheduler_state_round_trips(tmp_path):
    """What a checkpoint holds of the schedule (the optimizer's and the scheduler's state_dict,
    through torch.save and weights_only loading) continues it exactly."""
    args = sqld.Args(total_timesteps=600, learning_starts=100)

    def built():
        log_alpha = torch.tensor(0.0, requires_grad=True)
        return sqld.make_optimizers(args, sqld.QNetwork(2, 3, (8,)), log_alpha)[:2]

    (q_optimizer, lr_scheduler), (q_resumed, lr_resumed) = built(), built()
    for _ in range(30):
        q_optimizer.step()
        lr_scheduler.step()
    path = tmp_path / "schedule.pt"
    torch.save({"q": q_optimizer.state_dict(), "lr": lr_scheduler.state_dict()}, path)
    saved = torch.load(path, weights_only=True)
    q_resumed.load_state_dict(saved["q"])
    lr_resumed.load_state_dict(saved["lr"])
    assert lr_resumed.last_epoch == 30
    for _ in range(5):
        for optimizer, scheduler in ((q_optimizer, lr_scheduler), (q_resumed, lr_resumed)):
            optimizer.step()
            scheduler.step()
        assert q_resumed.param_groups[0]["lr"].item() == q_optimizer.param_groups[0]["lr"].item()
    assert q_resumed.param_groups[0]["lr"].item() == pytest.approx(1e-3 * (1 - 135 / 600))


def test_compiled_update_does_not_recompile_as_the_rate_anneals():
    """--compile: the rate changes at every update, yet after the first update nothing compiles
    again (a float rate would: torch.compile guards on its value)."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    args = sqld.Args(total_timesteps=600, learning_starts=100)
    q_network, target_network = sqld.QNetwork(2, 3, (16,)), sqld.QNetwork(2, 3, (16,))
    target_network.requires_grad_(False)
    log_alpha = torch.tensor(0.0, requires_grad=True)
    q_optimizer, lr_scheduler, alpha_optimizer = sqld.make_optimizers(args, q_network, log_alpha)
    train_step, graphs = torch.compile(sqld.update), []
    for _ in range(8):
        train_step(
            random_batch(), q_network, target_network, log_alpha, q_optimizer, alpha_optimizer,
            0.99, 0.005, 0.3,
        )  # fmt: skip
        lr_scheduler.step()
        graphs.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    assert graphs[0] > 0 and graphs[-1] == graphs[0]
    assert q_optimizer.param_groups[0]["lr"].item() == pytest.approx(1e-3 * (1 - 108 / 600))


# ---------------------------------------------------------------------------- evaluation policy
def test_evaluation_policy_is_greedy_or_a_seeded_boltzmann_sample(in_tmp):
    torch.manual_seed(0)
    q_network = sqld.QNetwork(4, 2, (16,))
    obs = torch.randn(64, 4)
    greedy = sqld.evaluation_policy(q_network, torch.tensor(0.0))
    with torch.no_grad():
        np.testing.assert_array_equal(greedy(obs), q_network(obs).argmax(-1).numpy())
    # stochastic: through the harness's evaluate, seeded per episode and without touching the
    # training run's random stream
    stochastic = sqld.evaluation_policy(q_network, torch.tensor(math.log(10.0)), stochastic=True)
    run = sqld.Run(tiny_args(eval_episodes=3))
    run.start({}, {}, stochastic, lambda: {"alpha": 10.0})
    rng_before, results = torch.get_rng_state(), []
    for policy in (stochastic, stochastic, greedy):
        run.policy = policy
        run.evaluate()
        results.append({k: v for k, v in run.last_eval.items() if k.startswith("eval/")})
    assert results[0] == results[1] and torch.equal(torch.get_rng_state(), rng_before)
    assert results[0] != results[2]  # it really samples
    run.finish("evaluated")


def test_load_policy_rebuilds_the_saved_evaluation_policy():
    torch.manual_seed(0)
    args = sqld.Args(hidden_sizes=(16, 8))
    q_network = sqld.QNetwork(4, 2, args.hidden_sizes)
    saved = {"args": asdict(args), "q_network": q_network.state_dict()}
    saved["log_alpha"] = torch.tensor(0.0)
    policy = sqld.load_policy(saved, args, gym.make("CartPole-v1"), torch.device("cpu"))
    obs = torch.randn(32, 4)
    with torch.no_grad():
        np.testing.assert_array_equal(policy(obs), q_network(obs).argmax(-1).numpy())
    with pytest.raises(RuntimeError):  # a network of another env: the harness's usage error
        sqld.load_policy(saved, args, gym.make("Acrobot-v1"), torch.device("cpu"))


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


def load_checkpoint(result: dict) -> dict:
    return torch.load(Path(result["run_dir"]) / "checkpoint.pt", weights_only=True)


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
    buffer = load_checkpoint(result)["buffer"]
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
    # 600 env steps, learning from step 101: 500 updates, or with 3 envs 3 updates per vector
    # step from step 102 to 600 (167 vector steps), i.e. 501.
    [
        ("CartPole-v1", 1, 500),
        ("Acrobot-v1", 1, 500),
        ("MountainCar-v0", 3, 501),
        ("LunarLander-v3", 1, 500),
    ],
)
def test_smoke_runs_perform_gradient_updates(env_id, num_envs, updates, in_tmp):
    double_soft_q = env_id == "Acrobot-v1"
    args = tiny_args(env_id=env_id, num_envs=num_envs, eval_episodes=1, double_soft_q=double_soft_q)
    summary, metrics = read_run(sqld.main(args))
    assert summary["algorithm"] == "sql_discrete" and summary["env_id"] == env_id
    assert summary["status"] == "finished" and summary["double_soft_q"] == double_soft_q
    assert summary["global_step"] == 600 and summary["gradient_updates"] == updates
    assert summary["policy_updates"] == 0  # no sampler or actor: π is the Boltzmann policy of Q
    n_actions = gym.make(env_id).action_space.n
    assert summary["target_entropy"] == pytest.approx(0.3 * math.log(n_actions))
    assert math.isfinite(summary["eval_return_mean"]) and summary["learn_sps"] > 0
    keys = ["losses/qf_loss", "losses/alpha", "losses/alpha_loss", "charts/policy_entropy"]
    keys += ["losses/soft_value", "charts/learning_rate"]
    losses = [m for m in metrics if "losses/qf_loss" in m]
    # at each vector step that crosses a multiple of 50 once updates began: 150, 200, ..., 600
    # (with 3 envs the first update, at step 102, also crosses 100)
    first = 2 if num_envs == 3 else 3
    assert [m["global_step"] // 50 for m in losses] == list(range(first, 13))
    assert all(math.isfinite(m[key]) for m in losses for key in keys)
    assert summary["alpha"] != 1.0  # autotune moved the temperature


@pytest.mark.parametrize(
    "train_frequency, gradient_steps, updates",
    # 600 env steps with 2 envs, learning from step 102: vector steps 51 to 300 (250 of them)
    [
        (1, 1, 500),  # one update per env step; before the fix, one per vector step: 250
        (2, 1, 250),  # rounds on the 125 even vector steps, 2 updates each: ½ per env step
        (1, 3, 1500),  # 3 updates per env step
    ],
)
def test_each_env_step_gets_gradient_steps_per_train_frequency_updates(
    train_frequency, gradient_steps, updates, in_tmp
):
    args = tiny_args(
        num_envs=2, train_frequency=train_frequency, gradient_steps=gradient_steps, eval_episodes=1
    )
    assert sqld.main(args)["gradient_updates"] == updates


def test_hard_target_copies_every_target_network_frequency_updates(in_tmp):
    fixed = dict(anneal_lr=False, tau=1.0, target_network_frequency=300, save_model=True)
    runs = {}
    for name, steps in (("full", 600), ("at_copy", 400)):  # 500 updates, or stop after the 300th
        result = sqld.main(tiny_args(exp_name=name, total_timesteps=steps, **fixed))
        runs[name] = torch.load(Path(result["run_dir"]) / "model.pt", weights_only=True)
    same = lambda a, b: all(torch.equal(a[k], b[k]) for k in a)  # noqa: E731
    # the same run up to step 400, so the full run's target is its Q after the 300th update
    assert same(runs["full"]["target_network"], runs["at_copy"]["q_network"])
    assert same(runs["at_copy"]["target_network"], runs["at_copy"]["q_network"])
    assert not same(runs["full"]["target_network"], runs["full"]["q_network"])


@pytest.mark.parametrize("anneal_lr", [True, False])
def test_learning_rate_decays_linearly_to_zero_at_total_timesteps(anneal_lr, in_tmp):
    args = tiny_args(anneal_lr=anneal_lr, checkpoint_frequency=600, eval_episodes=1)
    result = sqld.main(args)
    checkpoint, (_, metrics) = load_checkpoint(result), read_run(result)
    # one scheduler step per update: after the k-th, the rate is that of env step 100 + k
    rate = lambda step: args.learning_rate * (1 - step / 600 if anneal_lr else 1)  # noqa: E731
    assert checkpoint["lr_scheduler"]["last_epoch"] == result["gradient_updates"] == 500
    assert checkpoint["q_optimizer"]["param_groups"][0]["lr"].item() == pytest.approx(rate(600))
    logged = [
        (m["global_step"], m["charts/learning_rate"]) for m in metrics if "losses/qf_loss" in m
    ]
    assert len(logged) == 10
    for step, learning_rate in logged:  # at step g, 1 env: g − 100 updates done
        assert learning_rate == pytest.approx(rate(step), rel=1e-6, abs=1e-12)


def test_resume_continues_the_learning_rate_schedule(in_tmp):
    """A resumed run's scheduler carries on from the saved update count (here with a typed longer
    --total-timesteps, whose schedule it follows): its rates are those of the restored count."""
    first = sqld.main(tiny_args(total_timesteps=400, checkpoint_frequency=400, eval_episodes=1))
    checkpoint = Path(first["run_dir"]) / "checkpoint.pt"
    resumed = sqld.main(sqld.Args(resume=str(checkpoint), total_timesteps=600, cuda=False))
    assert resumed["gradient_updates"] == 500
    assert load_checkpoint(resumed)["lr_scheduler"]["last_epoch"] == 500
    _, metrics = read_run(resumed)
    logged = [
        (m["global_step"], m["charts/learning_rate"]) for m in metrics if "losses/qf_loss" in m
    ]
    after = [(step, rate) for step, rate in logged if step > 400]
    assert [step for step, _ in after] == [450, 500, 550, 600]
    for step, rate in after:  # a restarted scheduler would give 1e-3·(1 − (step − 300)/600)
        assert rate == pytest.approx(1e-3 * (1 - step / 600), rel=1e-6, abs=1e-12)


def test_compiled_losses_train(in_tmp):
    summary, metrics = read_run(sqld.main(tiny_args(compile=True)))
    assert summary["gradient_updates"] == 500 and math.isfinite(summary["eval_return_mean"])
    losses = [m["losses/qf_loss"] for m in metrics if "losses/qf_loss" in m]
    assert len(losses) == 10 and all(math.isfinite(x) for x in losses)


# ---------------------------------------------------------------------------- bad input (CONVENTIONS §7)
@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"env_id": "Pendulum-v1"}, "needs a Discrete one"),
        ({"env_id": "FrozenLake-v1"}, "flat Box"),
        ({"learning_rate": -1.0}, "--learning-rate must be positive"),
        ({"learning_rate": float("nan")}, "--learning-rate must be positive"),
        ({"alpha": 0.0}, "--alpha must be positive"),
        ({"alpha": float("inf")}, "--alpha must be positive"),
        ({"alpha_lr": 0.0}, "--alpha-lr must be positive"),
        ({"target_network_frequency": 0}, "--target-network-frequency must be positive"),
        ({"train_frequency": 0}, "--train-frequency must be positive"),
        ({"gradient_steps": 0}, "--gradient-steps must be positive"),
        ({"target_entropy_scale": 1.0}, "--target-entropy-scale must be in"),
        ({"target_entropy_scale": 0.0}, "--target-entropy-scale must be in"),
        ({"hidden_sizes": ()}, "--hidden-sizes must be positive"),
        ({"hidden_sizes": (32, 0)}, "--hidden-sizes must be positive"),
    ],
)
def test_bad_input_of_its_own_flags_is_a_usage_error_and_writes_nothing(overrides, message, in_tmp):
    with pytest.raises(sqld.UsageError, match=message):
        sqld.main(tiny_args(**overrides))
    assert not (in_tmp / "runs").exists()


# ---------------------------------------------------------------------------- learning
@pytest.mark.slow
def test_cartpole_greedy_return_reaches_400_within_40k_steps(in_tmp):
    result = sqld.main(sqld.Args(total_timesteps=40_000, eval_frequency=0, cuda=False))
    assert result["eval_return_mean"] >= 400, result
