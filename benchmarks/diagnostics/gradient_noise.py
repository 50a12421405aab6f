"""
How much of one actor step of a trained PolyGRAD is signal: the actor's gradient on independent imagined batches of
the size that training uses, from the same model.

    python -m benchmarks.diagnostics.gradient_noise --env HalfCheetah-v4 --name halfcheetah --checkpoint s0=path/to/step

A checkpoint is a folder with ``model.zip`` and ``replay_buffer.pkl``, as ``benchmarks.run`` writes one at each
evaluation (``<preset>/runs/<job>.ckpt/<env steps>/``). For each, ``--batches`` batches of start windows are drawn as
training draws them (``imagination_kwargs['start_window']`` included), each imagined once with its own seed, and the
actor's loss gradient is taken on each, as one actor-critic step takes it (advantages standardised over the batch
where the model does so). From these K gradients ``g_k`` of batches of B trajectories:

- the mean gradient's squared norm, with the noise's share taken out, ``|G|^2 = |mean g|^2 - tr(S) / K``, and the
  noise of one batch, ``tr(S)``, with ``S`` the sample covariance of the ``g_k``;
- the signal share of one batch's gradient, ``|G|^2 / (|G|^2 + tr(S))``: about the squared cosine between one step's
  direction and the expected one;
- the mean cosine between two batches' gradients;
- the noise scale ``B tr(S) / |G|^2``: the batch size, in imagined trajectories, at which a batch's signal equals its
  noise (McCandlish et al. 2018, "An empirical model of large-batch training").

Why: each actor step is held at a fixed size (section 3.5 of docs/method.md) whatever its batch's gradient says; where
that gradient is mostly noise, the policy takes steps of full size in random directions, and more imagined
trajectories per step, or several smaller steps, are what would steady it.

Writes ``benchmarks/results/diagnostics/gradient_noise/<name>.md``.
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
from benchmarks.diagnostics.advantage_sources import flat_grad, imagined_actor_terms
from sb3_polygrad import PolyGRAD

RESULTS = DIAGNOSTICS / "gradient_noise"


@dataclass
class GradientNoise:
    """The actor's gradient over K imagined batches of one checkpoint."""

    label: str
    env_steps: int
    batch_size: int
    batches: int
    signal: float  # |G|^2, the noise's share taken out
    noise: float  # tr(S), one batch's
    mean_cosine: float

    @classmethod
    def from_gradients(cls, label: str, env_steps: int, batch_size: int, grads: th.Tensor) -> "GradientNoise":
        """
        :param label: the checkpoint's name in the table
        :param env_steps: the env steps the model had taken
        :param batch_size: imagined trajectories per batch
        :param grads: one gradient per batch, (K, P) with K at least 2
        :return: their signal and noise
        """
        grads = grads.double()
        n_batches = len(grads)
        mean = grads.mean(dim=0)
        noise = (grads - mean).square().sum().item() / (n_batches - 1)  # tr(S), unbiased
        unit = grads / grads.norm(dim=1, keepdim=True).clamp(min=1e-30)
        cosines = [(unit[i] @ unit[j]).item() for i, j in itertools.combinations(range(n_batches), 2)]
        return cls(
            label=label,
            env_steps=env_steps,
            batch_size=batch_size,
            batches=n_batches,
            signal=mean.square().sum().item() - noise / n_batches,  # E|mean g|^2 = |G|^2 + tr(S) / K
            noise=noise,
            mean_cosine=float(np.mean(cosines)),
        )

    @property
    def signal_share(self) -> float:
        """``|G|^2 / (|G|^2 + tr(S))``, 0 where the estimate of ``|G|^2`` is not positive."""
        return max(self.signal, 0.0) / (max(self.signal, 0.0) + self.noise)

    @property
    def noise_scale(self) -> float:
        """The batch size at which a batch's signal equals its noise (infinite where no signal is measured)."""
        return self.batch_size * self.noise / self.signal if self.signal > 0 else float("inf")


