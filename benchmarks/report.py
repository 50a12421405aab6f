"""
Turn a benchmark CSV into learning curves (against env steps and against wall-clock), a Markdown table of returns at
fixed budgets with PolyGRAD's sample-efficiency ratio to each baseline and the published figures of the field beside
them, tables of PolyGRAD's world-model and learner figures (``polygrad_figures.py``), and the evaluations so far of the
jobs that have not finished (running, or killed and not yet resumed).

    python -m benchmarks.report --preset quick

Writes ``benchmarks/results/<preset>/{curves.png, curves_wallclock.png, table.md}``, ``curves_variants.png`` with
every variant where the main curves draw only some (``Preset.plotted_variants``), and the preset's results in the
README where it holds a block for them (``readme_results.py``).
"""

import argparse
import csv
import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from benchmarks import polygrad_figures, readme_results
from benchmarks.diagnostics.step_cost import read_costs
from benchmarks.presets import EnvSetting, Preset
from benchmarks.published import PublishedRow, published_rows
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
    """Return of the last evaluation at or before ``budget`` env steps (NaN if there is none)."""
    return ([float("nan")] + [ret for steps, ret, _ in sorted(points) if steps <= budget])[-1]


def mean_return_from(points: list[tuple[int, float, float]], start: int) -> float:
    """Mean return of the evaluations at ``start`` env steps and after: how well a curve holds, not one evaluation."""
    return float(np.mean([ret for steps, ret, _ in points if steps >= start]))


# Each base algorithm keeps its colour in every figure (tab10's first four, then black and grey); the variants take
# tab10's other six colours, then their light shades from tab20.
BASE_COLOURS = {"polygrad": "tab:blue", "ppo": "tab:orange", "sac": "tab:green", "trpo": "tab:red", "tqc": "black",
                "crossq": "dimgrey"}  # fmt: skip


def plot(
    curves: Curves, preset: Preset, x_index: int, xlabel: str, out: Path, algos: Iterable[str] | None = None
) -> list[str]:
    """
    Learning curves, one panel per env: each algorithm's mean over seeds, with the seeds' range shaded.

    :param curves: the evaluations, from :func:`load`
    :param preset: the preset they belong to (its envs, thresholds and variant labels)
    :param x_index: the x axis: 0 for env steps, 2 for training wall-clock
    :param xlabel: the x axis' label
    :param out: the PNG to write
    :param algos: the algorithms to draw (default: every one in ``curves``)
    :return: the algorithms drawn, in the legend's order
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = preset.envs
    chosen = None if algos is None else set(algos)
    drawn = {key: seeds for key, seeds in sorted(curves.items()) if chosen is None or key[0] in chosen}
    variants = sorted({algo for algo, _ in drawn if algo not in BASE_COLOURS})
    tab10, tab20 = matplotlib.colormaps["tab10"], matplotlib.colormaps["tab20"]
    palette = [tab10(i) for i in range(4, 10)] + [tab20(i) for i in range(9, 20, 2)]
    colours: dict[str, Any] = dict(BASE_COLOURS)
    colours.update({algo: palette[i % len(palette)] for i, algo in enumerate(variants)})
    # The legend goes under the axes, where it hides no curve: the figure grows by a line per algorithm.
    n_algos = len({algo for algo, _ in drawn})
    fig, axes = plt.subplots(1, len(settings), figsize=(5.5 * len(settings), 4 + 0.2 * n_algos), squeeze=False)
    for ax, setting in zip(axes[0], settings, strict=True):
        for (algo, env), seeds in drawn.items():
            if env != setting.env_id:
                continue
            runs = [sorted(points) for points in seeds.values()]
            n = min(len(r) for r in runs)  # seeds share the evaluation grid; cut to the shortest
            xs = np.mean([[p[x_index] for p in r[:n]] for r in runs], axis=0)
            ys = np.array([[p[1] for p in r[:n]] for r in runs])
            style = dict(lw=2 if algo == "polygrad" else 1.2, ls="--" if "[" in algo else "-", color=colours[algo])
            seed_count = f"{len(runs)} seed" + ("s" if len(runs) > 1 else "")
            ax.plot(xs, ys.mean(axis=0), label=f"{preset.label(algo)} ({seed_count})", **style)
            ax.fill_between(xs, ys.min(axis=0), ys.max(axis=0), alpha=0.15, color=colours[algo])
        ax.axhline(setting.threshold, color="grey", ls=":", lw=1)
        ax.set(title=setting.env_id, xlabel=xlabel, ylabel="deterministic eval return")
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15))
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return list(dict.fromkeys(algo for algo, _ in drawn))


def mean_std_text(values: list[float]) -> str:
    """``"mean ± std"`` over seeds; the mean alone for one seed, whose spread is unknown rather than 0."""
    return f"{np.mean(values):.0f} ± {np.std(values):.0f}" if len(values) > 1 else f"{values[0]:.0f}"


def seeds_text(values: list[float]) -> str:
    """``"mean ± std (each seed's)"``: the spread, then every seed's value in seed order, so that one seed far from the
    others shows; the mean alone for one seed."""
    return mean_std_text(values) + (f" ({', '.join(f'{v:.0f}' for v in values)})" if len(values) > 1 else "")


class AlgoFigures(NamedTuple):
    """One algorithm's figures on one env, over its seeds: what the tables give."""

    seeds: int
    returns: list[list[float]]  # at each of :func:`budgets`, one per seed, in seed order
    held: list[float]  # each seed's mean return over the second half of the budget
    reach: float  # median over seeds of the env steps to the threshold (inf: not reached)
    wall: float  # mean over seeds of the training wall-clock, s


