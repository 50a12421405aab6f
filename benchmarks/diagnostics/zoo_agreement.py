"""
Is a baseline of the benchmark runner the RL Zoo's own? Each seed's job is trained for a few thousand env steps both ways,
with the zoo's own ``rl_zoo3.train`` command in a subprocess and with the runner's ``run_job`` (checkpointing at every
evaluation, as ``benchmarks.run`` runs a job), and the hashes of the two final policies' weights are compared. Then the
zoo's evaluations over the full budget, read from the log folder of full runs of the same command, are set beside the
runner's rows in the preset's CSV for the same seeds and beside the algorithm's published figures.

    python -m benchmarks.diagnostics.zoo_agreement --preset halfcheetah-100k --algo sac --steps 15000 --zoo-logs logs

The full runs are the zoo command it prints, with ``-n`` at the preset's budget, one per seed; a run counts for its seed
when its ``args.yml`` is that command's (the latest such run where there are several) and its evaluations reach the
budget.

Why: two implementations of "the zoo's hyperparameters" can differ in the update ratio, the evaluation or the env
wrappers, and the runner's figures are only the zoo's where the two train the same weights. Where they do, what is left
between the runner's rows and the zoo's full runs is the machine and packages each ran on, and the start states of the
evaluations (the runner evaluates once more, before training).

The zoo's ``--device auto`` is the runner's CPU only where no GPU is visible, so the diagnostic refuses to run on one.
Writes ``benchmarks/results/diagnostics/zoo_agreement/<preset>_<algo>.md``.
"""

import argparse
import csv
import dataclasses
import hashlib
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple
from unittest import mock

import numpy as np
import torch as th
import yaml

from benchmarks import run
from benchmarks.diagnostics import RESULTS as DIAGNOSTICS
from benchmarks.machine import describe_machine
from benchmarks.presets import RESULTS as BENCHMARKS
from benchmarks.presets import EnvSetting, Preset
from benchmarks.published import published_rows
from benchmarks.report import INVOCATION, mean_std_text

RESULTS = DIAGNOSTICS / "zoo_agreement"
# the algorithms of an invocation line of a preset's machine.txt, as benchmarks.run writes one
ALGOS = re.compile(r"; algos ([^;]+);")


def zoo_command(algo: str, setting: EnvSetting, steps: int, seed: int, episodes: int, log_folder: str) -> list[str]:
    """
    The zoo's own training command for one job, evaluating as the runner does.

    :param algo: the algorithm
    :param setting: the env and its evaluation cadence
    :param steps: env steps to train for
    :param seed: the seed
    :param episodes: deterministic episodes per evaluation
    :param log_folder: the zoo's ``--log-folder``
    :return: the command's arguments after ``python``
    """
    return ["-m", "rl_zoo3.train", "--algo", algo, "--env", setting.env_id, "-n", str(steps), "--seed", str(seed),
            "--eval-freq", str(setting.eval_freq), "--eval-episodes", str(episodes), "--num-threads", "1",
            "--log-folder", log_folder]  # fmt: skip


def command_text(arguments: Sequence[str]) -> str:
    """A zoo command as a user types it, with the one thread per process that the runner sets too."""
    return "OMP_NUM_THREADS=1 " + shlex.join(["python", *arguments])


class _ZooArgsLoader(yaml.SafeLoader):
    """Reads the zoo's ``args.yml``, which it dumps as an ``OrderedDict``, without loading arbitrary Python objects."""


_ZooArgsLoader.add_constructor(
    "tag:yaml.org,2002:python/object/apply:collections.OrderedDict",
    lambda loader, node: dict(loader.construct_sequence(node, deep=True)[0]),
)


def read_zoo_args(path: Path) -> dict[str, Any]:
    """:param path: a zoo run's ``<env>/args.yml``
    :return: its command-line arguments by name"""
    return yaml.load(path.read_text(), Loader=_ZooArgsLoader)