def batch_gradient(model: PolyGRAD, n_starts: int, seed: int) -> th.Tensor:
    """
    :param model: a trained PolyGRAD with its replay buffer
    :param n_starts: imagined trajectories in the batch
    :param seed: seed of the drawn windows and of imagination
    :return: the gradient of the actor's loss on one imagined batch, flattened over the actor's parameters
    """
    _, terms, _, _ = imagined_actor_terms(model, n_starts, model.imagination_kwargs.get("start_window"), seed)
    parameters = [p for p in model.actor.parameters() if p.requires_grad]
    return flat_grad(terms.mean(), parameters)


def gradient_noise(model: PolyGRAD, label: str, n_batches: int, n_starts: int) -> GradientNoise:
    """
    :param model: a trained PolyGRAD with its replay buffer
    :param label: the checkpoint's name in the table
    :param n_batches: independent imagined batches (at least 2)
    :param n_starts: imagined trajectories per batch
    :return: the gradient's signal and noise
    """
    grads = th.stack([batch_gradient(model, n_starts, seed) for seed in range(n_batches)])
    return GradientNoise.from_gradients(label, model.num_timesteps, n_starts, grads)


def report(rows: list[GradientNoise], command: str) -> str:
    """The Markdown table of :func:`gradient_noise` over checkpoints."""
    lines = [
        "# How much of one actor step is signal",
        "",
        f"Command: `{command}`. For each checkpoint, the actor's loss gradient on K independent imagined batches of B "
        "trajectories (start windows drawn as training draws them). Signal share: `|G|^2 / (|G|^2 + tr S)`, about the "
        "squared cosine between one batch's gradient and the expected gradient; noise scale: the batch size at which "
        "a batch's signal equals its noise, `B tr S / |G|^2`.",
        "",
        "| checkpoint | env steps | B | K | signal share, one batch | cosine of two batches | noise scale (trajectories) |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *map(table_row, rows),
    ]
    return "\n".join(lines)


def table_row(r: GradientNoise) -> str:
    """One checkpoint's row of :func:`report`'s table."""
    return (
        f"| {r.label} | {r.env_steps:,} | {r.batch_size} | {r.batches} | {r.signal_share:.1%} | {r.mean_cosine:.3f} "
        f"| {r.noise_scale:,.0f} |"
    )


def _labelled(value: str) -> tuple[str, Path]:
    label, sep, path = value.partition("=")
    if not sep or not label:
        raise argparse.ArgumentTypeError(f"expected LABEL=PATH, got {value!r}")
    return label, Path(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--checkpoint", type=_labelled, action="append", required=True, help="LABEL=PATH of a folder with model.zip"
    )
    parser.add_argument("--env", required=True, help="the checkpoints' env id (imagination may read its termination rule)")
    parser.add_argument("--name", required=True, help="the results file is gradient_noise/<name>.md")
    parser.add_argument("--batches", type=int, default=16, help="independent imagined batches per checkpoint")
    parser.add_argument("--starts", type=int, default=None, help="trajectories per batch (default: the model's)")
    args = parser.parse_args()
    if args.batches < 2 or (args.starts is not None and args.starts < 1):
        parser.error("--batches must be at least 2 and --starts at least 1")
    for _, path in args.checkpoint:
        if error := missing_checkpoint_file(path):
            parser.error(error)
    th.set_num_threads(1)
    rows = []
    for label, path in args.checkpoint:
        model = load_checkpoint(path, args.env)
        rows.append(gradient_noise(model, label, args.batches, args.starts or model.imagination_batch_size))
        print(table_row(rows[-1]))
    options = ["--env", args.env, "--name", args.name, "--batches", str(args.batches)]
    options += ["--starts", str(args.starts)] if args.starts is not None else []
    checkpoints = [f"--checkpoint={label}={path}" for label, path in args.checkpoint]
    command = shlex.join(["python", "-m", "benchmarks.diagnostics.gradient_noise", *checkpoints, *options])
    text = report(rows, command)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