def budgets(setting: EnvSetting) -> list[int]:
    """The env steps at which the tables give the return: a quarter, half and all of the budget."""
    return [setting.budget // 4, setting.budget // 2, setting.budget]


def env_figures(curves: Curves, setting: EnvSetting) -> dict[str, AlgoFigures]:
    """Each algorithm's figures on ``setting``'s env, PolyGRAD's first, then in the CSV's order."""
    out = {}
    for (algo, env), seeds in sorted(curves.items(), key=lambda kv: kv[0][0] != "polygrad"):
        if env == setting.env_id:
            runs = [seeds[seed] for seed in sorted(seeds)]
            out[algo] = AlgoFigures(
                seeds=len(runs),
                returns=[[return_at(r, b) for r in runs] for b in budgets(setting)],
                held=[mean_return_from(r, setting.budget // 2) for r in runs],
                reach=float(np.median([steps_to_threshold(r, setting.threshold) for r in runs])),
                wall=float(np.mean([max(p[2] for p in r) for r in runs])),
            )
    return out


def steps_text(steps: float) -> str:
    """Env steps to the threshold in a table."""
    return "not reached" if np.isinf(steps) else f"{steps:,.0f}"


def wall_ratio_text(figures: dict[str, AlgoFigures], algo: str) -> str:
    """``algo``'s training wall-clock as a multiple of PPO's on the same env ("—" without PPO)."""
    return f"{figures[algo].wall / figures['ppo'].wall:.1f}x" if "ppo" in figures else "—"


def table(curves: Curves, preset: Preset) -> str:
    lines = []
    for setting in preset.envs:
        lines += [
            f"### {setting.env_id} (threshold {setting.threshold:g})",
            "",
            "| algo | seeds | " + " | ".join(f"return @ {b // 1000}k" for b in budgets(setting))
            + f" | mean return {setting.budget // 2000}k-{setting.budget // 1000}k | env steps to threshold (median) "
            "| PolyGRAD sample-efficiency ratio | train wall-clock (s) | wall-clock x PPO |",
            "|---|" + "---:|" * (len(budgets(setting)) + 6),
        ]  # fmt: skip
        figures = env_figures(curves, setting)
        for algo, found in figures.items():
            cells = " | ".join(
                [*map(mean_std_text, found.returns[:-1]), seeds_text(found.returns[-1]), mean_std_text(found.held)]
            )
            # ratio > 1: PolyGRAD reaches the threshold in that many times fewer env steps than this baseline
            polygrad = figures["polygrad"].reach if "polygrad" in figures else None
            ratio = "—" if algo == "polygrad" else ratio_text(polygrad, found.reach)
            lines.append(
                f"| {preset.label(algo)} | {found.seeds} | {cells} | {steps_text(found.reach)} | {ratio} "
                f"| {found.wall:.0f} | {wall_ratio_text(figures, algo)} |"
            )
        shown = published_rows(setting.env_id, setting.budget)
        for row in shown:
            returns = ["—"] * (len(budgets(setting)) - 1) + [f"{row.mean:.0f} ± {row.std:.0f}"]
            lines.append(f"| {published_label(row, setting.env_id)} | {row.seeds} | {' | '.join(returns)} |" + " — |" * 5)
        if shown:
            sources = {f"[{row.source}]({row.url}): {row.title}" for row in shown}
            notes = [f"{row.algo} [{row.source}]: {row.note}" for row in shown if row.note]
            lines += ["", "Published figures: " + "; ".join([*sorted(sources), *notes]) + "."]
        lines.append("")
    return "\n".join(lines)


def published_label(row: PublishedRow, env_id: str) -> str:
    """
    A published row's name in a table: the algorithm, its source, and what an env step of it costs here where that was
    measured (``benchmarks.diagnostics.step_cost``).
    """
    costs = read_costs().get((row.algo, env_id), {})
    cost = ", ".join(f"{seconds:,.0f} s per 1,000 env steps here on {device}" for device, seconds in sorted(costs.items()))
    return f"{row.algo}, published ([{row.source}]({row.url})), not run here" + (f" ({cost})" if cost else "")


def summary(curves: Curves, preset: Preset) -> str:
    """
    The README's results for a preset: one short table per env, of the algorithms of the report's main curves, then the
    published figures of algorithms not measured here.

    :param curves: the preset's evaluations, from :func:`load`
    :param preset: the preset
    :return: the tables, each followed by an empty line
    """
    lines = []
    for setting in preset.envs:
        figures = env_figures(curves, setting)
        budget, half = setting.budget // 1000, setting.budget // 2000
        lines += [
            f"| {setting.env_id}, {budget}k env steps | seeds | return at {budget}k | mean return {half}k-{budget}k "
            f"| env steps to {setting.threshold:g} (median) | training wall-clock x PPO |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for algo in (algo for algo in preset.plotted_algos() if algo in figures):
            found = figures[algo]
            lines.append(
                f"| {preset.label(algo)} | {found.seeds} | {seeds_text(found.returns[-1])} "
                f"| {mean_std_text(found.held)} | {steps_text(found.reach)} | {wall_ratio_text(figures, algo)} |"
            )
        for row in published_rows(setting.env_id, setting.budget):
            if row.algo not in figures:  # a measured algorithm's published figures are in its report
                lines.append(
                    f"| {published_label(row, setting.env_id)} | {row.seeds} | {row.mean:.0f} ± {row.std:.0f} |" + " — |" * 3
                )
        lines.append("")
    return "\n".join(lines)


def unfinished_table(unfinished: Path, preset: Preset, finished: Iterable[tuple[str, str, int]]) -> str:
    """
    The evaluations so far of the jobs that have checkpointed and not finished (their CSVs in ``unfinished``, which
    each checkpoint rewrites). Empty when there are none.

    :param unfinished: the preset's folder of unfinished jobs' evaluations (``benchmarks.run.unfinished_csv``)
    :param preset: the preset (for the jobs' names)
    :param finished: the finished jobs, (algo, env, seed): in the tables above, so left out here
    """
    done = set(finished)
    lines = []
    for path in sorted(unfinished.glob("*.csv")):
        with path.open() as f:
            rows = list(csv.DictReader(f))
        job = rows[0]
        if (job["algo"], job["env"], int(job["seed"])) in done:
            continue
        evaluations = ", ".join(f"{int(r['env_steps']) / 1000:g}k: {float(r['eval_return']):.0f}" for r in rows)
        lines.append(
            f"| {preset.label(job['algo'])} | {job['env']} | {job['seed']} | {int(rows[-1]['env_steps']):,} | {evaluations} |"
        )
    if not lines:
        return ""
    return "\n".join(
        [
            "## Unfinished jobs",
            "",
            "Jobs that had checkpointed and not finished when this report was written: running, or killed and not yet "
            "resumed. Not in the table or curves above; `benchmarks.run` with the same preset, algorithm and seed "
            "continues each from its last evaluation where its checkpoint is, and starts it again elsewhere.",
            "",
            "| algo | env | seed | env steps so far | deterministic eval return at each evaluation |",
            "|---|---|---:|---:|---|",
            *lines,
            "",
        ]
    )


def ratio_text(polygrad_steps: float | None, baseline_steps: float) -> str:
    """A baseline's env steps to the threshold as a multiple of PolyGRAD's (None: no PolyGRAD run on this env yet)."""
    if polygrad_steps is None:
        return "PolyGRAD not run"
    if np.isinf(polygrad_steps) and np.isinf(baseline_steps):
        return "neither reached"
    if np.isinf(polygrad_steps):
        return "PolyGRAD did not reach it"
    if np.isinf(baseline_steps):
        return "baseline did not reach it"
    if polygrad_steps == 0:  # the untrained policy's first evaluation reached it: no ratio to give
        return "both at the start" if baseline_steps == 0 else "PolyGRAD at the start"
    return f"{baseline_steps / polygrad_steps:.2f}x"


# An invocation line of a preset's machine.txt, as benchmarks.run writes one: the machine, then what the invocation ran
INVOCATION = re.compile(r"^(?P<machine>.+?); algos ")


def header(preset_name: str, machine_txt: Path) -> str:
    """
    The report's first lines: the commands that produce it, and the machines its runs ran on, each once, from the
    invocation lines of the preset's ``machine.txt`` (whose notes, on what shared the machine, stay there).

    :param preset_name: the preset
    :param machine_txt: the preset's log of invocations
    """
    lines = machine_txt.read_text().splitlines() if machine_txt.exists() else []
    found = dict.fromkeys(match["machine"] for match in map(INVOCATION.match, lines) if match)
    machines = " and ".join(f"`{machine}`" for machine in found) or "not recorded"
    return (
        f"Command: `python -m benchmarks.run --preset {preset_name}`, then `python -m benchmarks.report --preset "
        f"{preset_name}`.\n\nMachine: {machines} ([machine.txt](machine.txt): each invocation, with notes).\n\n"
    ).rstrip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    args = parser.parse_args()
    folder = RESULTS / args.preset
    preset = PRESETS[args.preset]
    curves = load(folder / f"{args.preset}.csv")
    plotted = preset.plotted_algos()
    plot(curves, preset, 0, "env steps", folder / "curves.png", plotted)
    plot(curves, preset, 2, "training wall-clock (s)", folder / "curves_wallclock.png", plotted)
    if set(plotted) != set(preset.job_algos()):
        plot(curves, preset, 0, "env steps", folder / "curves_variants.png")
    text = (
        f"# Benchmark `{args.preset}`\n\n{header(args.preset, folder / 'machine.txt')}\n\n"
        "Returns are mean ± std over seeds (the mean alone for one seed) of the deterministic policy's mean return over "
        "the evaluation episodes, and at the budget each seed's return in seed order; the mean return over the second "
        "half of the budget averages each seed's evaluations there first. "
        "The sample-efficiency ratio is a baseline's env steps to reach the threshold divided by PolyGRAD's (median "
        "over seeds): above 1, PolyGRAD needs fewer env steps. Wall-clock excludes evaluation and is only comparable "
        "between algorithms of the same run.\n\n" + table(curves, preset)
    )
    diagnostics = polygrad_figures.load(folder / f"{args.preset}.csv")
    sections = (
        polygrad_figures.world_model_table(diagnostics, preset),
        polygrad_figures.learner_table(diagnostics, preset),
        unfinished_table(
            folder / "unfinished", preset, {(algo, env, seed) for (algo, env), seeds in curves.items() for seed in seeds}
        ),
    )
    for section in sections:
        text += "\n" + section if section else ""
    (folder / "table.md").write_text(text)
    if readme_results.write_block(readme_results.README, args.preset, summary(curves, preset)):
        print(f"{readme_results.README.name}: its {args.preset} results rewritten")
    print(text)


if __name__ == "__main__":
    main()
