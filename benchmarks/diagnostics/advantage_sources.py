"""
Where one imagined actor-critic step of a trained PolyGRAD takes its signal from: its advantages and the actor's
gradient, split by the env step at which each imagination's start state was recorded.

    python -m benchmarks.diagnostics.advantage_sources --checkpoint path/to/step --name hopper --edges 20000 50000

A checkpoint is a folder with ``model.zip`` and ``replay_buffer.pkl``, as ``benchmarks.run`` writes one at each
evaluation (``<preset>/runs/<job>.ckpt/<env steps>/``). Start windows are drawn as the model's training draws them
(``imagination_kwargs['start_window']`` included; ``--whole-buffer`` draws from the whole buffer instead), imagined
once, and the actor's loss is split by start state into groups whose gradients add up to the loss's gradient. For each
group: its share of the start states, of the squared advantages the actor weighs its log-probabilities by, and of the
actor's gradient (the group's gradient projected on the whole gradient, over its squared norm: the shares add up to 1).

Why: the actor-critic is on-policy, but imagination starts from real states drawn from the whole replay buffer, most
of them recorded by earlier policies; a group whose share of the gradient far exceeds its share of the start states
steers the actor's steps.

Writes ``benchmarks/results/diagnostics/advantage_sources/<name>.md``.
"""

import argparse
import itertools
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch as th

from benchmarks.diagnostics import RESULTS as DIAGNOSTICS
from benchmarks.diagnostics import load_checkpoint, missing_checkpoint_file
from sb3_polygrad import PolyGRAD

RESULTS = DIAGNOSTICS / "advantage_sources"


@dataclass
class Group:
    """One group of start states: recorded in env steps ``[first, end)``; its shares of the batch."""

    first: int
    end: int
    starts: float
    squared_advantages: float
    gradient: float


def flat_grad(loss: th.Tensor, parameters: list[th.nn.Parameter]) -> th.Tensor:
    """The gradient of ``loss`` over ``parameters`` (zero for those it does not reach), flattened into one vector."""
    grads = th.autograd.grad(loss, parameters, retain_graph=True, allow_unused=True)
    return th.cat([(th.zeros_like(p) if g is None else g).flatten() for p, g in zip(parameters, grads, strict=True)])


def imagined_actor_terms(
    model: PolyGRAD, n_starts: int, newest: int | None, seed: int
) -> tuple[np.ndarray, th.Tensor, th.Tensor, th.Tensor]:
    """
    One imagined batch and the actor's loss on it, as one actor-critic step of training computes them.

    :param model: a trained PolyGRAD with its replay buffer
    :param n_starts: imagined trajectories in the batch
    :param newest: draw start windows among the newest ``newest`` transitions (``None``: the whole buffer)
    :param seed: seed of the drawn windows and of imagination
    :return: the buffer rows of the start windows, (B, H); each transition's term of the actor loss, the advantages it
        weighs and the transitions' weights, each (B, H-1)
    """
    buffer = model.replay_buffer
    rows, envs = buffer.sample_window_rows(n_starts, model.horizon, np.random.default_rng(seed), newest)
    trajectory = model.imaginer.imagine(buffer.windows(rows, envs), th.Generator(device=model.device).manual_seed(seed))
    learner, cfg = model.learner, model.actor_critic_config()
    advantages, _, weights = learner.advantages(trajectory, cfg)
    terms, _, _ = learner.actor_terms(trajectory, cfg, advantages, weights)
    return rows, terms, advantages, weights


def advantage_sources(
    model: PolyGRAD, edges: list[int], n_starts: int, newest: int | None, seed: int = 0
) -> tuple[list[Group], int]:
    """
    :param model: a trained PolyGRAD with its replay buffer
    :param edges: env steps that bound the groups, increasing (the first group starts at 0, the last ends now)
    :param n_starts: imagined trajectories in the batch
    :param newest: draw start windows among the newest ``newest`` transitions (``None``: the whole buffer)
    :param seed: seed of the drawn windows and of imagination
    :return: the groups (those with no start state left out) and the env steps the model has taken
    """
    rows, terms, advantages, weights = imagined_actor_terms(model, n_starts, newest, seed)
    recorded = model.replay_buffer.env_steps_of_rows(rows[:, 0], model.num_timesteps)
    parameters = [p for p in model.actor.parameters() if p.requires_grad]
    squared = (weights * advantages.square()).sum(dim=1).cpu().numpy()  # (B,)
    whole = flat_grad(terms.mean(), parameters)
    bounds = [0, *edges, model.num_timesteps]
    groups = []
    for first, end in itertools.pairwise(bounds):
        in_group = th.as_tensor((recorded >= first) & (recorded < end), device=terms.device)
        if not in_group.any():
            continue
        gradient = flat_grad(terms[in_group].sum() / terms.numel(), parameters)
        groups.append(
            Group(
                first=first,
                end=end,
                starts=in_group.float().mean().item(),
                squared_advantages=float(squared[in_group.cpu().numpy()].sum() / squared.sum()),
                gradient=(gradient @ whole / whole.square().sum()).item(),
            )
        )
    return groups, model.num_timesteps


def report(groups: list[Group], num_timesteps: int, n_starts: int, newest: int | None, command: str) -> str:
    """The Markdown table of :func:`advantage_sources`."""
    drawn = "the whole replay buffer" if newest is None else f"the newest {newest:,} transitions"
    lines = [
        "# Where the actor's signal comes from",
        "",
        f"Command: `{command}`. One imagined batch of {n_starts:,} trajectories from start states drawn from {drawn}, "
        f"after {num_timesteps:,} env steps; start states grouped by the env step at which they were recorded. "
        "Shares of the batch: of the start states, of the squared (standardised) advantages, and of the actor's "
        "gradient (each group's gradient projected on the whole; the shares add up to 1).",
        "",
        "| recorded at env steps | start states | squared advantages | actor gradient |",
        "|---|---:|---:|---:|",
        *[f"| {g.first:,} - {g.end:,} | {g.starts:.0%} | {g.squared_advantages:.0%} | {g.gradient:.0%} |" for g in groups],
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="a folder with model.zip and replay_buffer.pkl")
    parser.add_argument("--name", required=True, help="the results file is advantage_sources/<name>.md")
    parser.add_argument("--edges", type=int, nargs="+", required=True, help="env steps that bound the groups")
    parser.add_argument("--starts", type=int, default=1024, help="imagined trajectories in the batch")
    parser.add_argument("--whole-buffer", action="store_true", help="ignore the model's imagination start_window")
    args = parser.parse_args()
    if args.starts < 1 or args.edges != sorted(set(args.edges)) or args.edges[0] <= 0:
        parser.error("--starts must be at least 1 and --edges positive and increasing")
    if error := missing_checkpoint_file(args.checkpoint):
        parser.error(error)
    th.set_num_threads(1)
    model = load_checkpoint(args.checkpoint)
    newest = None if args.whole_buffer else model.imagination_kwargs.get("start_window")
    groups, num_timesteps = advantage_sources(model, args.edges, args.starts, newest)
    options = ["--name", args.name, "--edges", *map(str, args.edges), "--starts", str(args.starts)]
    options += ["--whole-buffer"] if args.whole_buffer else []
    command = shlex.join(
        ["python", "-m", "benchmarks.diagnostics.advantage_sources", "--checkpoint", str(args.checkpoint), *options]
    )
    text = report(groups, num_timesteps, args.starts, newest, command)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