class ZooRun(NamedTuple):
    """One run of the zoo's command: its folder and its evaluations."""

    folder: Path
    returns: dict[int, float]  # env steps -> mean return of the evaluation's episodes


def read_evaluations(path: Path) -> dict[int, float]:
    """:param path: an ``evaluations.npz`` of SB3's ``EvalCallback``
    :return: env steps -> mean return over the evaluation's episodes"""
    data = np.load(path)
    return {int(steps): float(returns.mean()) for steps, returns in zip(data["timesteps"], data["results"], strict=True)}


def find_zoo_runs(log_folder: Path, algo: str, setting: EnvSetting, episodes: int) -> dict[int, ZooRun]:
    """
    The full runs of :func:`zoo_command` in a zoo log folder, by seed.

    :param log_folder: the zoo's ``--log-folder`` of the runs
    :param algo: the algorithm
    :param setting: the env, the budget the runs must reach and their evaluation cadence
    :param episodes: deterministic episodes per evaluation
    :return: seed -> the latest run of that seed made with the command whose evaluations reach the budget
    """
    expected = {"algo": algo, "env": setting.env_id, "n_timesteps": setting.budget, "eval_freq": setting.eval_freq,
                "eval_episodes": episodes, "num_threads": 1, "hyperparams": None, "conf_file": None}  # fmt: skip
    # the zoo names its runs <env>_<n>, n counting up from 1: by n, the latest last
    numbered = [(re.fullmatch(rf"{re.escape(setting.env_id)}_(\d+)", f.name), f) for f in (log_folder / algo).glob("*")]
    folders = [folder for _, folder in sorted((int(match[1]), folder) for match, folder in numbered if match)]
    runs: dict[int, ZooRun] = {}
    for folder in folders:
        args_file, evaluations = folder / setting.env_id / "args.yml", folder / "evaluations.npz"
        if not args_file.exists() or not evaluations.exists():
            continue
        args = read_zoo_args(args_file)
        returns = read_evaluations(evaluations)
        if all(args.get(key) == value for key, value in expected.items()) and max(returns) >= setting.budget:
            runs[int(args["seed"])] = ZooRun(folder, returns)
    return runs


def committed_returns(path: Path, algo: str, env_id: str) -> dict[int, dict[int, float]]:
    """:param path: a preset's merged CSV (``benchmarks.run.FIELDS``)
    :return: seed -> env steps -> evaluation return, of ``algo`` on ``env_id``"""
    returns: dict[int, dict[int, float]] = {}
    with path.open() as f:
        for row in csv.DictReader(f):
            if row["algo"] == algo and row["env"] == env_id:
                returns.setdefault(int(row["seed"]), {})[int(row["env_steps"])] = float(row["eval_return"])
    return returns


def report_steps(budget: int, every: int = 10_000) -> list[int]:
    """The env steps of the comparison: each ``every`` up to the budget, and the budget."""
    return sorted({*range(every, budget + 1, every), budget})


