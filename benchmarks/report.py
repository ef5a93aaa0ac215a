"""Tables and figures of the learning benchmark, computed from benchmarks/results/runs.jsonl alone.

For every env: final deterministic-eval return per contender (mean ± std and each seed) and a
learning-curve PNG. For a grid with reference returns (the MuJoCo grids), rliable statistics
(Agarwal et al. 2021, "Deep RL at the Edge of the Statistical Precipice") on normalized scores

    score = (return - random-policy return) / (reference return - random-policy return)

over all runs of all envs: interquartile mean (IQM) and mean with 95 % stratified-bootstrap
confidence intervals per contender, the probability of improvement P(X > Y) of each softrl script
over its SB3 peer (averaged over envs, with its CI, and per env), a performance profile and an IQM
sample-efficiency curve; and for a variant of a script (a run with extra flags, e.g. an ablation on
some envs), P(variant > script at its defaults) and P(variant > SB3 peer) per env, with CIs.

    pip install -r requirements.txt -r benchmarks/requirements.txt
    python benchmarks/report.py                    # after (or while) benchmarks/returns.py runs
    python benchmarks/report.py --measure-random   # re-measure RANDOM_RETURNS below
    python benchmarks/report.py --readme README.md # also rewrite README's generated blocks
"""

import argparse
import datetime
import json
import statistics
import sys
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"

# Mean return of the uniform-random policy over 100 episodes (episode k reset with seed k), measured
# with `python benchmarks/report.py --measure-random` on gymnasium 1.4 / MuJoCo 4.0 (2026-11-23).
# D4RL's random scores (d4rl/infos.py REF_MIN_SCORE, v0 datasets): walker2d 1.6, halfcheetah
# -280.2 agree; hopper -20.3 does not (its random dataset is not this policy's episodes). Either way
# the random return is < 1 % of the reference, so the choice barely moves a normalized score.
RANDOM_RETURNS = {
    "Hopper-v4": 17.67,
    "Walker2d-v4": 2.61,
    "HalfCheetah-v4": -282.49,
    "Humanoid-v4": 120.89,
}
# The reference return of each env: SAC's deterministic-eval return at 1M env steps in the SAC v2
# paper (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications", arXiv 1812.05905).
# The paper gives learning curves only (its Fig. 1, the v2 envs); these are the values CleanRL's SAC
# page (docs.cleanrl.dev/rl-algorithms/sac, column "SAC: Algorithms and Applications @ 1M steps")
# reads off that figure: approximate, but one public source with one protocol for all four envs.
REFERENCE_RETURNS = {
    "Hopper-v4": 3_250.0,
    "Walker2d-v4": 4_800.0,
    "HalfCheetah-v4": 11_250.0,
    "Humanoid-v4": 4_500.0,
}
# Which SB3 run each softrl script is compared with.
PEERS = {"sac_v2": "sb3_sac", "sac_v1": "sb3_sac", "sql_continuous": "sb3_sac"}
BOOTSTRAP_REPS = 50_000


def contender(row: dict) -> str:
    return f"{row['script']} {row['variant']}".strip()


def normalized(env_id: str, value: float) -> float:
    low = RANDOM_RETURNS[env_id]
    return (value - low) / (REFERENCE_RETURNS[env_id] - low)


def score_matrices(rows: list[dict], env_ids: list[str]) -> dict[str, np.ndarray]:
    """Per contender, normalized final scores as a (seeds × envs) matrix.

    A contender enters only with the seeds it finished on every env, so the matrix is full.
    """
    finals = defaultdict(dict)  # contender -> {(env, seed): return}
    for row in rows:
        finals[contender(row)][(row["env_id"], row["seed"])] = row["final_eval_return"]
    matrices = {}
    for name, by_run in finals.items():
        seeds = sorted(
            {seed for _, seed in by_run}
            & set.intersection(*({s for e, s in by_run if e == env} for env in env_ids))
        )
        if seeds:
            matrices[name] = np.array(
                [[normalized(env, by_run[(env, seed)]) for env in env_ids] for seed in seeds]
            )
    return matrices


