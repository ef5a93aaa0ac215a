"""`--compile` in the deep-RL scripts, whose whole update compiles to one graph: their Adam step (gradient by
torch.autograd.grad, torch's functional Adam, so that torch.compile can trace it) is exactly
torch.optim.Adam's, and the compiled update is one graph whose steps equal eager's."""

import copy
import importlib

import numpy as np
import pytest
import torch
import torch._dynamo.config
import torch._inductor.config
from conftest import random_transitions

SCRIPTS = ["sac_v2", "sac_v1", "sql_continuous", "sql_discrete"]
OBS_DIM, ACT_DIM = 3, 2


def batch(seed: int, device: str = "cpu") -> tuple[torch.Tensor, ...]:
    return random_transitions(seed, OBS_DIM, ACT_DIM, device=device)


def discrete_batch(seed: int, device: str = "cpu") -> tuple[torch.Tensor, ...]:
    """(obs, next obs, action index, reward, terminated), as sql_discrete stores it."""
    obs, action, reward, terminated, next_obs = batch(seed, device)
    return obs, next_obs, (action[:, 0] > 0).long(), reward[:, 0], terminated[:, 0]


@pytest.mark.parametrize("form", [{"fused": True}, {"foreach": True}, {}])
@pytest.mark.parametrize("script", SCRIPTS)
def test_adam_step_is_torch_adams_step(script, form):
    """Two networks, one loss, two optimizers, three steps: adam_step leaves the parameters and the
    optimizer state bit-identical to zero_grad(), backward() and step()."""
    module = importlib.import_module(script)
    copies = []
    for _ in range(2):
        torch.manual_seed(0)
        nets = [torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))]
        nets.append(torch.nn.Linear(5, 1))
        optimizers = [torch.optim.Adam(net.parameters(), lr=1e-2, **form) for net in nets]
        copies.append((nets, optimizers))
    (nets_a, optimizers_a), (nets_b, optimizers_b) = copies
    for step in range(3):
        x = torch.randn(16, 5, generator=torch.Generator().manual_seed(step))
        for optimizer in optimizers_a:
            optimizer.zero_grad()
        (nets_a[0](x).pow(2).mean() + nets_a[1](x).abs().mean()).backward()
        for optimizer in optimizers_a:
            optimizer.step()
        module.adam_step(nets_b[0](x).pow(2).mean() + nets_b[1](x).abs().mean(), *optimizers_b)
        for net_a, net_b in zip(nets_a, nets_b, strict=True):
            for a, b in zip(net_a.parameters(), net_b.parameters(), strict=True):
                assert torch.equal(a, b)
    for optimizer_a, optimizer_b in zip(optimizers_a, optimizers_b, strict=True):
        state_a, state_b = optimizer_a.state_dict()["state"], optimizer_b.state_dict()["state"]
        for index, entry in state_a.items():
            for key, value in entry.items():
                assert torch.equal(value, state_b[index][key]), key


def adam_form(device: str) -> dict:
    """The Adam form of --compile (foreach), capturable on CUDA as --cudagraphs builds it."""
    return {"foreach": True, "capturable": device == "cuda"}


@pytest.mark.parametrize("script", SCRIPTS)
def test_init_adam_state_gives_a_resumed_optimizer_this_runs_form_and_keeps_its_state(script):
    """An eager run's checkpoint resumed with --compile: load_state_dict restores the saved fused
    form; init_adam_state sets the compiled form (foreach), keeps moments and step exactly, and the
    next adam_step equals torch's own foreach Adam continuing from that state."""
    module = importlib.import_module(script)
    torch.manual_seed(0)
    nets = [torch.nn.Linear(5, 3) for _ in range(3)]
    x = torch.randn(8, 5, generator=torch.Generator().manual_seed(1))
    saved = torch.optim.Adam(nets[0].parameters(), lr=1e-2, fused=True)
    for _ in range(2):
        saved.zero_grad()
        nets[0](x).pow(2).mean().backward()
        saved.step()
    checkpoint = saved.state_dict()
    resumed, reference = (
        torch.optim.Adam(net.parameters(), lr=1e-2, fused=False, foreach=True) for net in nets[1:]
    )
    for net, optimizer in zip(nets[1:], (resumed, reference), strict=True):
        net.load_state_dict(nets[0].state_dict())
        optimizer.load_state_dict(copy.deepcopy(checkpoint))  # as torch.load gives it: no sharing
    assert resumed.param_groups[0]["fused"]  # the saved form is back
    module.init_adam_state(resumed, fused=False, foreach=True, capturable=False)
    assert (resumed.param_groups[0]["fused"], resumed.param_groups[0]["foreach"]) == (False, True)
    for index, entry in checkpoint["state"].items():
        for key, value in entry.items():
            assert torch.equal(resumed.state_dict()["state"][index][key], value), key
    reference.param_groups[0].update(fused=False)  # torch's foreach Adam from the same state
    reference.zero_grad()
    nets[2](x).pow(2).mean().backward()
    reference.step()
    module.adam_step(nets[1](x).pow(2).mean(), resumed)
    for a, b in zip(nets[1].parameters(), nets[2].parameters(), strict=True):
        assert torch.equal(a, b)


