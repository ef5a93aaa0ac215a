"""`--compile` and `--cudagraphs` in the deep-RL scripts: the update keeps the field's idiom
(zero_grad, backward, step) and uses public torch APIs only, and torch.compile of it (LeanRL's
recipe) takes the same steps as eager, on the CPU and, in CUDA-graph mode, on a GPU."""

import importlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch._inductor.config
from conftest import random_transitions

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["sac_v2", "sac_v1", "sql_continuous", "sql_discrete"]
OBS_DIM, ACT_DIM = 3, 2


def batch(seed: int, device: str = "cpu") -> tuple[torch.Tensor, ...]:
    return random_transitions(seed, OBS_DIM, ACT_DIM, device=device)


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_scripts_use_public_torch_apis_and_the_optimizers_own_step(script):
    text = (ROOT / f"{script}.py").read_text()
    private = re.findall(r"torch\._\w+|mark_static_address|torch\.optim\.\w+ import", text)
    assert private == []
    assert ".zero_grad()" in text and ".backward(" in text and "optimizer.step()" in text


def sac_v2_update(device: str = "cpu"):
    import sac_v2

    torch.manual_seed(0)
    actor = sac_v2.Actor(OBS_DIM, ACT_DIM, 16, -np.ones(ACT_DIM), np.ones(ACT_DIM)).to(device)
    qf, qf_target = (sac_v2.TwinSoftQNetwork(OBS_DIM, ACT_DIM, 16).to(device) for _ in range(2))
    qf_target.load_state_dict(qf.state_dict())
    qf_target.requires_grad_(False)
    log_alpha = torch.tensor(-1.0, device=device, requires_grad=True)
    groups = [qf.parameters(), actor.parameters(), [log_alpha]]
    optimizers = [torch.optim.Adam(group, lr=1e-3, capturable=device == "cuda") for group in groups]
    state = (actor, qf, qf_target, log_alpha, *optimizers)
    return sac_v2.update, state, (0.99, 0.005, -2.0), batch


def sac_v1_update(device: str = "cpu"):
    import sac_v1

    torch.manual_seed(0)
    actor = sac_v1.Actor(OBS_DIM, ACT_DIM, 16, -np.ones(ACT_DIM), np.ones(ACT_DIM)).to(device)
    qf = sac_v1.TwinSoftQNetwork(OBS_DIM, ACT_DIM, 16).to(device)
    vf, vf_target = (sac_v1.SoftValueNetwork(OBS_DIM, 16).to(device) for _ in range(2))
    vf_target.load_state_dict(vf.state_dict())
    vf_target.requires_grad_(False)
    log_alpha = torch.tensor(-1.0, device=device, requires_grad=True)
    groups = [vf.parameters(), qf.parameters(), actor.parameters(), [log_alpha]]
    optimizers = [torch.optim.Adam(group, lr=1e-3, capturable=device == "cuda") for group in groups]
    state = (actor, qf, vf, vf_target, log_alpha, *optimizers)
    return sac_v1.update, state, (0.99, 0.005, 1.0, -2.0), batch


def sql_continuous_update(device: str = "cpu"):
    import sql_continuous

    torch.manual_seed(0)
    sampler = sql_continuous.SamplingNetwork(OBS_DIM, ACT_DIM, 16, -np.ones(2), np.ones(2))
    qf, qf_target = (sql_continuous.SoftQNetwork(OBS_DIM, ACT_DIM, 16) for _ in range(2))
    sampler, qf, qf_target = sampler.to(device), qf.to(device), qf_target.to(device)
    qf_target.load_state_dict(qf.state_dict())
    qf_target.requires_grad_(False)
    optimizers = [
        torch.optim.Adam(net.parameters(), lr=1e-3, capturable=device == "cuda")
        for net in (qf, sampler)
    ]
    args = sql_continuous.Args(env_id="Pendulum-v1", kernel_n_particles=8, value_n_particles=8)
    state = (sampler, qf, qf_target, *optimizers)
    return sql_continuous.update, state, (args, True), batch