def interval(point, bounds: np.ndarray) -> str:
    low, high = np.ravel(bounds)
    return f"{float(point):.3f} [{low:.3f}, {high:.3f}]"


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """rliable's P(X > Y) of two (runs × envs) score matrices, vectorized: per env, the share of
    run pairs in which X's run scores above Y's (a tie counts ½), averaged over envs. rliable's own
    calls scipy's Mann-Whitney U per env and per bootstrap resample, most of the report's time."""
    above = (x[:, None, :] > y[None, :, :]).mean(axis=(0, 1))
    tied = (x[:, None, :] == y[None, :, :]).mean(axis=(0, 1))
    return float(np.mean(above + 0.5 * tied))


def rliable_section(
    grid: str, rows: list[dict], out: Path | None, reps: int = BOOTSTRAP_REPS
) -> list[str]:
    """Markdown lines, and PNGs in `out` (None: none), of the rliable statistics of one grid's runs."""
    from rliable import library as rly
    from rliable import metrics

    # rliable hands arch a RandomState, which arch deprecates (the intervals are unaffected).
    warnings.filterwarnings("ignore", "random_state is deprecated", FutureWarning)
    env_ids = sorted({row["env_id"] for row in rows})
    matrices = score_matrices(rows, env_ids)
    if not matrices:
        return []
    # The same intervals on every re-run. rliable's stratified bootstraps draw their resamples from
    # NumPy's global RNG whatever random_state says, so that is seeded too.
    np.random.seed(0)
    random_state = np.random.RandomState(0)
    few_reps = min(reps, 2_000)  # for the slower statistics: P(X > Y), profiles, curves

    def aggregates(scores):
        return np.array([metrics.aggregate_iqm(scores), metrics.aggregate_mean(scores)])

    points, intervals = rly.get_interval_estimates(
        matrices, aggregates, reps=reps, random_state=random_state
    )
    lines = [
        f"## {grid}: rliable statistics",
        "",
        "Normalized score = (return − random-policy return) / (reference − random-policy return);"
        f" {reps:,} stratified-bootstrap resamples, 95 % percentile intervals."
        " A contender counts with the seeds it finished on every env.",
        "",
        "| env | random-policy return | reference return |",
        "|---|---|---|",
        *(f"| {e} | {RANDOM_RETURNS[e]:.1f} | {REFERENCE_RETURNS[e]:.0f} |" for e in env_ids),
        "",
        "| contender | runs (seeds × envs) | IQM [95 % CI] | mean [95 % CI] |",
        "|---|---|---|---|",
    ]
    for name, scores in matrices.items():
        iqm, mean = points[name]
        lines.append(
            f"| {name} | {scores.shape[0]} × {scores.shape[1]} | "
            f"{interval(iqm, intervals[name][:, 0])} | {interval(mean, intervals[name][:, 1])} |"
        )
    pairs = {
        f"{name} vs {PEERS[name.split()[0]]}": (matrices[name], matrices[PEERS[name.split()[0]]])
        for name in matrices
        if PEERS.get(name.split()[0]) in matrices
    }
    if pairs:
        lines += [
            "",
            "Probability of improvement P(X > Y): the chance that a run of X on an env scores above"
            " a run of Y on the same env (Mann-Whitney U / (n_X n_Y)), averaged over envs.",
            "",
            "| X vs Y | P(X > Y) [95 % CI] | " + " | ".join(env_ids) + " |",
            "|---|---|" + "---|" * len(env_ids),
        ]
        poi, poi_intervals = rly.get_interval_estimates(
            pairs, probability_of_improvement, reps=few_reps, random_state=random_state
        )
        for label, (x, y) in pairs.items():
            per_env = [
                metrics.probability_of_improvement(x[:, [m]], y[:, [m]])
                for m in range(len(env_ids))
            ]
            lines.append(
                f"| {label} | {interval(poi[label], poi_intervals[label])} | "
                + " | ".join(f"{p:.2f}" for p in per_env)
                + " |"
            )
    lines += variant_lines(rows, env_ids, few_reps, random_state)
    if out is None:
        return lines
    plot_profiles(grid, matrices, out, few_reps)
    plot_iqm_curves(grid, rows, env_ids, out, few_reps, random_state)
    lines += [
        "",
        f"![performance profiles](rliable_{grid}_profiles.png)"
        f" ![IQM sample-efficiency curves](rliable_{grid}_curves.png)",
    ]
    return lines


