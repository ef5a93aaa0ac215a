"""The paper's Figure 1 for a sql_continuous.py run on MultiGoal-v0, drawn from its saved networks.

Left: 50 trajectories of the *stochastic* sampler from (near) the origin over the contours of the
goal cost; right: Q(s = (0, 0), ·) with 200 sampled actions. The rollouts use the seeds of the
run's evaluations, so the counts in the title are the run's goals_reached and rollouts_at_goal.

    pip install -r requirements.txt    # matplotlib is in it
    python sql_continuous.py --env-id MultiGoal-v0 --total-timesteps 20000 --save-model
    python benchmarks/multigoal_figure.py runs/<run>/model.pt    # writes runs/<run>/multigoal.png
"""

import argparse
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import sql_continuous as sqlc  # noqa: E402  (the script at the repository root)


@torch.inference_mode()
def plot_multigoal(sampler, qf, path: str, seed: int, caption: str) -> np.ndarray:
    """The paper's Figure 1: 50 sampled trajectories, and Q(s = 0, ·) with 200 sampled actions.
    Returns how many of the 50 rollouts ended at each goal."""
    from matplotlib.figure import Figure  # no pyplot: no display or backend needed

    paths, goal_counts = sqlc.multigoal_rollouts(sampler, 50, seed)
    figure = Figure(figsize=(11, 5.3), layout="constrained")
    figure.suptitle(caption)
    states_axis, actions_axis = figure.subplots(1, 2)

    grid = np.linspace(-7.5, 7.5, 301)
    x, y = np.meshgrid(grid, grid)
    goals = sqlc.MultiGoalEnv.GOALS
    goal_cost = np.min([(x - gx) ** 2 + (y - gy) ** 2 for gx, gy in goals], axis=0)
    contours = states_axis.contour(x, y, goal_cost, levels=12, colors="0.7", linewidths=0.8)
    states_axis.clabel(contours, fontsize=7, fmt="%.0f")
    for positions in paths:
        states_axis.plot(positions[:, 0], positions[:, 1], color="tab:blue", lw=0.8, alpha=0.7)
    states_axis.plot(goals[:, 0], goals[:, 1], "o", color="tab:red", ms=8)
    states_axis.set(xlim=(-7.5, 7.5), ylim=(-7.5, 7.5), aspect="equal", xlabel="x", ylabel="y")
    reached, at_goal = sqlc.goal_statistics(goal_counts).values()
    title = f"50 sampled trajectories: {at_goal} end at a goal, {reached} of 4 goals reached"
    states_axis.set_title(title, fontsize=10)

    device = sampler.action_scale.device
    unit = torch.linspace(-1.0, 1.0, 101, device=device)
    a1, a2 = torch.meshgrid(unit, unit, indexing="xy")
    actions = torch.stack([a1, a2], dim=-1).reshape(-1, 2)
    origin = torch.zeros(1, 2, device=device)
    q = qf(origin.expand(len(actions), -1), actions).reshape(a1.shape).cpu().numpy()
    filled = actions_axis.contourf(a1.cpu().numpy(), a2.cpu().numpy(), q, levels=20, cmap="viridis")
    figure.colorbar(filled, ax=actions_axis, label="Q(s = (0, 0), a)")
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        samples = torch.tanh(sampler.particles(origin, 200)[1][0]).cpu().numpy()
    actions_axis.plot(samples[:, 0], samples[:, 1], ".", color="white", ms=4, alpha=0.8)
    actions_axis.set(xlim=(-1, 1), ylim=(-1, 1), aspect="equal", xlabel="a₁", ylabel="a₂")
    actions_axis.set_title("Q at the origin, 200 sampled actions", fontsize=10)
    figure.savefig(path, dpi=110)
    return goal_counts


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="model.pt or checkpoint.pt of a MultiGoal-v0 run")
    parser.add_argument("--out", help="where to write the PNG (default: multigoal.png beside it)")
    args = parser.parse_args(argv)
    try:
        saved = sqlc.load_saved(args.model, "model")
    except sqlc.UsageError as err:
        parser.error(str(err))
    if saved["args"]["env_id"] != "MultiGoal-v0":
        parser.error(f"'{args.model}' was trained on {saved['args']['env_id']}, not MultiGoal-v0")
    env, seed = gym.make("MultiGoal-v0"), saved["args"]["seed"]
    policy = sqlc.load_policy(saved, sqlc.Args(env_id="MultiGoal-v0"), env, torch.device("cpu"))
    out = args.out or str(Path(args.model).with_name("multigoal.png"))
    caption = f"soft Q-learning on MultiGoal-v0: seed {seed}, step {saved['global_step']:,}"
    # seed + 100_000: the seeds of the run's evaluation episodes and goal statistics
    statistics = sqlc.goal_statistics(
        plot_multigoal(policy.sampler, policy.qf, out, seed + 100_000, caption)
    )
    print(f"{out}: {statistics}")
    return {**statistics, "figure": out}


if __name__ == "__main__":
    main()