def discrete_batch(seed: int, device: str = "cpu") -> tuple[torch.Tensor, ...]:
    """(obs, next obs, action index, reward, terminated), as sql_discrete stores it."""
    obs, action, reward, terminated, next_obs = batch(seed, device)
    return obs, next_obs, (action[:, 0] > 0).long(), reward[:, 0], terminated[:, 0]


def sql_discrete_update(device: str = "cpu"):
    import sql_discrete

    torch.manual_seed(0)
    q_network, target_network = (
        sql_discrete.QNetwork(OBS_DIM, 2, (16, 16)).to(device) for _ in range(2)
    )
    target_network.load_state_dict(q_network.state_dict())
    target_network.requires_grad_(False)
    log_alpha = torch.tensor(0.0, device=device, requires_grad=True)
    args = sql_discrete.Args(env_id="CartPole-v1", learning_rate=1e-3, alpha_lr=1e-3)
    q_optimizer, _, alpha_optimizer = sql_discrete.make_optimizers(
        args, q_network, log_alpha, capturable=device == "cuda"
    )
    state = (q_network, target_network, log_alpha, q_optimizer, alpha_optimizer)
    return sql_discrete.update, state, (0.99, 0.005, 0.3), discrete_batch


UPDATES = {
    "sac_v2": sac_v2_update,
    "sac_v1": sac_v1_update,
    "sql_continuous": sql_continuous_update,
    "sql_discrete": sql_discrete_update,
}


def tensors(state) -> list[torch.Tensor]:
    """Every parameter, tensor and optimizer-state tensor in an update's arguments."""
    found = []
    for item in state:
        if isinstance(item, torch.Tensor):
            found.append(item)
        elif isinstance(item, torch.nn.Module):
            found += list(item.parameters())
        elif isinstance(item, torch.optim.Optimizer):
            found += [t for entry in item.state.values() for t in entry.values() if t.dim()]
    return found


def run_steps(script: str, mode: str | None, device: str, steps: int):
    """`steps` updates, eager (mode None) or compiled in `mode`; the tensors and losses after."""
    update, state, constants, make_batch = UPDATES[script](device)
    step = update if mode is None else torch.compile(update, mode=mode or None)
    torch.manual_seed(11)
    losses = []
    for seed in range(steps):
        if mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        output = step(make_batch(seed, device), *state, *constants)
        losses.append({key: value.clone() for key, value in output.items()})
    return tensors(state), losses


def assert_same_steps(first, second) -> None:
    (tensors_a, losses_a), (tensors_b, losses_b) = first, second
    assert len(tensors_a) > 4
    for a, b in zip(tensors_a, tensors_b, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    for a, b in zip(losses_a, losses_b, strict=True):
        for key in a:
            torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
@torch._inductor.config.patch(fallback_random=True)  # compiled code draws eager's random numbers
def test_compiled_update_matches_eager(script):
    """--compile: three compiled updates (losses, backward, the optimizers' own steps, Polyak)
    equal three eager ones up to float reassociation."""
    importlib.import_module(script)
    torch._dynamo.reset()
    assert_same_steps(run_steps(script, None, "cpu", 3), run_steps(script, "", "cpu", 3))


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
@pytest.mark.parametrize("script", SCRIPTS)
@torch._inductor.config.patch(fallback_random=True)
def test_cuda_graphed_update_matches_eager_on_the_gpu(script):
    """--cudagraphs: the update in torch.compile's CUDA-graph mode with capturable Adam is really
    replayed (no cudagraph skip), and four steps (warm-up, recording, two replays) equal eager's."""
    importlib.import_module(script)
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    graphed = run_steps(script, "reduce-overhead", "cuda", 4)
    assert counters["inductor"]["cudagraph_skips"] == 0
    assert_same_steps(run_steps(script, None, "cuda", 4), graphed)