def color_of(name: str) -> str:
    """One colour per contender in every figure."""
    palette = {"sac_v2": "C0", "sb3_sac": "C1", "sac_v1": "C2", "sql_continuous": "C3"}
    return palette.get(name, "C4" if "bf16" in name else "C5")


def variant_lines(rows: list[dict], env_ids: list[str], reps: int, random_state) -> list[str]:
    """Per env, P(X > Y) [95 % bootstrap CI] of each variant X (a script run with flags beside its
    defaults, often on a few envs only) over its script at its defaults and over the SB3 peer."""
    from rliable import library as rly

    finals = defaultdict(list)  # (contender, env) -> final returns
    for row in rows:
        finals[(contender(row), row["env_id"])].append(row["final_eval_return"])
    pairs = {}
    for variant in sorted({contender(row) for row in rows if row["variant"]}):
        script = variant.split()[0]
        for baseline in (script, PEERS.get(script)):
            for env_id in env_ids:
                x, y = finals.get((variant, env_id)), finals.get((baseline, env_id))
                if x and y:
                    pairs[(variant, baseline, env_id)] = (np.c_[x], np.c_[y])
    if not pairs:
        return []
    points, bounds = rly.get_interval_estimates(
        pairs, probability_of_improvement, reps=reps, random_state=random_state
    )
    lines = [
        "",
        "Variants: P(X > Y) per env, where a variant X was run, over its script's defaults and"
        " over its SB3 peer (runs of X vs runs of Y in brackets).",
        "",
        "| variant X vs Y | env | P(X > Y) [95 % CI] |",
        "|---|---|---|",
    ]
    for key, (x, y) in pairs.items():
        variant, baseline, env_id = key
        lines.append(
            f"| {variant} vs {baseline} | {env_id} ({len(x)} vs {len(y)}) | "
            f"{interval(points[key], bounds[key])} |"
        )
    return lines


def plot_profiles(grid: str, matrices: dict[str, np.ndarray], out: Path, reps: int) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from rliable import library as rly
    from rliable import plot_utils

    top = max(float(m.max()) for m in matrices.values())
    taus = np.linspace(0.0, top * 1.05, 101)
    profiles, profile_cis = rly.create_performance_profile(matrices, taus, reps=reps)
    colors = {name: color_of(name) for name in profiles}
    figure, axes = plt.subplots(figsize=(6, 4))
    plot_utils.plot_performance_profiles(
        profiles,
        taus,
        performance_profile_cis=profile_cis,
        ax=axes,
        colors=colors,
        xlabel=r"normalized score $\tau$",
        ylabel=r"fraction of runs with score $> \tau$",
    )
    handles = [Line2D([], [], color=color) for color in colors.values()]
    axes.legend(handles, list(colors), loc="upper right")
    axes.set_title(f"{grid}: performance profiles (95 % CI)")
    figure.tight_layout()
    figure.savefig(out / f"rliable_{grid}_profiles.png", dpi=110)
    plt.close(figure)


