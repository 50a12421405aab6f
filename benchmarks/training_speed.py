"""
Seconds per 1,000 env steps of a CPU entry's whole training loop, split by part, and the same for another version of
the package, measured side by side in one run.

The entry (``hyperparams/polygrad_cpu.yml``, ``polygrad.yml`` for the small tasks, or with ``--variant`` overrides)
first learns ``--warmup`` env steps, so that every part of the loop runs, then is timed over ``--span`` env steps:
world-model updates, imagination, actor-critic steps, and the rest (env steps, replay buffer, logging). ``--baseline
REF`` (repeatable) measures the package as it is at the git revision ``REF`` too, from a copy of that revision's tree
(its own YAML and code), in alternating rounds with the current tree, so all see the same machine load; each version
is a fresh process. The final weights' fingerprint tells whether two versions trained the same model, to the bit.

    python -m benchmarks.training_speed --baseline HEAD~3
    python -m benchmarks.training_speed --variant "{n_sampling_steps: 16, imagination_kwargs: {row_lag: 1.0}}"

Writes ``benchmarks/results/training_speed_<env>.md`` (or ``--output``).
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PARTS = ("world_model", "imagination", "actor_critic")


def measure(tree: Path, env_id: str, warmup: int, span: int, seed: int, hyperparams: dict[str, Any] | None) -> dict[str, Any]:
    """
    Time one version of the package: run in a process whose ``sb3_polygrad`` is ``tree``'s (see :func:`main`).

    :param tree: the source tree whose ``hyperparams/polygrad_cpu.yml`` gives the entry
    :param env_id: the task
    :param warmup: env steps learnt before the timed span
    :param span: env steps timed
    :param seed: the run's seed
    :param hyperparams: the constructor's hyperparameters (``None``: ``tree``'s own entry for ``env_id``)
    :return: seconds of each part and in all over the span, and the fingerprint of the final weights
    """
    import torch as th

    from sb3_polygrad import PolyGRAD

    th.set_num_threads(1)
    if hyperparams is None:
        hyperparams = entry(tree, env_id)
    model = PolyGRAD("MlpPolicy", env_id, seed=seed, **hyperparams)
    model.learn(warmup)
    seconds = dict.fromkeys(PARTS, 0.0)

    def timed(part: str, method: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            tic = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                seconds[part] += time.perf_counter() - tic

        return wrapper

    model._train_world_model = timed("world_model", model._train_world_model)  # type: ignore[method-assign]
    model._train_actor_critic = timed("actor_critic", model._train_actor_critic)  # type: ignore[method-assign]
    model.imaginer.imagine = timed("imagination", model.imaginer.imagine)  # type: ignore[method-assign]
    tic = time.perf_counter()
    model.learn(span, reset_num_timesteps=False)
    total = time.perf_counter() - tic
    digest = hashlib.sha256()
    for module in (model.policy, model.world_model):  # the trained weights: buffers may differ between revisions
        for tensor in module.parameters():
            digest.update(tensor.detach().cpu().numpy().tobytes())
    return {"total": total, **seconds, "fingerprint": digest.hexdigest()[:12]}


def entry(tree: Path, env_id: str) -> dict[str, Any]:
    """
    The constructor's hyperparameters of ``tree``'s CPU entry for ``env_id``: its ``hyperparams/polygrad_cpu.yml`` entry
    (the locomotion tasks), else its ``hyperparams/polygrad.yml`` one (the small tasks the quickstart trains on).
    """
    import yaml

    for name in ("polygrad_cpu.yml", "polygrad.yml"):
        entries = yaml.safe_load((tree / "hyperparams" / name).read_text())
        if env_id in entries:
            return {k: v for k, v in entries[env_id].items() if k not in ("n_timesteps", "policy")}
    raise ValueError(f"{env_id} has no entry in {tree / 'hyperparams'}/polygrad_cpu.yml or polygrad.yml")


def export_tree(revision: str, folder: Path) -> Path:
    """A copy of the repository's tree at ``revision`` in ``folder`` (``git archive``: no checkout is touched)."""
    archive = subprocess.run(["git", "archive", revision], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def run_version(tree: Path, args: argparse.Namespace, hyperparams: dict[str, Any] | None) -> dict[str, Any]:
    """:func:`measure` in a fresh process that imports ``sb3_polygrad`` from ``tree``."""
    request = json.dumps(
        {"tree": str(tree), "env_id": args.env, "warmup": args.warmup, "span": args.span, "seed": args.seed,
         "hyperparams": hyperparams}
    )  # fmt: skip
    # Run as a file, not a module: the process's path then starts with this folder, then ``tree``, so the measured
    # package is ``tree``'s while this script stays the current one.
    environ = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, __file__, "--measure", request], env=environ, check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def parse_overrides(text: str) -> dict[str, Any]:
    """A YAML mapping of hyperparameters, e.g. ``"{n_sampling_steps: 16, imagination_kwargs: {row_lag: 1.0}}"``."""
    import yaml

    overrides = yaml.safe_load(text)
    if not isinstance(overrides, dict) or not overrides:
        raise argparse.ArgumentTypeError(f"expected a YAML mapping such as '{{gradient_steps: 2}}', got {text!r}")
    return overrides