def sac_v2_update(device: str = "cpu"):
    import sac_v2

    torch.manual_seed(0)
    actor = sac_v2.Actor(OBS_DIM, ACT_DIM, 16, -np.ones(ACT_DIM), np.ones(ACT_DIM)).to(device)
    qf, qf_target = (sac_v2.TwinSoftQNetwork(OBS_DIM, ACT_DIM, 16).to(device) for _ in range(2))
    qf_target.load_state_dict(qf.state_dict())
    qf_target.requires_grad_(False)
    log_alpha = torch.tensor(-1.0, device=device, requires_grad=True)
    groups = [qf.parameters(), actor.parameters(), [log_alpha]]
    optimizers = [torch.optim.Adam(group, lr=1e-3, **adam_form(device)) for group in groups]
    state = (actor, qf, qf_target, log_alpha, *optimizers)
    return sac_v2.update, optimizers, state, (0.99, 0.005, -2.0), batch


def sac_v1_update(device: str = "cpu"):
    import sac_v1

    torch.manual_seed(0)
    actor = sac_v1.Actor(OBS_DIM, ACT_DIM, 16, -np.ones(ACT_DIM), np.ones(ACT_DIM)).to(device)
    qf = sac_v1.TwinSoftQNetwork(OBS_DIM, ACT_DIM, 16).to(device)
    vf, vf_target = (sac_v1.SoftValueNetwork(OBS_DIM, 16).to(device) for _ in range(2))
    vf_target.load_state_dict(vf.state_dict())
    vf_target.requires_grad_(False)
    log_alpha = torch.tensor(0.0, device=device, requires_grad=True)
    groups = [vf.parameters(), qf.parameters(), actor.parameters(), [log_alpha]]
    optimizers = [torch.optim.Adam(group, lr=1e-3, **adam_form(device)) for group in groups]
    state = (actor, qf, vf, vf_target, log_alpha, *optimizers)
    return sac_v1.update, optimizers, state, (0.99, 0.005, 5.0, -2.0), batch


def sql_continuous_update(device: str = "cpu"):
    import sql_continuous

    torch.manual_seed(0)
    sampler = sql_continuous.SamplingNetwork(OBS_DIM, ACT_DIM, 16, -np.ones(2), np.ones(2))
    qf, qf_target = (sql_continuous.SoftQNetwork(OBS_DIM, ACT_DIM, 16) for _ in range(2))
    sampler, qf, qf_target = sampler.to(device), qf.to(device), qf_target.to(device)
    qf_target.load_state_dict(qf.state_dict())
    qf_target.requires_grad_(False)
    optimizers = [
        torch.optim.Adam(net.parameters(), lr=1e-3, **adam_form(device)) for net in (qf, sampler)
    ]
    args = sql_continuous.Args(env_id="Pendulum-v1", kernel_n_particles=8, value_n_particles=8)
    state = (sampler, qf, qf_target, *optimizers)
    return sql_continuous.update, optimizers, state, (args, True), batch


def sql_discrete_update(device: str = "cpu"):
    import sql_discrete

    torch.manual_seed(0)
    q_network, target_network = (
        sql_discrete.QNetwork(OBS_DIM, 2, (16, 16)).to(device) for _ in range(2)
    )
    target_network.load_state_dict(q_network.state_dict())
    target_network.requires_grad_(False)
    log_alpha = torch.tensor(0.0, device=device, requires_grad=True)
    # as --compile builds them: the annealed rate a tensor, single-tensor Adam (capturable on CUDA,
    # with the rate on the GPU, as --cudagraphs builds them)
    capturable = device == "cuda"
    rate = torch.tensor(1e-3, device=device if capturable else "cpu")
    q_optimizer = torch.optim.Adam(
        q_network.parameters(), lr=rate, foreach=False, capturable=capturable
    )
    alpha_optimizer = torch.optim.Adam([log_alpha], lr=1e-3, capturable=capturable)
    state = (q_network, target_network, log_alpha, q_optimizer, alpha_optimizer)
    return (
        sql_discrete.update,
        [q_optimizer, alpha_optimizer],
        state,
        (0.99, 0.005, 0.3),
        discrete_batch,
    )