def plot_iqm_curves(grid, rows, env_ids, out: Path, reps: int, random_state) -> None:
    """IQM of normalized eval return over all runs at each eval step, with 95 % CIs."""
    import matplotlib.pyplot as plt
    from rliable import library as rly
    from rliable import metrics

    figure, axes = plt.subplots(figsize=(6, 4))
    for name in sorted({contender(row) for row in rows}):
        curves = {
            (r["env_id"], r["seed"]): dict(map(tuple, r["curve"]))
            for r in rows
            if contender(r) == name
        }
        seeds = sorted(set.intersection(*({s for e, s in curves if e == env} for env in env_ids)))
        steps = (
            sorted(set.intersection(*(set(curves[(e, s)]) for e in env_ids for s in seeds)))
            if seeds
            else []
        )
        if not steps:
            continue
        scores = np.array(
            [[[normalized(e, curves[(e, s)][t]) for t in steps] for e in env_ids] for s in seeds]
        )
        iqm = lambda x: np.array([metrics.aggregate_iqm(x[..., t]) for t in range(x.shape[-1])])  # noqa: E731
        point, bounds = rly.get_interval_estimates(
            {name: scores}, iqm, reps=reps, random_state=random_state
        )
        color = color_of(name)
        axes.plot(steps, point[name], color=color, label=f"{name} ({len(seeds)} seeds)")
        axes.fill_between(steps, bounds[name][0], bounds[name][1], color=color, alpha=0.2)
    axes.set(title=f"{grid}: IQM normalized score", xlabel="env steps", ylabel="IQM (95 % CI)")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out / f"rliable_{grid}_curves.png", dpi=110)
    plt.close(figure)


def plot_band(axes, curves: list[list], color: str, label: str) -> None:
    """The mean over seeds of [[step, return], ...] curves, and their min-max band."""
    length = min(len(curve) for curve in curves)
    steps = [step for step, _ in curves[0][:length]]
    values = np.array([[value for _, value in curve[:length]] for curve in curves])
    axes.plot(steps, values.mean(axis=0), color=color, label=label)
    axes.fill_between(steps, values.min(axis=0), values.max(axis=0), color=color, alpha=0.2)


def plot_env(env_id: str, rows: list[dict], path: Path) -> None:
    """Eval return vs env steps per contender: mean over seeds with the min-max band; at 1M env
    steps on a MuJoCo env, the SAC v2 paper's level as a dashed line."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for name in sorted({contender(row) for row in rows}):
        curves = [row["curve"] for row in rows if contender(row) == name and row["curve"]]
        plot_band(axes, curves, color_of(name), f"{name} ({len(curves)} seeds)")
    if env_id in REFERENCE_RETURNS and max(row["budget"] for row in rows) >= 1_000_000:
        axes.axhline(REFERENCE_RETURNS[env_id], color="k", ls="--", label="SAC v2 paper, 1M (≈)")
    axes.set(title=env_id, xlabel="env steps", ylabel="eval return (deterministic policy)")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_flagship(rows: list[dict], path: Path) -> None:
    """sac_v2 beside SB3 SAC on the MuJoCo 100k grid: one panel per env, mean and min-max band."""
    import matplotlib.pyplot as plt

    envs = grid_envs("mujoco")
    figure, panels = plt.subplots(1, len(envs), figsize=(12, 3.4))
    for axes, env_id in zip(panels, envs, strict=True):
        for name, label in (("sac_v2", "softrl sac_v2"), ("sb3_sac", "SB3 SAC (RL Zoo)")):
            curves = [r["curve"] for r in rows if contender(r) == name and r["env_id"] == env_id]
            if curves:
                plot_band(axes, curves, color_of(name), f"{label}, {len(curves)} seeds")
        axes.set(title=env_id, xlabel="env steps")
        axes.grid(alpha=0.3)
    panels[0].set_ylabel("eval return (deterministic policy)")
    panels[0].legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def per_env_table(rows: list[dict]) -> list[str]:
    lines = [
        "| env | contender | budget | seeds | final eval return (mean ± std) | per seed |",
        "|---|---|---|---|---|---|",
    ]
    cells = defaultdict(list)
    for row in rows:
        cells[(row["env_id"], row["budget"], contender(row))].append(row)
    for (env_id, budget, name), runs in cells.items():
        runs.sort(key=lambda row: row["seed"])
        finals = [row["final_eval_return"] for row in runs]
        std = statistics.stdev(finals) if len(finals) > 1 else 0.0
        per_seed = ", ".join(f"{row['seed']}: {row['final_eval_return']:.1f}" for row in runs)
        lines.append(
            f"| {env_id} | {name} | {budget:,} | {len(finals)} | "
            f"{statistics.mean(finals):.1f} ± {std:.1f} | {per_seed} |"
        )
    return lines


def grid_of(row: dict) -> str:
    """The grid a run belongs to: MuJoCo envs by budget, everything else the CPU grid."""
    if row["env_id"] in REFERENCE_RETURNS:
        return f"mujoco_{row['budget'] // 1000}k"
    return "cpu"


def grid_entries(name: str) -> list:
    """The Entry list of one of benchmarks/returns.py's grids (its envs, contenders and seeds)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/, however report runs
    from returns import GRIDS

    return GRIDS[name]