def describe(overrides: dict[str, Any]) -> str:
    """``{a: 1, b: {c: 2}}`` -> ``"a=1, b.c=2"``."""
    return ", ".join(
        describe({f"{key}.{k}": v for k, v in value.items()}) if isinstance(value, dict) else f"{key}={value}"
        for key, value in overrides.items()
    )


def table(rows: list[tuple[str, list[dict[str, Any]]]], span: int) -> list[str]:
    """Markdown rows: per version, the fastest round's seconds per 1,000 env steps, its split and the ratio."""
    per_k = 1000 / span
    best = [(label, min(runs, key=lambda r: r["total"])) for label, runs in rows]
    reference = best[0][1]["total"]
    lines = [
        "| version | s per 1,000 env steps | world-model updates | imagination | actor-critic | rest | speed-up | weights |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for label, r in best:
        rest = r["total"] - sum(r[p] for p in PARTS)
        shares = " | ".join(f"{r[p] * per_k:.1f} ({r[p] / r['total']:.0%})" for p in PARTS)
        lines.append(
            f"| {label} | {r['total'] * per_k:.1f} | {shares} | {rest * per_k:.1f} ({rest / r['total']:.0%}) | "
            f"{reference / r['total']:.2f}x | {r['fingerprint']} |"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Hopper-v4", help="a task of hyperparams/polygrad_cpu.yml or polygrad.yml")
    parser.add_argument("--warmup", type=int, default=2000, help="env steps learnt before the timed span")
    parser.add_argument("--span", type=int, default=1000, help="env steps timed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the fastest of each version counts")
    parser.add_argument(
        "--baseline", action="append", default=[], help="a git revision measured beside the current tree, listed first "
        "(repeatable: in the order given)",
    )  # fmt: skip
    parser.add_argument(
        "--variant", action="append", type=parse_overrides, default=[], metavar="YAML",
        help="the current tree's entry with these overrides, merged as a preset's variants are (repeatable)",
    )  # fmt: skip
    parser.add_argument("--output", help="file name under benchmarks/results/ (default: training_speed_<env>.md)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: one measurement, as JSON
    args = parser.parse_args(argv)
    if args.measure:
        request = json.loads(args.measure)
        print(json.dumps(measure(Path(request.pop("tree")), **request)))
        return

    # Here, not at the top: the measuring process runs this file with another revision's package on its path.
    from benchmarks.machine import describe_machine
    from benchmarks.presets import merge_overrides

    with tempfile.TemporaryDirectory(prefix="training_speed_") as scratch:
        # Hyperparameters None: the tree's own entry, read by the measuring process (a revision's keys are its own).
        versions: list[tuple[str, Path, dict[str, Any] | None]] = []
        for baseline in args.baseline:
            revision = subprocess.run(
                ["git", "rev-parse", "--short", baseline], cwd=ROOT, check=True, capture_output=True, text=True
            ).stdout.strip()
            folder = Path(scratch) / revision
            folder.mkdir()
            versions.append((f"`{revision}` ({baseline})", export_tree(baseline, folder), None))
        versions.append(("current", ROOT, None))
        versions += [(f"current, {describe(o)}", ROOT, merge_overrides(entry(ROOT, args.env), o)) for o in args.variant]
        runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in versions}
        for round_ in range(args.rounds):
            for label, tree, hyperparams in versions:
                runs[label].append(run_version(tree, args, hyperparams))
                print(f"round {round_ + 1}: {label}: {runs[label][-1]['total']:.1f} s over {args.span} env steps")

    command = " ".join(["python -m benchmarks.training_speed", *(argv if argv is not None else sys.argv[1:])])
    lines = [
        f"# Training speed: {args.env} CPU entry",
        "",
        f"Command: `{command}`. Machine: {describe_machine()}; one thread per process.",
        "",
        f"Each version learns {args.warmup} env steps, then is timed over {args.span} more (seed {args.seed}); the "
        f"fastest of {args.rounds} alternating rounds counts. Speed-up is against the first row. Weights: a fingerprint "
        "of the final parameters of policy and world model; equal fingerprints mean the versions trained the same model.",
        "",
        *table([(label, runs[label]) for label, _, _ in versions], args.span),
        "",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / (args.output or f"training_speed_{args.env}.md")
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
