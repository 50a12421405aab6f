"""
PolyGRAD's own figures in a benchmark report: at each evaluation, the latest world-model and learner figures its runs
logged (``benchmarks.run``'s diagnostics column), mean over seeds, one table per run.
"""

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks.presets import Preset

# (algo, env) -> env steps -> seed -> the figures logged by then (benchmarks.run's diagnostics column)
Diagnostics = dict[tuple[str, str], dict[int, dict[int, dict[str, float]]]]
# The world-model table's columns: (logged key, heading)
WORLD_MODEL_FIGURES = (
    ("world_model/state_mse_h1", "imagined, k = 1"),
    ("world_model/data_actions_state_mse_h1", "recorded actions, k = 1"),
    ("world_model/state_mse_h9", "imagined, k = 9"),
    ("world_model/data_actions_state_mse_h9", "recorded actions, k = 9"),
    ("train/imagined_action_std", "action std of z"),
    ("train/imagined_action_bias", "action bias of z"),
    ("world_model/termination_rate", "ends, flagged"),
    ("world_model/rule_termination_rate", "ends, rule"),
    ("world_model/true_termination_rate", "ends, simulator"),
)


def load(path: Path) -> Diagnostics:
    """The diagnostics column of a benchmark CSV (rows written before it existed, or of other algorithms, are empty)."""
    out: Diagnostics = defaultdict(lambda: defaultdict(dict))
    with path.open() as f:
        for row in csv.DictReader(f):
            figures = json.loads(row.get("diagnostics") or "{}")
            if figures:
                out[(row["algo"], row["env"])][int(row["env_steps"])][int(row["seed"])] = figures
    return out


# The learner table's columns: what the actor-critic learned from and with
LEARNER_FIGURES = (
    ("eval/sampled_return", "eval return, sampled actions"),
    ("imagination/reward_mean", "imagined reward per step"),
    ("imagination/done_rate", "imagined termination rate"),
    ("train/std", "policy action std"),
    ("eval/x_position", "episode end, x (m)"),
)


def figure_cell(value: float) -> str:
    """A diagnostic figure in a table: 3 significant digits, whole numbers from 100 on (returns, not 1.19e+03)."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def figures_table(
    diagnostics: Diagnostics, preset: Preset, figures: tuple[tuple[str, str], ...], mean_label: str, heading: str
) -> str:
    """
    A section of the report: ``heading``, then per PolyGRAD run (algo and env) the latest value of each of ``figures``
    at each evaluation, mean over seeds, and a last row with each column's mean of sizes over its rows. Empty when no
    run logged any of them.

    :param diagnostics: the figures of a benchmark CSV (:func:`load`)
    :param preset: the preset the CSV belongs to (for the runs' names)
    :param figures: the columns, as (logged key, heading)
    :param mean_label: the first cell of the last row
    :param heading: the section's title and the paragraph that says what its figures are
    """
    lines = []
    keys = [key for key, _ in figures]
    for (algo, env), by_step in sorted(diagnostics.items()):
        rows, table_means = [], []
        for steps, by_seed in sorted(by_step.items()):
            means = [float(np.mean([s[key] for s in by_seed.values() if key in s] or [np.nan])) for key in keys]
            if not all(np.isnan(means)):
                rows.append(f"| {steps:,} | {len(by_seed)} | " + " | ".join(map(figure_cell, means)) + " |")
                table_means.append(means)
        if rows:
            # The run in one line; a signed figure's signs would cancel, so the mean is of sizes.
            columns = np.abs(np.array(table_means)).T
            overall = [np.nanmean(column) if not np.isnan(column).all() else np.nan for column in columns]
            rows.append(f"| {mean_label} | | " + " | ".join(map(figure_cell, overall)) + " |")
            lines += [
                f"### {env}, {preset.label(algo)}",
                "",
                "| env steps | seeds | " + " | ".join(heading for _, heading in figures) + " |",
                "|---:|---:|" + "---:|" * len(figures),
                *rows,
                "",
            ]
    return heading + "\n\n" + "\n".join(lines) if lines else ""


def world_model_table(diagnostics: Diagnostics, preset: Preset) -> str:
    """
    PolyGRAD's world-model figures at each evaluation, mean over seeds: open-loop state MSE of imagined trajectories
    against the same world model given the recorded actions, the imagined actions' standardised std and bias under
    the policy (on-policy: 1 and 0), and how often the imagined windows end (flagged by the world model, by the task's
    rule, in the simulator). Empty when no run logged them.
    """
    heading = (
        "## World-model figures\n\nOpen-loop state MSE in MuJoCo of the imagination the learner trains on and of the "
        "same world model given the recorded actions (`world_model/state_mse_h*`, `world_model/data_actions_state_mse_h*`, "
        "logged every 10,000 env steps by `WorldModelEvaluationCallback`); the standardised std and bias of the imagined "
        "actions under the policy (on-policy: 1 and 0); and the share of those imagined windows that end within the window "
        "as the world model flags it, by the task's termination rule applied to the imagined states (nan where the "
        "rule is not known), and in the simulator given the same actions (`world_model/termination_rate`, "
        "`world_model/rule_termination_rate`, `world_model/true_termination_rate`): the learner ends its imagined "
        "episodes by the first or the second (`imagination_kwargs` `terminations`), so fewer ends than the simulator's means "
        "imagination misses falls. The latest figures logged by each evaluation, mean over seeds."
    )
    return figures_table(diagnostics, preset, WORLD_MODEL_FIGURES, "mean (bias: mean size)", heading)


def learner_table(diagnostics: Diagnostics, preset: Preset) -> str:
    """
    What PolyGRAD's actor-critic learned at each evaluation and from what, mean over seeds: the evaluation return of
    the policy's sampled actions, the reward per step and termination rate of the imagined trajectories (raw units,
    before ``reward_scale``) and the policy's action std; and where each algorithm's evaluation episodes end along x.
    Empty when no run logged them.
    """
    heading = (
        "## Learner figures\n\nThe evaluation return of the policy's sampled actions (`eval/sampled_return`: as many "
        "episodes as the deterministic evaluations above, with the actions the actor-critic learns; nan for runs "
        "that did not log it), the reward per step and the termination rate of the imagined trajectories the "
        "actor-critic learns from (`imagination/reward_mean`, `imagination/done_rate`: raw rewards, before "
        "`reward_scale`; the stochastic policy's, where the evaluations above are the deterministic one's), and the "
        "policy's action std (`train/std`, in actions scaled to [-1, 1]), the latest logged by each evaluation, mean "
        "over seeds; and where the deterministic evaluation episodes end along x (`eval/x_position`, in m, for every "
        "algorithm on a task that reports it): a Hopper or Walker2d policy whose return is near 1,000 and whose "
        "episodes end near 0 stands through them on the healthy reward."
    )
    return figures_table(diagnostics, preset, LEARNER_FIGURES, "mean", heading)