def grid_envs(name: str) -> list[str]:
    return list(dict.fromkeys(entry.env_id for entry in grid_entries(name)))


# Published returns at 1M env steps beside which the `reproduce` grid is read (issue 25): the SAC v2
# paper's deterministic evaluation, read off its Fig. 1 (v2 envs, as CleanRL's SAC page quotes
# it); CleanRL sac_continuous_action.py's training return (v4, its docs); Tianshou's SAC (10 seeds,
# its MuJoCo benchmark page); RL Zoo's SAC (its benchmark table, one run).
ANCHORS_1M = {
    "Hopper-v4": ("≈ 3,250", "2310.5 ± 342.8", "3542.2 ± 51.5", "2326 ± 1130"),
    "Walker2d-v4": ("≈ 4,800", "3591.5 ± 911.3", "5007.0 ± 251.5", "3863"),
    "HalfCheetah-v4": ("≈ 11,250", "9634.9 ± 1423.7", "12138.8 ± 1049.3", "9535"),
}


def provenance(rows: list[dict]) -> str:
    """One line: the dates and commits the runs ran on (each row of runs.jsonl names its own)."""
    dates = sorted({row["date"] for row in rows})
    commits = sorted({row.get("code") or "unrecorded" for row in rows})
    when = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"
    code = f"commit {commits[0]}" if len(commits) == 1 else f"{len(commits)} commits"
    if 1 < len(commits) <= 3:
        code = "commits " + ", ".join(commits)
    return f"Ran {when} on {code} (`code` in runs.jsonl names each run's)."


def cpu_block(rows: list[dict]) -> str:
    """README's table of the `cpu` grid: every contender's final return per env, and its curves."""
    envs, labels = grid_envs("cpu"), [entry.label for entry in grid_entries("cpu")]
    rows = sorted(rows, key=lambda row: (envs.index(row["env_id"]), labels.index(contender(row))))
    links = ", ".join(f"[{e}](benchmarks/results/returns_{e}_cpu.png)" for e in envs)
    total = sum(len(entry.seeds) for entry in grid_entries("cpu"))
    done = f"{len(rows)} of {total} runs done. {provenance(rows)}" if rows else "Not run yet."
    lines = [*per_env_table(rows), "", done]
    if goals := [row for row in rows if "goals_reached" in row]:
        per_seed = ", ".join(
            f"{r['seed']}: {r['goals_reached']} goals ({r['rollouts_at_goal']} of 50 rollouts)"
            for r in sorted(goals, key=lambda row: row["seed"])
        )
        env_id = goals[0]["env_id"]
        lines += [
            "",
            f"{env_id}: goals that 50 rollouts of the final sampler reach, per seed: {per_seed}.",
        ]
    return "\n".join([*lines, "", f"Curves: {links}."])


