"""
What the critic is asked to learn from imagination and from the real windows imagination starts from, on a trained
PolyGRAD's checkpoint: the same start states, two sets of GAE targets.

    python -m benchmarks.diagnostics.real_windows --checkpoint path/to/step --env HalfCheetah-v4 --name halfcheetah-s0

A checkpoint is a folder with ``model.zip`` and ``replay_buffer.pkl``, as ``benchmarks.run`` writes one at each
evaluation (``<preset>/runs/<job>.ckpt/<env steps>/``). Start windows are drawn as training draws them (the model's
``imagination_kwargs['start_window']``), imagined once, and both the imagined trajectories and the real windows get
their GAE targets from the model's target critic, as the actor-critic computes them. The table gives, in the critic's
units (rewards times ``reward_scale``), for each: the mean reward per step, the mean target of the start state, and how
well the critic fits the targets (its weighted squared error and explained variance); and the gap between the two
targets of the same start state.

Why: ``actor_critic_kwargs={"real_vf_coef": c}`` gives the critic a second loss on the real windows. Where imagination
and the env disagree on a start state's value, the critic is pulled between two targets, and the actor's advantages,
computed on imagined states, inherit the compromise.

Writes ``benchmarks/results/diagnostics/real_windows/<name>.md``.
"""

import argparse
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch as th

from benchmarks.diagnostics import RESULTS as DIAGNOSTICS
from benchmarks.diagnostics import load_checkpoint, missing_checkpoint_file
from sb3_polygrad import PolyGRAD
from sb3_polygrad.world_model.types import ImaginedTrajectory

RESULTS = DIAGNOSTICS / "real_windows"


@dataclass
class Targets:
    """What the critic is asked to learn from one set of trajectories, in its units."""

    reward: float
    start_target: float
    start_value: float
    error: float
    explained_variance: float


def targets(model: PolyGRAD, traj: ImaginedTrajectory) -> tuple[Targets, th.Tensor]:
    """
    :param model: a trained PolyGRAD
    :param traj: trajectories in raw units, (B, H, ...)
    :return: the figures of ``traj``'s GAE targets, and the start states' targets (B,)
    """
    learner, cfg = model.learner, model.actor_critic_config()
    _, returns, weights = learner.gae_targets(traj, cfg)
    with th.no_grad():
        values = model.policy.predict_values(traj.observations[:, :-1])
    live = weights > 0
    residual = (returns - values)[live]
    return (
        Targets(
            reward=(cfg.reward_scale * traj.rewards[:, :-1])[live].mean().item(),
            start_target=returns[:, 0].mean().item(),
            start_value=values[:, 0].mean().item(),
            error=(0.5 * residual.square()).mean().item(),
            explained_variance=1.0 - (residual.var() / returns[live].var()).item(),
        ),
        returns[:, 0],
    )


def compare(model: PolyGRAD, n_starts: int, seed: int = 0) -> tuple[Targets, Targets, float, float]:
    """
    :param model: a trained PolyGRAD with its replay buffer
    :param n_starts: start windows drawn
    :param seed: seed of the drawn windows and of imagination
    :return: the imagined and the real figures, and the mean and standard deviation over start states of the imagined
        target minus the real one
    """
    buffer = model.replay_buffer
    newest = model.imagination_kwargs.get("start_window")
    rows, envs = buffer.sample_window_rows(n_starts, model.horizon, np.random.default_rng(seed), newest)
    start = buffer.windows(rows, envs)
    imagined = model.imaginer.imagine(start, th.Generator(device=model.device).manual_seed(seed))
    real = start.as_trajectory()
    imagined_figures, imagined_starts = targets(model, imagined)
    real_figures, real_starts = targets(model, real)
    gap = imagined_starts - real_starts
    return imagined_figures, real_figures, gap.mean().item(), gap.std().item()


def report(rows: list[tuple[str, Targets, Targets, float, float]], command: str) -> str:
    """The Markdown table of :func:`compare` for each checkpoint."""
    lines = [
        "# What the critic learns from imagination and from the real windows",
        "",
        f"Command: `{command}`. Figures in the critic's units (rewards times the reward scale): the mean reward per "
        "step, the mean GAE target of the start state and the critic's value there, and the critic's fit to the "
        "targets of the live steps (half the mean squared error; explained variance). Gap: the imagined target of a "
        "start state minus its real one, mean +- std over start states.",
        "",
        "| checkpoint | trajectories | reward / step | start target | start value | critic error | explained var. | gap |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, imagined, real, gap_mean, gap_std in rows:
        for kind, t in (("imagined", imagined), ("real", real)):
            gap = f"{gap_mean:.2f} +- {gap_std:.2f}" if kind == "imagined" else ""
            lines.append(
                f"| {name} | {kind} | {t.reward:.3f} | {t.start_target:.2f} | {t.start_value:.2f} | {t.error:.3f} "
                f"| {t.explained_variance:.2f} | {gap} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--checkpoint", type=Path, nargs="+", required=True, help="folders, each with model.zip and replay_buffer.pkl"
    )
    parser.add_argument("--label", nargs="+", help="a name for each checkpoint in the table (default: its path)")
    parser.add_argument("--env", required=True, help="the checkpoints' env id (imagination may read its termination rule)")
    parser.add_argument("--name", required=True, help="the results file is real_windows/<name>.md")
    parser.add_argument("--starts", type=int, default=1024, help="start windows drawn")
    args = parser.parse_args()
    labels = args.label or [str(c) for c in args.checkpoint]
    if args.starts < 2 or len(labels) != len(args.checkpoint):
        parser.error("--starts must be at least 2, and --label give one name per checkpoint")
    for checkpoint in args.checkpoint:
        if error := missing_checkpoint_file(checkpoint):
            parser.error(error)
    th.set_num_threads(1)
    rows = []
    for label, checkpoint in zip(labels, args.checkpoint, strict=True):
        model = load_checkpoint(checkpoint, args.env)
        rows.append((label, *compare(model, args.starts)))
    options = ["--env", args.env, "--name", args.name, "--starts", str(args.starts)]
    options += ["--label", *labels] if args.label else []
    command = shlex.join(
        ["python", "-m", "benchmarks.diagnostics.real_windows", "--checkpoint", *map(str, args.checkpoint), *options]
    )
    text = report(rows, command)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
