"""
What an env step of an algorithm costs here in training, past its random-action steps: the algorithm is built as the
benchmark runner builds a preset's job (its RL Zoo hyperparameters with the preset's overrides, one torch thread),
takes its ``learning_starts`` random-action steps untimed, then ``--steps`` env steps of training, timed.

    python -m benchmarks.diagnostics.step_cost --preset hopper-100k --algo crossq --steps 1000

Why: an algorithm too costly to run here is shown by its published figures instead, with this cost beside them
(``benchmarks.report``). Writes one row per algorithm, env and device, replaced when measured again, to
``benchmarks/results/diagnostics/step_cost/step_cost.csv``.
"""

import argparse
import csv
import dataclasses
import platform
import shutil
import tempfile
import time
import warnings
from pathlib import Path

from benchmarks.csv_rows import write_rows
from benchmarks.diagnostics import RESULTS as DIAGNOSTICS
from benchmarks.presets import EnvSetting, Preset
from benchmarks.run import PRESETS, build_job

RESULTS = DIAGNOSTICS / "step_cost"
FIELDS = ["algo", "env", "device", "timed_env_steps", "seconds_per_1000_env_steps", "machine"]


def seconds_per_1000_steps(preset: Preset, algo: str, setting: EnvSetting, steps: int) -> tuple[float, str]:
    """
    Train ``algo`` on ``setting``'s env as the runner would, and time ``steps`` env steps after its random-action ones.

    :param preset: the preset whose job it is
    :param algo: an algorithm or ``polygrad[<label>]`` variant of the preset
    :param setting: the env
    :param steps: env steps to time
    :return: seconds of training per 1,000 env steps, and the kind of device that trained ("cpu", "cuda")
    """
    log_folder = tempfile.mkdtemp(prefix=f"step_cost_{algo}_")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, model = build_job(preset, algo, setting, 0, log_folder)
            random_steps = getattr(model, "learning_starts", 0)  # on-policy algorithms train from the first rollout
            if random_steps:
                model.learn(random_steps)
            tic = time.perf_counter()
            model.learn(steps, reset_num_timesteps=not random_steps)
            seconds = time.perf_counter() - tic
        model.env.close()
    finally:
        shutil.rmtree(log_folder, ignore_errors=True)
    return seconds / steps * 1000, model.device.type


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of the costs' CSV (none before the first measurement)."""
    if not path.exists():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


def read_costs(path: Path | None = None) -> dict[tuple[str, str], dict[str, float]]:
    """
    The costs measured so far.

    :param path: the CSV (default: this diagnostic's)
    :return: (algo, env) -> kind of device -> seconds per 1,000 env steps
    """
    costs: dict[tuple[str, str], dict[str, float]] = {}
    for row in read_rows(path or RESULTS / "step_cost.csv"):
        costs.setdefault((row["algo"], row["env"]), {})[row["device"]] = float(row["seconds_per_1000_env_steps"])
    return costs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="hopper-100k")
    parser.add_argument("--algo", required=True, help="an algorithm of the zoo, or a 'polygrad[<label>]' of the preset")
    parser.add_argument("--env", help="one of the preset's envs (default: its first)")
    parser.add_argument("--steps", type=int, default=1000, help="env steps to time")
    parser.add_argument("--device", help="torch device, instead of the preset's")
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset]
    if args.device:
        preset = dataclasses.replace(preset, device=args.device)
    settings = {setting.env_id: setting for setting in preset.envs}
    if args.env and args.env not in settings:
        parser.error(f"--env {args.env} is not an env of {args.preset} ({sorted(settings)})")
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    setting = settings[args.env] if args.env else preset.envs[0]
    import torch as th  # after the arguments are checked: it takes seconds to import

    th.set_num_threads(1)  # as the runner's jobs
    cost, device = seconds_per_1000_steps(preset, args.algo, setting, args.steps)
    measured = (args.algo, setting.env_id, device)
    path = RESULTS / "step_cost.csv"
    rows = [row for row in read_rows(path) if (row["algo"], row["env"], row["device"]) != measured]
    rows.append(dict(algo=args.algo, env=setting.env_id, device=device, timed_env_steps=args.steps,
                     seconds_per_1000_env_steps=f"{cost:.1f}",
                     machine=f"{platform.platform()}; torch {th.__version__}"))  # fmt: skip
    write_rows(path, rows, FIELDS)
    hours = cost * setting.budget / 1000 / 3600
    print(f"{args.algo} {setting.env_id} on {device}: {cost:.1f} s per 1,000 env steps, {hours:.1f} h for {setting.budget:,}")
    print(f"`python -m benchmarks.report --preset {args.preset}` shows it beside the algorithm's published figures")


if __name__ == "__main__":
    main()