def mujoco_block(rows: list[dict], rliable_lines: list[str]) -> str:
    """README's summary of the MuJoCo 100k grid: each finished run's final return (normalized
    score), how much of the grid is done, and report.py's rliable tables for it."""
    grid = grid_entries("mujoco")
    env_ids = grid_envs("mujoco")
    names = list(dict.fromkeys(entry.label for entry in grid))
    rows = [row for row in rows if contender(row) in names]  # not the variants run beside it
    labels = {"sb3_sac": "SB3 SAC (RL Zoo config)"}
    by_cell = defaultdict(list)
    for row in sorted(rows, key=lambda row: row["seed"]):
        by_cell[(contender(row), row["env_id"])].append(row)
    lines = [
        "| contender | " + " | ".join(f"{e}: return per seed (normalized)" for e in env_ids) + " |",
        "|---|" + "---|" * len(env_ids),
    ]
    for name in names:
        cells = [
            ", ".join(
                f"s{r['seed']}: {r['final_eval_return']:.1f} ({normalized(e, r['final_eval_return']):.3f})"
                for r in by_cell[(name, e)]
            )
            or "–"
            for e in env_ids
        ]
        lines.append(f"| {labels.get(name, name)} | " + " | ".join(cells) + " |")
    total = sum(len(entry.seeds) for entry in grid)
    lines += ["", f"{len(rows)} of {total} runs done." + (f" {provenance(rows)}" if rows else "")]
    tables, table = [], []  # the runs of consecutive table lines in the rliable section
    for line in [*rliable_lines, ""]:
        if line.startswith("|"):
            table.append(line)
        elif table:
            tables.append(table)
            table = []
    captions = {
        "| contender | runs": "Normalized scores over all runs of all three envs, 95 % stratified-"
        "bootstrap intervals:",
        "| X vs Y": "Probability of improvement (the chance that a run of X scores above a run of"
        " Y on the same env), averaged over the envs with its 95 % interval, and per env:",
    }
    for table in tables:  # the variants' table stays in returns.md
        for start, caption in captions.items():
            if table[0].startswith(start):
                lines += ["", caption, "", *table]
    links = ", ".join(f"[{e}](benchmarks/results/returns_{e}_mujoco_100k.png)" for e in env_ids)
    lines += [
        "",
        f"Curves: {links}; rliable figures and every table:"
        " [returns.md](benchmarks/results/returns.md).",
    ]
    return "\n".join(lines)


def reproduce_block(rows: list[dict]) -> str:
    """README's table of the `reproduce` grid: sac_v2's final return per seed at 1M env steps, the
    mean and its ratio to the SAC v2 paper's level, beside the published anchors."""
    grid = grid_entries("reproduce")
    rows = [row for row in rows if contender(row) == "sac_v2" and row["budget"] == grid[0].budget]
    seeds = sorted({seed for entry in grid for seed in entry.seeds})
    lines = [
        "| env | " + " | ".join(f"seed {seed}" for seed in seeds) + " | mean | mean ÷ paper |"
        " SAC v2 paper | CleanRL | Tianshou | RL Zoo |",
        "|---|" + "---|" * (len(seeds) + 6),
    ]
    for entry in grid:
        finals = {r["seed"]: r["final_eval_return"] for r in rows if r["env_id"] == entry.env_id}
        cells = [f"{finals[seed]:.1f}" if seed in finals else "–" for seed in seeds]
        mean = statistics.mean(finals.values()) if finals else None
        summary = [f"{mean:.1f}", f"{mean / REFERENCE_RETURNS[entry.env_id]:.2f}"] if mean else []
        lines.append(
            f"| {entry.env_id} | "
            + " | ".join([*cells, *(summary or ["–", "–"]), *ANCHORS_1M[entry.env_id]])
            + " |"
        )
    total = sum(len(entry.seeds) for entry in grid)
    envs_run = [entry.env_id for entry in grid if any(r["env_id"] == entry.env_id for r in rows)]
    links = ", ".join(
        f"[{env_id}](benchmarks/results/returns_{env_id}_mujoco_1000k.png)" for env_id in envs_run
    )
    done = f"{len(rows)} of {total} runs done." + (f" {provenance(rows)}" if rows else "")
    curves = f"Curves (mean, min-max band, the paper's level): {links}." if links else ""
    return "\n".join([*lines, "", done] + (["", curves] if curves else []))


def readme_blocks(rows: list[dict], reps: int = BOOTSTRAP_REPS) -> dict[str, str]:
    """Every generated block of README.md, from runs.jsonl's rows alone: {marker name: text}."""
    grids = runs_by_grid(rows)
    mujoco_rows = grids.get("mujoco_100k", [])
    rliable_lines = rliable_section("mujoco_100k", mujoco_rows, None, reps) if mujoco_rows else []
    return {
        "cpu-table": cpu_block(grids.get("cpu", [])),
        "mujoco-table": mujoco_block(mujoco_rows, rliable_lines),
        "reproduce-table": reproduce_block(grids.get("mujoco_1000k", [])),
    }