def comparison_table(
    steps: Sequence[int],
    runner: dict[int, dict[int, float]],
    zoo: dict[int, dict[int, float]],
    seeds: Sequence[int],
    means: bool = True,
    labels: tuple[str, str] = ("runner", "zoo"),
) -> str:
    """
    A Markdown table of two sets of runs' evaluations per seed, the runner's and the zoo's by default ("—" where one is
    missing).

    :param steps: the rows' env steps
    :param runner: seed -> env steps -> the first set's return
    :param zoo: seed -> env steps -> the second set's return
    :param seeds: the columns' seeds
    :param means: add each set's mean ± std over the seeds that both have at that step
    :param labels: the two sets' names
    """
    first, second = labels
    header = " | ".join(f"seed {s}: {first} | seed {s}: {second}" for s in seeds)
    header += f" | {first} | {second}" if means else ""
    lines = [f"| env steps | {header} |", "|---:|" + "---:|" * (2 * len(seeds) + 2 * means)]
    for step in steps:
        cells = [f"{source[s][step]:.1f}" if step in source.get(s, {}) else "—" for s in seeds for source in (runner, zoo)]
        both = [s for s in seeds if step in runner.get(s, {}) and step in zoo.get(s, {})]
        if means:
            cells += [mean_std_text([source[s][step] for s in both]) if both else "—" for source in (runner, zoo)]
        lines.append(f"| {step:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def seeds_text(seeds: Sequence[int]) -> str:
    """``[0, 1, 2]`` -> ``"seeds 0, 1 and 2"``; ``[0]`` -> ``"seed 0"``."""
    names = [str(s) for s in seeds]
    return f"seed {names[0]}" if len(names) == 1 else f"seeds {', '.join(names[:-1])} and {names[-1]}"


def parameter_hash(policy: th.nn.Module) -> str:
    """SHA-256 of a policy's weights (names, dtypes, shapes and bytes, in ``state_dict`` order): equal only if every bit is."""
    digest = hashlib.sha256()
    for name, tensor in policy.state_dict().items():
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class ShortRun(NamedTuple):
    """One job trained for a few thousand env steps: its final weights' hash and its evaluations."""

    weights: str
    returns: dict[int, float]


def train_with_zoo(algo: str, setting: EnvSetting, steps: int, seed: int, episodes: int, folder: Path) -> ShortRun:
    """Train one job with the zoo's own command in a subprocess, logging to ``folder`` (see :func:`zoo_command`)."""
    from rl_zoo3 import ALGOS

    command = [sys.executable, *zoo_command(algo, setting, steps, seed, episodes, str(folder))]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode:
        raise RuntimeError(f"{shlex.join(command)} failed:\n{done.stderr[-3000:]}")
    (run_folder,) = (folder / algo).glob(f"{setting.env_id}_*")
    model = ALGOS[algo].load(run_folder / f"{setting.env_id}.zip", device="cpu")
    evaluations = run_folder / "evaluations.npz"  # none where the run ends before its first evaluation
    return ShortRun(parameter_hash(model.policy), read_evaluations(evaluations) if evaluations.exists() else {})


def train_with_runner(preset: Preset, algo: str, setting: EnvSetting, seed: int, folder: Path) -> tuple[ShortRun, str]:
    """
    Train one job with the runner's ``run_job`` for ``setting.budget`` env steps, checkpointing in ``folder``.

    :return: the run, and what the job trains with (:func:`training_setup`)
    """
    build_job = run.build_job
    built: list[Any] = []

    def keep(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
        # run_job returns its rows only; the model it builds (a fresh job does not reload one) holds the final weights
        manager, model = build_job(*args, **kwargs)
        built.append(model)
        return manager, model

    with mock.patch.object(run, "build_job", keep):
        rows = run.run_job(preset, algo, setting, seed, folder / "checkpoints", folder / "evaluations.csv")
    (model,) = built
    returns = {row["env_steps"]: float(row["eval_return"]) for row in rows}
    return ShortRun(parameter_hash(model.policy), returns), training_setup(model)


def training_setup(model: Any) -> str:
    """The settings of a built model that decide its update ratio and learning, and the wrappers of its env."""
    names = ("learning_rate", "batch_size", "buffer_size", "learning_starts", "train_freq", "gradient_steps", "tau",
             "gamma", "ent_coef", "n_steps", "n_epochs")  # fmt: skip
    settings = {name: getattr(model, name) for name in names if hasattr(model, name)}
    if "train_freq" in settings:  # SB3's TrainFreq tuple
        settings["train_freq"] = f"{settings['train_freq'].frequency} {settings['train_freq'].unit.value}"
    settings["net_arch"] = getattr(model.policy, "net_arch", None)
    text = ", ".join(f"{name} {value}" for name, value in settings.items())
    return f"{text}; env: {type(model.env).__name__} of `{model.env.envs[0]}`"


def runner_machines(machine_txt: Path, algo: str) -> list[str]:
    """The machines of the runner's invocations that ran ``algo``, from a preset's ``machine.txt``, each once."""
    lines = machine_txt.read_text().splitlines() if machine_txt.exists() else []
    invocations = [(INVOCATION.match(line), ALGOS.search(line)) for line in lines]
    found = [start["machine"] for start, algos in invocations if start and algos and algo in algos[1].split()]
    return list(dict.fromkeys(found))


def short_runs_section(
    preset: Preset,
    algo: str,
    setting: EnvSetting,
    seeds: Sequence[int],
    runs: dict[int, tuple[ShortRun, ShortRun]],
    committed: dict[int, dict[int, float]],
) -> str:
    """
    The weights' hashes and evaluations of the short runs, and the runner's evaluations beside its committed rows.

    :param runs: seed -> the runner's and the zoo's short run
    :param committed: seed -> env steps -> the return of the runner's row in the preset's CSV
    """
    command = command_text(zoo_command(algo, setting, setting.budget, 0, preset.n_eval_episodes, "logs"))
    steps = sorted({step for pair in runs.values() for one in pair for step in one.returns})
    runner = {s: r.returns for s, (r, _) in runs.items()}
    lines = [
        f"## The same job both ways, {setting.budget:,} env steps",
        "",
        f"Each seed trained by `{command.replace('--seed 0', '--seed SEED')}` and by the runner's `run_job` (with its "
        "checkpoint at every evaluation), then the SHA-256 of each final policy's weights (actor, critics and target "
        "critics):",
        "",
        "| seed | runner | zoo | bit-identical |",
        "|---:|---|---|---|",
        *(f"| {s} | `{r.weights[:16]}` | `{z.weights[:16]}` | {'yes' if r.weights == z.weights else 'no'} |"
          for s, (r, z) in runs.items()),
        "",
        f"Their evaluations (mean return of {preset.n_eval_episodes} deterministic episodes). The runner evaluates at 0 "
        "env steps too, so each of its evaluations runs the start states of the zoo's evaluation "
        f"{setting.eval_freq:,} env steps later: where the policy has not changed in between (before learning starts), "
        "the two agree.",
        "",
        comparison_table(steps, runner, {s: z.returns for s, (_, z) in runs.items()}, seeds, means=False),
        "",
        "The runner's evaluations here beside its rows in the preset's CSV (the same code and seeds, run on the machine "
        "named in the next section):",
        "",
        comparison_table(steps, runner, committed, seeds, means=False, labels=("runner here", "runner's rows")),
    ]  # fmt: skip
    return "\n".join(lines)


def budget_section(
    preset_name: str,
    algo: str,
    setting: EnvSetting,
    seeds: Sequence[int],
    committed: dict[int, dict[int, float]],
    zoo: dict[int, ZooRun],
    zoo_logs: str,
    episodes: int,
) -> str:
    """
    The zoo's full runs beside the runner's committed rows and the published figures.

    :param committed: seed -> env steps -> the return of the runner's row in the preset's CSV
    :param zoo: seed -> the zoo's full run (:func:`find_zoo_runs`)
    :param zoo_logs: the log folder of the zoo's full runs
    :param episodes: deterministic episodes per evaluation
    """
    command = command_text(zoo_command(algo, setting, setting.budget, 0, episodes, zoo_logs))
    zoo_returns = {s: zoo_run.returns for s, zoo_run in zoo.items()}
    folders = ", ".join(f"`{zoo[s].folder}` (seed {s})" for s in seeds if s in zoo)
    missing = [s for s in seeds if s not in zoo]
    machines = runner_machines(BENCHMARKS / preset_name / "machine.txt", algo)
    lines = [
        f"## At the budget: the zoo's full runs beside the runner's rows, {setting.budget:,} env steps",
        "",
        f"Zoo: `{command.replace('--seed 0', '--seed SEED')}`, run on the machine above: {folders or 'none found'}"
        + (f"; no full run of {seeds_text(missing)}" if missing else "")
        + f". Runner: the rows of [{preset_name}.csv](../../{preset_name}/{preset_name}.csv), run on "
        + (" and ".join(f"`{m}`" for m in machines) or "a machine not recorded")
        + f" ([machine.txt](../../{preset_name}/machine.txt)). Mean return of {episodes} deterministic episodes; mean ± "
        "std over the seeds that have both.",
        "",
        comparison_table(report_steps(setting.budget), committed, zoo_returns, seeds),
        "",
        "| run set | seeds | return at the budget | how it differs from the zoo's command |",
        "|---|---|---:|---|",
    ]
    for name, returns in (("runner's rows", committed), ("zoo's own command, the machine above", zoo_returns)):
        ran = [s for s in seeds if setting.budget in returns.get(s, {})]
        if ran:
            final = mean_std_text([returns[s][setting.budget] for s in ran])
            lines.append(f"| {name} | {', '.join(map(str, ran))} | {final} | |")
    for row in published_rows(setting.env_id, setting.budget):
        if row.algo == algo:
            returns_text = f"{row.mean:.0f} ± {row.std:.0f}"
            lines.append(f"| published, [{row.source}]({row.url}) | {row.seeds} of theirs | {returns_text} | {row.note} |")
    return "\n".join(lines)


def first_difference(ours: dict[int, float], theirs: dict[int, float], tolerance: float = 1e-3) -> int | None:
    """
    The first env steps at which two runs' evaluations differ, among those both have; None if none does.

    :param tolerance: the largest difference that counts as equal (the CSV and the zoo's Monitor round returns)
    """
    return next((step for step in sorted(ours.keys() & theirs.keys()) if abs(ours[step] - theirs[step]) > tolerance), None)


def findings(
    runs: dict[int, tuple[ShortRun, ShortRun]],
    committed: dict[int, dict[int, float]],
    zoo: dict[int, ZooRun],
    budget: int,
    learning_starts: int | None,
) -> str:
    """
    What the tables show, in a few plain sentences computed from them.

    :param runs: seed -> the runner's and the zoo's short run
    :param committed: seed -> env steps -> the return of the runner's row in the preset's CSV
    :param zoo: seed -> the zoo's full run
    :param budget: the preset's env-step budget
    :param learning_starts: the env steps before the first gradient step (None: not an off-policy algorithm)
    """
    same = [s for s, (r, z) in runs.items() if r.weights == z.weights]
    differ = [s for s in runs if s not in same]
    if differ:
        return (
            f"The runner and the zoo's own command train different weights on {seeds_text(differ)}: the runner's job "
            "is not the zoo's there."
        )
    text = [f"The runner and the zoo's own command train the same weights, to the last bit, on {seeds_text(same)}."]
    firsts = {s: first_difference(runs[s][0].returns, committed.get(s, {})) for s in runs}
    parted = {s: step for s, step in firsts.items() if step is not None}
    if parted:
        starts = f" (learning starts after {learning_starts:,})" if learning_starts is not None else ""
        text.append(
            "Run here, the runner's evaluations equal its committed rows and then part from them, first at "
            + ", ".join(f"{step:,} env steps on seed {s}" for s, step in parted.items())
            + f"{starts}: trained by the same code from the same seeds, the committed rows followed another "
            "floating-point path from there."
        )
    both = [s for s in runs if s in zoo and budget in committed.get(s, {})]
    if both:
        gaps = {s: zoo[s].returns[budget] - committed[s][budget] for s in both}
        widest = max(gaps, key=lambda s: abs(gaps[s]))
        text.append(
            f"At the budget the zoo's runs here return {mean_std_text([zoo[s].returns[budget] for s in both])} and the "
            f"runner's rows {mean_std_text([committed[s][budget] for s in both])} on the same {seeds_text(both)}; the "
            "zoo's minus the runner's is "
            + ", ".join(f"{gaps[s]:+.0f} on seed {s}" for s in both)
            + f", up to {abs(gaps[widest]):.0f} on one seed. As the two train the same weights on one machine, these "
            "gaps are not the runner's doing: they are the floating-point path of each set of runs, and the start "
            "states of the evaluations (the runner's evaluation at k env steps runs those of the zoo's one evaluation "
            "later)."
        )
    return " ".join(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(run.PRESETS), default="halfcheetah-100k")
    parser.add_argument("--algo", default="sac", help="one of the preset's algorithms other than PolyGRAD")
    parser.add_argument("--seeds", nargs="+", type=int, help="default: the preset's")
    parser.add_argument("--steps", type=int, default=15_000, help="env steps of the short runs trained both ways")
    parser.add_argument("--zoo-logs", default="logs", help="the zoo's log folder of the full runs")
    args = parser.parse_args()
    preset = run.PRESETS[args.preset]
    if args.algo not in preset.algos or args.algo == "polygrad":
        parser.error(f"--algo must be one of the preset's zoo algorithms, {[a for a in preset.algos if a != 'polygrad']}")
    if preset.hyperparam_overrides or preset.device != "cpu":
        parser.error(f"{args.preset} changes the zoo's entries or device, so the zoo's own command is not its job")
    if th.cuda.is_available():
        parser.error("a GPU is visible: the zoo's --device auto would train on it, the runner on the CPU")
    if len(preset.envs) != 1:
        parser.error(f"{args.preset} has several envs; the diagnostic compares one")
    (setting,) = preset.envs
    seeds = args.seeds or list(preset.seeds)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    th.set_num_threads(1)

    short = dataclasses.replace(setting, budget=args.steps)
    runs: dict[int, tuple[ShortRun, ShortRun]] = {}
    for seed in seeds:
        with tempfile.TemporaryDirectory(prefix="zoo_agreement_") as tmp:
            runner, setup = train_with_runner(preset, args.algo, short, seed, Path(tmp) / "runner")
            zoo = train_with_zoo(args.algo, short, args.steps, seed, preset.n_eval_episodes, Path(tmp) / "zoo")
        runs[seed] = (runner, zoo)
        print(f"seed {seed}: runner {runner.weights[:16]}, zoo {zoo.weights[:16]}", flush=True)

    committed = committed_returns(BENCHMARKS / args.preset / f"{args.preset}.csv", args.algo, setting.env_id)
    zoo_runs = find_zoo_runs(Path(args.zoo_logs), args.algo, setting, preset.n_eval_episodes)
    options = ["--preset", args.preset, "--algo", args.algo, "--seeds", *map(str, seeds), "--steps", str(args.steps)]
    command = shlex.join(["python", "-m", "benchmarks.diagnostics.zoo_agreement", *options, "--zoo-logs", args.zoo_logs])
    entry = {k: v for k, v in preset.hyperparams(args.algo, setting.env_id).items() if k != "n_timesteps"}
    text = "\n".join([
        f"# The runner's {args.algo} against the RL Zoo's own command on {setting.env_id}",
        "",
        f"Command: `{command}`.",
        "",
        f"Machine: {describe_machine()}.",
        "",
        f"Both train the zoo's entry for {setting.env_id}, `{entry}` (its budget aside; SB3's defaults otherwise), as "
        f"the runner builds it: {setup}.",
        "",
        short_runs_section(preset, args.algo, short, seeds, runs, committed),
        "",
        budget_section(args.preset, args.algo, setting, seeds, committed, zoo_runs, args.zoo_logs,
                       preset.n_eval_episodes),
        "",
        "## What they show",
        "",
        findings(runs, committed, zoo_runs, setting.budget, entry.get("learning_starts")),
    ])  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.preset}_{args.algo}.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