UPDATES = {
    "sac_v2": sac_v2_update,
    "sac_v1": sac_v1_update,
    "sql_continuous": sql_continuous_update,
    "sql_discrete": sql_discrete_update,
}


def tensors(state) -> list[torch.Tensor]:
    """Every parameter and tensor in an update's arguments (the optimizers' are checked by them)."""
    found = []
    for item in state:
        if isinstance(item, torch.Tensor):
            found.append(item)
        elif isinstance(item, torch.nn.Module):
            found += list(item.parameters())
    return found


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
@torch._dynamo.config.patch(trace_autograd_ops=True)  # what --compile sets
@torch._inductor.config.patch(fallback_random=True)  # compiled code draws eager's random numbers
def test_compiled_update_is_one_graph_and_matches_eager(script):
    """--compile traces the whole update (losses, autograd.grad, Adam, target update) as one graph
    with no breaks, and three compiled steps equal three eager ones up to float reassociation."""
    module = importlib.import_module(script)
    update, optimizers, state, constants, make_batch = UPDATES[script]()
    for optimizer in optimizers:
        module.init_adam_state(optimizer)
    explanation = torch._dynamo.explain(update)(make_batch(0), *state, *constants)
    assert explanation.graph_count == 1 and explanation.graph_break_count == 0

    torch._dynamo.reset()
    results = []
    for step in (update, torch.compile(update)):
        _, optimizers, state, constants, _ = UPDATES[script]()
        for optimizer in optimizers:
            module.init_adam_state(optimizer)
        torch.manual_seed(11)
        losses = [step(make_batch(seed), *state, *constants) for seed in range(3)]
        results.append((tensors(state), losses))
    (eager_tensors, eager_losses), (compiled_tensors, compiled_losses) = results
    assert len(eager_tensors) > 4
    for eager, compiled in zip(eager_tensors, compiled_tensors, strict=True):
        torch.testing.assert_close(eager, compiled, atol=1e-5, rtol=1e-4)
    for eager, compiled in zip(eager_losses, compiled_losses, strict=True):
        for key in eager:
            torch.testing.assert_close(eager[key], compiled[key], atol=1e-5, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
@pytest.mark.parametrize("script", SCRIPTS)
@torch._dynamo.config.patch(trace_autograd_ops=True)  # what --compile sets
@torch._inductor.config.patch(fallback_random=True)  # compiled code draws eager's random numbers
def test_cuda_graphed_update_matches_eager_on_the_gpu(script):
    """--cudagraphs: the update compiled in torch.compile's CUDA-graph mode, with the state it
    changes in place marked static as the scripts mark it, is really replayed as a CUDA graph (no
    cudagraph skip) and four steps (warm-up, recording, two replays) equal eager's on the GPU."""
    module = importlib.import_module(script)
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    results = []
    for mode in (None, "reduce-overhead"):
        update, optimizers, state, constants, make_batch = UPDATES[script](device="cuda")
        for optimizer in optimizers:
            module.init_adam_state(optimizer)
        step = update
        if mode is not None:
            static = [item for item in state if isinstance(item, torch.Tensor)]
            for tensor in static + module.adam_state_tensors(*optimizers):
                torch._dynamo.mark_static_address(tensor)
            step = torch.compile(update, mode=mode)
        torch.manual_seed(11)
        losses = []
        for seed in range(4):
            torch.compiler.cudagraph_mark_step_begin()
            output = step(make_batch(seed, "cuda"), *state, *constants)
            losses.append({key: value.clone() for key, value in output.items()})
        results.append((tensors(state), losses))
    assert counters["inductor"]["cudagraph_skips"] == 0
    (eager_tensors, eager_losses), (graphed_tensors, graphed_losses) = results
    for eager, graphed in zip(eager_tensors, graphed_tensors, strict=True):
        torch.testing.assert_close(eager, graphed, atol=1e-5, rtol=1e-4)
    for eager, graphed in zip(eager_losses, graphed_losses, strict=True):
        for key in eager:
            torch.testing.assert_close(eager[key], graphed[key], atol=1e-5, rtol=1e-4)
