"""How fast tabular_soft_vi.py solves MDPs: soft value iteration vs soft policy iteration.

Problems (issue 3): FrozenLake 8x8 (slippery, γ = 0.99) at α = 0 and α = 0.1, and a random MDP
with 500 states and 8 actions (γ = 0.99, α = 0.1; each P[s, a, ·] drawn from a flat Dirichlet,
so every row is dense; R[s, a] ~ N(0, 1)), all to tol = 1e-8. Each solve is repeated and the
median wall time reported, with the iterations, the guaranteed error ‖Q − Q*‖∞ and how far the
two methods' Q are apart (an end-to-end check that both reached the same Q*).

Usage: python benchmarks/tabular_speed.py [--repeats 5]
Prints a markdown table and writes it to benchmarks/results/tabular_speed.md. On a machine
shared with other jobs, OPENBLAS_NUM_THREADS=1 avoids BLAS threads spinning against busy cores
(it made the linear solves of policy iteration ~10x faster on a loaded 2-core box).
"""

import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import tyro

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import tabular_soft_vi as tsv  # noqa: E402  (a root script, not an installed package)


@dataclass
class Args:
    repeats: int = 5
    """timed solves per problem and method (the median is reported)"""
    tol: float = 1e-8
    """the guaranteed accuracy ‖Q − Q*‖∞ every solve must reach"""
    output: str = os.path.join(ROOT, "benchmarks", "results", "tabular_speed.md")
    """where the markdown report goes"""


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def problems():
    lake = tsv.mdp_from_env(gym.make("FrozenLake8x8-v1"))
    rng = np.random.default_rng(0)
    P = rng.dirichlet(np.ones(500), size=(500, 8))
    R = rng.normal(size=(500, 8))
    yield "FrozenLake8x8-v1", lake.P, lake.R, lake.terminal, 0.99, 0.0
    yield "FrozenLake8x8-v1", lake.P, lake.R, lake.terminal, 0.99, 0.1
    yield "random MDP", P, R, None, 0.99, 0.1


def main(args: Args) -> str:
    rows = []
    for name, P, R, terminal, gamma, alpha in problems():
        solutions = {}
        for method, solver in (("value iteration", tsv.soft_value_iteration),
                               ("policy iteration", tsv.soft_policy_iteration)):  # fmt: skip
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                solution = solver(P, R, gamma, alpha, tol=args.tol, terminal=terminal)
                times.append(time.perf_counter() - start)
            assert solution.converged and solution.error_bound <= args.tol, (name, method)
            solutions[method] = solution
            rows.append([name, R.shape[0], R.shape[1], gamma, alpha, method, solution.iterations,
                         statistics.median(times), solution.error_bound])  # fmt: skip
        gap = np.abs(solutions["value iteration"].q - solutions["policy iteration"].q).max()
        for row in rows[-2:]:
            row.append(gap)
    header = ("| problem | S | A | γ | α | method | iterations | median time | guaranteed ‖Q − Q*‖∞ "
              "| max \\|Q_VI − Q_PI\\| |\n|---|---:|---:|---:|---:|---|---:|---:|---:|---:|")  # fmt: skip
    lines = [
        f"| {name} | {s} | {a} | {gamma} | {alpha} | {method} | {iterations} | "
        f"{1000 * seconds:.1f} ms | {bound:.1e} | {gap:.1e} |"
        for name, s, a, gamma, alpha, method, iterations, seconds, bound, gap in rows
    ]
    report = "\n".join([
        "# tabular_soft_vi.py speed",
        "",
        f"{time.strftime('%Y-%m-%d')} · {cpu_model()} · {os.cpu_count()} logical cores · "
        f"Python {platform.python_version()} · numpy {np.__version__} · "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')} · "
        f"load average {os.getloadavg()[0]:.1f} (other jobs share the cores) · "
        f"median of {args.repeats} solves, tol = {args.tol:g}, input validation included.",
        "",
        header,
        *lines,
        "",
        "Random MDP: P[s, a, ·] ~ Dirichlet(1, ..., 1) over 500 next states, R ~ N(0, 1), seed 0.",
        "Value iteration's count is set by the contraction: about log(tol·(1 − γ)/‖R‖)/log γ "
        "backups, each one [S·A, S] @ [S] product; policy iteration needs a few linear solves.",
        "",
    ])  # fmt: skip
    print(report)
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        f.write(report)
    return report


if __name__ == "__main__":
    main(tyro.cli(Args))
