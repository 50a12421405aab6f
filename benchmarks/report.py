"""
Turn a benchmark CSV into learning curves (against env steps and against wall-clock) and a Markdown table of returns at
fixed budgets with PolyGRAD's sample-efficiency ratio to each baseline.

    python -m benchmarks.report --preset quick

Writes ``benchmarks/results/<preset>/{curves.png, curves_wallclock.png, table.md}``.
"""

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks.presets import EnvSetting
from benchmarks.run import PRESETS, RESULTS

Curves = dict[tuple[str, str], dict[int, list[tuple[int, float, float]]]]  # (algo, env) -> seed -> [(steps, ret, secs)]


def load(path: Path) -> Curves:
    curves: Curves = defaultdict(lambda: defaultdict(list))
    with path.open() as f:
        for row in csv.DictReader(f):
            point = (int(row["env_steps"]), float(row["eval_return"]), float(row["wall_clock_s"]))
            curves[(row["algo"], row["env"])][int(row["seed"])].append(point)
    return curves


def steps_to_threshold(points: list[tuple[int, float, float]], threshold: float) -> float:
    """Env steps at the first evaluation whose return reaches the threshold (inf if none does)."""
    return next((float(steps) for steps, ret, _ in sorted(points) if ret >= threshold), float("inf"))


def return_at(points: list[tuple[int, float, float]], budget: int) -> float:
    """Return of the last evaluation at or before ``budget`` env steps."""
    return [ret for steps, ret, _ in sorted(points) if steps <= budget][-1]


def plot(curves: Curves, settings: tuple[EnvSetting, ...], x_index: int, xlabel: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(settings), figsize=(5.5 * len(settings), 4), squeeze=False)
    for ax, setting in zip(axes[0], settings, strict=True):
        for (algo, env), seeds in sorted(curves.items()):
            if env != setting.env_id:
                continue
            runs = [sorted(points) for points in seeds.values()]
            n = min(len(r) for r in runs)  # seeds share the evaluation grid; cut to the shortest
            xs = np.mean([[p[x_index] for p in r[:n]] for r in runs], axis=0)
            ys = np.array([[p[1] for p in r[:n]] for r in runs])
            ax.plot(xs, ys.mean(axis=0), label=f"{algo} ({len(runs)} seeds)", lw=2 if algo == "polygrad" else 1.2)
            ax.fill_between(xs, ys.min(axis=0), ys.max(axis=0), alpha=0.2)
        ax.axhline(setting.threshold, color="grey", ls=":", lw=1)
        ax.set(title=setting.env_id, xlabel=xlabel, ylabel="deterministic eval return")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def table(curves: Curves, settings: tuple[EnvSetting, ...]) -> str:
    lines = []
    for setting in settings:
        budgets = [setting.budget // 4, setting.budget // 2, setting.budget]
        lines += [
            f"### {setting.env_id} (threshold {setting.threshold:g})",
            "",
            "| algo | seeds | " + " | ".join(f"return @ {b // 1000}k" for b in budgets)
            + " | env steps to threshold (median) | PolyGRAD sample-efficiency ratio | train wall-clock (s) |",
            "|---|" + "---:|" * (len(budgets) + 4),
        ]  # fmt: skip
        reach: dict[str, float] = {}
        rows = []
        for (algo, env), seeds in sorted(curves.items(), key=lambda kv: kv[0][0] != "polygrad"):
            if env != setting.env_id:
                continue
            runs = list(seeds.values())
            rets = [[return_at(r, b) for r in runs] for b in budgets]
            reach[algo] = float(np.median([steps_to_threshold(r, setting.threshold) for r in runs]))
            wall = np.mean([max(p[2] for p in r) for r in runs])
            rows.append((algo, len(runs), rets, wall))
        for algo, n_seeds, rets, wall in rows:
            cells = " | ".join(f"{np.mean(r):.0f} ± {np.std(r):.0f}" for r in rets)
            steps = "not reached" if np.isinf(reach[algo]) else f"{reach[algo]:,.0f}"
            # ratio > 1: PolyGRAD reaches the threshold in that many times fewer env steps than this baseline
            ratio = "—" if algo == "polygrad" else ratio_text(reach.get("polygrad", np.inf), reach[algo])
            lines.append(f"| {algo} | {n_seeds} | {cells} | {steps} | {ratio} | {wall:.0f} |")
        lines.append("")
    return "\n".join(lines)


def ratio_text(polygrad_steps: float, baseline_steps: float) -> str:
    if np.isinf(polygrad_steps) and np.isinf(baseline_steps):
        return "neither reached"
    if np.isinf(polygrad_steps):
        return "PolyGRAD did not reach it"
    if np.isinf(baseline_steps):
        return "baseline did not reach it"
    return f"{baseline_steps / polygrad_steps:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    args = parser.parse_args()
    folder = RESULTS / args.preset
    settings = PRESETS[args.preset].envs
    curves = load(folder / f"{args.preset}.csv")
    plot(curves, settings, 0, "env steps", folder / "curves.png")
    plot(curves, settings, 2, "training wall-clock (s)", folder / "curves_wallclock.png")
    machine = (folder / "machine.txt").read_text().strip() if (folder / "machine.txt").exists() else "unknown"
    text = (
        f"# Benchmark `{args.preset}`\n\nCommand: `python -m benchmarks.run --preset {args.preset}` then "
        f"`python -m benchmarks.report --preset {args.preset}`. Machine: {machine}.\n\n"
        "Returns are mean ± std over seeds of the deterministic policy's mean return over the evaluation episodes. "
        "The sample-efficiency ratio is a baseline's env steps to reach the threshold divided by PolyGRAD's (median "
        "over seeds): above 1, PolyGRAD needs fewer env steps. Wall-clock excludes evaluation and is only comparable "
        "between algorithms of the same run.\n\n" + table(curves, settings)
    )
    (folder / "table.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