def readme_block_text(text: str, name: str) -> str | None:
    """What README text holds between <!-- name --> and <!-- /name -->, None without the markers."""
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    if start not in text or end not in text:
        return None
    return text.split(start, 1)[1].split(end, 1)[0].strip("\n")


def replace_readme_blocks(readme: Path, blocks: dict[str, str]) -> None:
    text = readme.read_text()
    for name, block in blocks.items():
        start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
        if start in text and end in text:
            head, rest = text.split(start, 1)
            text = f"{head}{start}\n{block}\n{end}{rest.split(end, 1)[1]}"
    readme.write_text(text)


def load_runs(runs_path: Path) -> list[dict]:
    return [json.loads(line) for line in runs_path.read_text().splitlines() if line.strip()]


def runs_by_grid(rows: list[dict]) -> dict[str, list[dict]]:
    grids = defaultdict(list)
    for row in rows:
        grids[grid_of(row)].append(row)
    return dict(sorted(grids.items()))


def write_report(
    runs_path: Path, out: Path, reps: int = BOOTSTRAP_REPS, readme: Path | None = None
) -> str:
    import matplotlib

    matplotlib.use("Agg")
    rows = load_runs(runs_path)
    lines = [
        "# Learning benchmark",
        "",
        f"Written {datetime.date.today().isoformat()} by `python benchmarks/report.py` from"
        f" [`runs.jsonl`](runs.jsonl) ({len(rows)} runs, made by `python benchmarks/returns.py`)."
        " Final return = the last deterministic evaluation, 10 episodes on a separate env;"
        " ± is the std over seeds.",
    ]
    for grid, grid_rows in runs_by_grid(rows).items():
        lines += ["", f"## {grid}: final returns per env", "", *per_env_table(grid_rows)]
        env_ids = sorted({row["env_id"] for row in grid_rows})
        for env_id in env_ids:
            curve_rows = [row for row in grid_rows if row["env_id"] == env_id]
            plot_env(env_id, curve_rows, out / f"returns_{env_id}_{grid}.png")
        links = ", ".join(f"[{e}](returns_{e}_{grid}.png)" for e in env_ids)
        lines += ["", f"Curves: {links}"]
        if grid != "cpu":
            lines += ["", *rliable_section(grid, grid_rows, out, reps)]
        if grid == "mujoco_100k":
            plot_flagship(grid_rows, out / "sac_v2_vs_sb3_sac_mujoco_100k.png")
    text = "\n".join(lines) + "\n"
    (out / "returns.md").write_text(text)
    if readme is not None:
        replace_readme_blocks(readme, readme_blocks(rows, reps))
    return text


def measure_random_returns(env_ids, episodes: int = 100) -> dict[str, float]:
    import gymnasium as gym

    means = {}
    for env_id in env_ids:
        env = gym.make(env_id)
        env.action_space.seed(0)
        returns = []
        for episode in range(episodes):
            env.reset(seed=episode)
            done, total = False, 0.0
            while not done:
                _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
        means[env_id] = statistics.mean(returns)
        print(
            f"{env_id}: {means[env_id]:.2f} ± {statistics.stdev(returns):.2f} over {episodes} episodes"
        )
    return means


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=RESULTS / "runs.jsonl")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--reps", type=int, default=BOOTSTRAP_REPS, help="bootstrap resamples")
    parser.add_argument("--measure-random", action="store_true", help="measure RANDOM_RETURNS")
    parser.add_argument(
        "--readme", type=Path, help="rewrite this README's generated blocks (between their markers)"
    )
    args = parser.parse_args()
    if args.measure_random:
        measure_random_returns(list(RANDOM_RETURNS))
        return
    print(write_report(args.runs, args.out, args.reps, args.readme))


if __name__ == "__main__":
    main()
