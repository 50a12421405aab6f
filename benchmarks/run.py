"""
Side-by-side benchmark: PolyGRAD against SB3's PPO and SAC and sb3-contrib's TRPO, TQC and CrossQ, on the same envs,
budgets and seeds.

Each (algo, env, seed) job is built by the RL Zoo's own ``ExperimentManager`` from that algorithm's zoo hyperparameters
(PolyGRAD's from ``hyperparams/polygrad.yml``) with the preset's overrides, trained for the preset's env-step budget,
and evaluated every ``eval_freq`` env steps with the deterministic policy on a separate env. Jobs run in parallel
processes, or as the tasks of a Ray cluster (``--backend ray``, docs/cluster.md); each returns its rows, which this
process writes to the job's own CSV under ``benchmarks/results/<preset>/runs/``, then merges into the tidy
``benchmarks/results/<preset>/<preset>.csv``. That merged CSV is the record kept with the results: a job it holds counts
as finished, so an interrupted grid, or the same command in a fresh checkout, does not redo it. In a process pool, each
job also checkpoints itself at every evaluation (``benchmarks/checkpoints.py``), so a job that was killed continues
from its last evaluation on the next run on the same machine, and its evaluations so far are kept in
``benchmarks/results/<preset>/unfinished/``; the preset's ``machine.txt`` records which jobs resumed, and which started
again without their checkpoint. In a process pool, every (algo, env) of the grid is first built once, untrained: a job
whose hyperparameters the algorithm rejects stops the command before any job starts, with each such job's error.

    python -m benchmarks.run --preset quick --workers 2
    python -m benchmarks.run --preset paper --backend ray --address auto
    python -m benchmarks.run --preset hopper-100k --algos crossq --device cuda
    python -m benchmarks.report --preset quick

The benchmark presets are in ``presets.py``; the InvertedPendulum diagnostics, which run the same way, in
``diagnostics/ip_presets.py``.
"""

import argparse
import csv
import dataclasses
import json
import os
import shutil
import tempfile
import time
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from benchmarks.backends import LocalBackend, RayBackend
from benchmarks.checkpoints import JobCheckpoint
from benchmarks.csv_rows import write_rows
from benchmarks.diagnostics.ip_presets import DIAGNOSTIC_PRESETS
from benchmarks.machine import describe_machine
from benchmarks.presets import BENCHMARK_PRESETS, RESULTS, EnvSetting, Preset, split_variant

# diagnostics, as JSON: PolyGRAD's latest world-model and imagined-action figures and its policy's std at each evaluation;
# for every algorithm on a task that reports ``x_position``, where its evaluation episodes end ("{}" where there is none)
FIELDS = ["algo", "env", "seed", "env_steps", "eval_return", "eval_return_std", "wall_clock_s", "diagnostics"]
DIAGNOSTIC_PREFIXES = ("world_model/", "train/imagined_action_", "imagination/", "train/std")
# The benchmarks (benchmarks/presets.py), then the InvertedPendulum diagnostics (benchmarks/diagnostics/ip_presets.py).
PRESETS: dict[str, Preset] = {**BENCHMARK_PRESETS, **DIAGNOSTIC_PRESETS}


def job_csv(preset: str, algo: str, env_id: str, seed: int) -> Path:
    return RESULTS / preset / "runs" / f"{algo}_{env_id}_{seed}.csv"


def job_checkpoint(preset: str, algo: str, env_id: str, seed: int) -> Path:
    """The folder of a job's checkpoints, beside its CSV (removed once the CSV is written)."""
    return job_csv(preset, algo, env_id, seed).with_suffix(".ckpt")


def unfinished_csv(preset: str, algo: str, env_id: str, seed: int) -> Path:
    """The evaluations so far of a job that has checkpointed and not finished (removed once its CSV is written)."""
    return RESULTS / preset / "unfinished" / f"{algo}_{env_id}_{seed}.csv"


class FinalPositions:
    """
    An ``evaluate_policy`` callback that keeps where each evaluation episode ends along x (``info["x_position"]`` of
    MuJoCo's locomotion tasks). On Hopper and Walker2d a policy that stands through a 1,000-step episode earns about
    1,000 from the healthy reward alone, so a return near 1,000 does not tell standing from moving.
    """

    def __init__(self) -> None:
        self.positions: list[float] = []

    def __call__(self, local: dict[str, Any], _globals: dict[str, Any]) -> None:
        if local["done"] and "x_position" in local["info"]:
            self.positions.append(float(local["info"]["x_position"]))


def evaluate_deterministic(model: Any, env: Any, episodes: int, diagnostics: dict[str, float]) -> tuple[float, float]:
    """
    :param model: the model to evaluate
    :param env: its evaluation env
    :param episodes: how many episodes
    :param diagnostics: where the mean of where the episodes end along x is written, as ``eval/x_position``, on a task
        that reports it (:class:`FinalPositions`)
    :return: mean and std of the deterministic policy's return over the episodes
    """
    from stable_baselines3.common.evaluation import evaluate_policy  # in the job's process, as run_job's imports

    ends = FinalPositions()
    mean, std = evaluate_policy(model, env, episodes, deterministic=True, callback=ends)
    if ends.positions:
        diagnostics["eval/x_position"] = float(sum(ends.positions) / len(ends.positions))
    return float(mean), float(std)  # type: ignore[arg-type]  # floats: return_episode_rewards is False


def build_job(preset: Preset, algo: str, setting: EnvSetting, seed: int, log_folder: str) -> tuple[Any, Any]:
    """
    Build one job's model as the RL Zoo does, from its zoo entry with the preset's and the variant's overrides: a
    hyperparameter the algorithm rejects raises here, before any training.

    :param preset: the preset
    :param algo: an algorithm or ``polygrad[<label>]`` variant of the preset
    :param setting: one of the preset's envs
    :param seed: the seed
    :param log_folder: the zoo's log folder for the job
    :return: the zoo's ``ExperimentManager`` (its callbacks and env factory) and the untrained model
    """
    from rl_zoo3.exp_manager import ExperimentManager

    from sb3_polygrad.zoo.registration import register

    register()
    manager = ExperimentManager(
        argparse.Namespace(), split_variant(algo)[0], setting.env_id, log_folder, n_timesteps=setting.budget,
        eval_freq=-1, hyperparams=preset.hyperparams(algo, setting.env_id), seed=seed, verbose=0, device=preset.device,
        config=preset.zoo_config(algo), log_interval=-2,
    )  # fmt: skip
    setup = manager.setup_experiment()
    assert setup is not None
    return manager, setup[0]


def check_jobs(preset: Preset, todo: list["Job"]) -> list[str]:
    """
    Build each (algo, env) of the jobs once, untrained, so that hyperparameters the algorithm rejects are reported
    before any job runs rather than when their job's turn comes, possibly hours into a grid.

    :param preset: the preset
    :param todo: the jobs to run
    :return: one ``"<job>: <error>"`` line per (algo, env) that fails to build
    """
    errors = []
    for algo, setting in dict.fromkeys((job.algo, job.setting) for job in todo):
        log_folder = tempfile.mkdtemp(prefix=f"check_{algo}_")
        try:
            with warnings.catch_warnings():  # the job itself warns, where its output goes
                warnings.simplefilter("ignore")
                _, model = build_job(preset, algo, setting, 0, log_folder)
            model.env.close()
        except Exception as error:
            errors.append(f"{algo} {setting.env_id}: {type(error).__name__}: {error}")
        finally:
            shutil.rmtree(log_folder, ignore_errors=True)
    return errors


def run_job(
    preset: Preset,
    algo: str,
    setting: EnvSetting,
    seed: int,
    checkpoint: Path | None = None,
    evaluations: Path | None = None,
) -> list[dict[str, Any]]:
    """
    Train and evaluate one (algo, env, seed), in a worker process or a Ray task: nothing is written that the driver needs
    but the job's own checkpoints.

    :param preset: the preset itself, not its name: a Ray worker imports the shipped module, without the driver's changes
    :param algo: an algorithm or ``polygrad[<label>]`` variant of the preset
    :param setting: one of the preset's envs
    :param seed: the seed
    :param checkpoint: a folder for the job's checkpoints (benchmarks/checkpoints.py), written at every evaluation: the
        job continues from the latest one there, if any. None: no checkpoints
    :param evaluations: with ``checkpoint``, a CSV of the evaluation rows so far, rewritten at each checkpoint
    :return: one row of ``FIELDS`` per evaluation
    """
    import torch as th
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.logger import KVWriter
    from stable_baselines3.common.vec_env import sync_envs_normalization

    from sb3_polygrad.callbacks import WorldModelEvaluationCallback

    warnings.filterwarnings("ignore")
    th.set_num_threads(1)
    base_algo = split_variant(algo)[0]
    rows: list[dict[str, Any]] = []
    saver = JobCheckpoint(checkpoint, evaluations) if checkpoint is not None else None

    class LatestDiagnostics(KVWriter):
        """A logger output that keeps the last logged value of each diagnostic key (the logger clears its own at each
        dump, and PolyGRAD evaluates its world model less often than the benchmark evaluates the policy)."""

        def __init__(self) -> None:
            self.latest: dict[str, float] = {}

        def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
            self.latest |= {k: float(v) for k, v in key_values.items() if k.startswith(DIAGNOSTIC_PREFIXES)}

        def snapshot(self, logger: Any) -> str:
            """The latest values as JSON: the dumped ones, updated by those recorded since the last dump."""
            self.write(logger.name_to_value, {})
            return json.dumps(self.latest, sort_keys=True)

    class TimedEval(BaseCallback):
        """
        Deterministic evaluation every ``eval_freq`` env steps; wall-clock counts training time only. Each evaluation is
        followed by a checkpoint at the start of the next rollout, where the model has stored and trained on every
        transition it counts (during a step, SB3 calls the callback before it stores that step's transition).

        Where the task reports ``x_position``, the mean over the deterministic episodes of where each ends is logged as
        the diagnostic ``eval/x_position`` (:class:`FinalPositions`).

        With ``sampled_eval_env``, the policy's sampled actions are evaluated too, in that env, and logged as the
        diagnostic ``eval/sampled_return``: PolyGRAD's actor-critic learns the stochastic policy, and its mean action
        can fall where its samples do not. Its own env and a forked torch RNG leave the deterministic evaluations and
        training as they are without it.
        """

        def __init__(self, eval_env: Any, train_time: float, sampled_eval_env: Any | None = None) -> None:
            super().__init__()
            self.eval_env = eval_env
            self.sampled_eval_env = sampled_eval_env
            self.train_time = train_time
            self.diagnostics = LatestDiagnostics()
            self.checkpoint_due = False

        def _on_training_start(self) -> None:
            self.model.logger.output_formats.append(self.diagnostics)  # learn() has set up the model's logger
            self.tic = time.perf_counter()
            self.last_eval = rows[-1]["env_steps"] if rows else -1  # a resumed job has evaluated at its checkpoint
            if not rows:
                self.evaluate()

        def evaluate(self) -> None:
            self.train_time += time.perf_counter() - self.tic
            train_env = self.model.get_env()
            assert train_env is not None  # learn() runs with an env
            sync_envs_normalization(train_env, self.eval_env)
            mean, std = evaluate_deterministic(self.model, self.eval_env, preset.n_eval_episodes, self.diagnostics.latest)
            if self.sampled_eval_env is not None:
                sync_envs_normalization(train_env, self.sampled_eval_env)
                with th.random.fork_rng(devices=[]):
                    episodes = preset.n_eval_episodes
                    sampled, _ = evaluate_policy(self.model, self.sampled_eval_env, episodes, deterministic=False)
                self.diagnostics.latest["eval/sampled_return"] = float(sampled)  # type: ignore[arg-type]  # a float here
            rows.append(dict(algo=algo, env=setting.env_id, seed=seed, env_steps=self.num_timesteps,
                             eval_return=mean, eval_return_std=std, wall_clock_s=round(self.train_time, 2),
                             diagnostics=self.diagnostics.snapshot(self.model.logger)))  # fmt: skip
            self.last_eval = self.num_timesteps
            self.checkpoint_due = saver is not None and self.num_timesteps > 0  # at step 0 there is nothing to keep
            self.tic = time.perf_counter()

        def _on_rollout_start(self) -> None:
            if self.checkpoint_due:
                assert saver is not None
                self.train_time += time.perf_counter() - self.tic
                saver.save(self.model, rows, self.train_time)
                self.checkpoint_due = False
                self.tic = time.perf_counter()

        def _on_step(self) -> bool:
            if self.num_timesteps // setting.eval_freq > self.last_eval // setting.eval_freq:
                self.evaluate()
            return True

    log_folder = tempfile.mkdtemp(prefix=f"bench_{algo}_")
    try:
        manager, model = build_job(preset, algo, setting, seed, log_folder)
        resumed = saver.restore(model) if saver is not None else None
        train_time = 0.0
        if resumed is not None:
            model, rows[:], train_time = resumed
        sampled_eval_env = manager.create_envs(1, eval_env=True) if base_algo == "polygrad" else None
        manager.callbacks.append(TimedEval(manager.create_envs(1, eval_env=True), train_time, sampled_eval_env))
        # PolyGRAD's world model's open-loop error every 10k env steps: the world_model/* diagnostics of its rows
        manager.callbacks += [WorldModelEvaluationCallback(eval_freq=10_000)] if base_algo == "polygrad" else []
        # The zoo's manager.learn would count env steps from 0 again; a resumed model goes on from its own count. As
        # the zoo does for its log_interval -2, None turns SB3's periodic log dumps off (its signature says int).
        model.learn(setting.budget - model.num_timesteps, callback=manager.callbacks,
                    log_interval=None, reset_num_timesteps=False)  # type: ignore[arg-type]  # fmt: skip
        assert model.env is not None
        model.env.close()
        if sampled_eval_env is not None:
            sampled_eval_env.close()
    finally:
        shutil.rmtree(log_folder, ignore_errors=True)
    return rows


def save_job(preset_name: str, algo: str, env_id: str, seed: int, rows: list[dict[str, Any]]) -> str:
    """
    Write a finished job's rows to its CSV, atomically: a job counts as done only once its whole CSV is written.

    :param preset_name: the preset
    :param algo: the job's algorithm
    :param env_id: the job's env
    :param seed: the job's seed
    :param rows: what :func:`run_job` returned
    :return: a one-line summary
    """
    write_rows(job_csv(preset_name, algo, env_id, seed), rows, FIELDS)
    return f"{algo} {env_id} seed {seed}: final eval {rows[-1]['eval_return']:.1f} in {rows[-1]['wall_clock_s']:.0f} s"


class Job(NamedTuple):
    """The arguments of one :func:`run_job` call, in its order: what a backend runs (see its parameters)."""

    preset: Preset
    algo: str
    setting: EnvSetting
    seed: int
    checkpoint: Path | None = None
    evaluations: Path | None = None

    def __str__(self) -> str:
        return f"{self.algo} {self.setting.env_id} seed {self.seed}"


def jobs(preset: Preset, algos: list[str] | None, seeds: list[int] | None) -> Iterator[Job]:
    """Each job of ``preset``, or of the given subset of its algorithms and seeds, without checkpoints."""
    for setting in preset.envs:
        for seed in seeds or preset.seeds:
            for algo in algos or preset.job_algos():
                yield Job(preset, algo, setting, seed)


JobKey = tuple[str, str, int]  # algo, env, seed


def _rows_by_job(path: Path) -> dict[JobKey, list[dict[str, str]]]:
    jobs: dict[JobKey, list[dict[str, str]]] = {}
    with path.open() as f:
        for row in csv.DictReader(f):
            jobs.setdefault((row["algo"], row["env"], int(row["seed"])), []).append(row)
    return jobs


def finished_jobs(preset_name: str) -> dict[JobKey, list[dict[str, str]]]:
    """The rows of each finished job of a preset: those of its merged CSV, updated by the per-job CSVs not merged yet."""
    folder = RESULTS / preset_name
    merged = folder / f"{preset_name}.csv"
    jobs = _rows_by_job(merged) if merged.exists() else {}
    for path in sorted((folder / "runs").glob("*.csv")):
        jobs.update(_rows_by_job(path))
    return jobs


def merge(preset_name: str) -> Path:
    """
    Merge the per-job CSVs into the preset's tidy CSV, atomically. The jobs it already holds stay (the per-job CSVs are
    not kept with the results, so a fresh checkout has none); a per-job CSV replaces its job's rows.
    """
    out = RESULTS / preset_name / f"{preset_name}.csv"
    jobs = finished_jobs(preset_name)
    order = sorted(jobs, key=lambda key: job_csv(preset_name, *key).name)  # the per-job files' order
    write_rows(out, (row for key in order for row in jobs[key]), FIELDS)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    parser.add_argument("--algos", nargs="+", help="subset of the preset's algorithms (variants: 'polygrad[<label>]')")
    parser.add_argument("--seeds", nargs="+", type=int, help="subset of the preset's seeds")
    parser.add_argument("--workers", type=int, default=2, help="parallel processes, or the CPUs of a local Ray instance")
    parser.add_argument("--backend", choices=["local", "ray"], default="local", help="a process pool, or Ray tasks")
    parser.add_argument("--address", help="--backend ray: a running cluster ('auto', 'ray://HEAD:10001'); else a local one")
    parser.add_argument("--device", help="torch device of every job, instead of the preset's ('cuda', 'auto')")
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset]
    if args.device:
        preset = dataclasses.replace(preset, device=args.device)
    for algo in args.algos or ():
        try:
            preset.variant_overrides(algo)  # an unknown variant fails here, before any job starts, not in a worker
        except ValueError as error:
            parser.error(str(error))
    from tqdm import tqdm

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # Checkpoints need the driver and the job on one disk: with the local backend, a killed job continues from its last
    # evaluation; Ray's tasks may run on other machines, so there a killed job starts again (no checkpoint folder).
    local = args.backend == "local"
    finished = finished_jobs(args.preset)
    todo = [
        job._replace(
            checkpoint=job_checkpoint(args.preset, job.algo, job.setting.env_id, job.seed) if local else None,
            evaluations=unfinished_csv(args.preset, job.algo, job.setting.env_id, job.seed) if local else None,
        )
        for job in jobs(preset, args.algos, args.seeds)
        if (job.algo, job.setting.env_id, job.seed) not in finished
    ]

    # Ray's workers may differ from the driver (its device, its packages): there each job checks itself as it starts.
    errors = check_jobs(preset, todo) if local else []
    if errors:
        parser.error("these jobs cannot be built, so none was started:\n" + "\n".join(errors))

    def has_checkpoint(job: Job) -> bool:
        return job.checkpoint is not None and JobCheckpoint(job.checkpoint).latest() is not None

    resumed = [str(job) for job in todo if has_checkpoint(job)]
    # Evaluations kept from a run whose checkpoint is not on this machine: the job starts again, and its first
    # checkpoint replaces them.
    restarted = [str(job) for job in todo if job.evaluations and job.evaluations.exists() and not has_checkpoint(job)]
    backend: LocalBackend | RayBackend = LocalBackend(args.workers)
    if args.backend == "ray":
        try:
            backend = RayBackend(args.address, args.workers, preset.device)
        except ImportError as error:  # Ray is an optional extra
            parser.error(str(error))
    failed = []
    with backend:
        (RESULTS / args.preset).mkdir(parents=True, exist_ok=True)
        with (RESULTS / args.preset / "machine.txt").open("a") as f:  # one line per invocation of a resumed grid
            f.write(
                f"{describe_machine()}; algos {' '.join(args.algos or preset.job_algos())}; {backend.describe()}"
                + "".join(f"; {job} resumed from its checkpoint" for job in resumed)
                + "".join(f"; {job} started again, without its checkpoint" for job in restarted)
                + "\n"
            )
        print(f"{len(todo)} jobs to run ({args.preset}); finished jobs are skipped, killed ones resume: {resumed or 'none'}")
        if restarted:
            print(
                f"started again without their checkpoints: {restarted}; their evaluations so far in "
                f"{RESULTS / args.preset / 'unfinished'} are replaced from their first checkpoint on"
            )
        with tqdm(total=len(todo), desc=args.preset) as bar:
            for job, result in backend.results(run_job, todo):
                try:
                    rows = result()
                except Exception as error:  # the other jobs go on and are saved; this one reruns next time
                    failed.append(str(job))
                    bar.write(f"{failed[-1]} failed:\n{''.join(traceback.format_exception(error))}")
                else:
                    bar.write(save_job(args.preset, job.algo, job.setting.env_id, job.seed, rows))
                    if job.checkpoint is not None:
                        JobCheckpoint(job.checkpoint, job.evaluations).remove()
                bar.update()
    print(f"results: {merge(args.preset)}")
    if failed:
        raise SystemExit(f"{len(failed)} of {len(todo)} jobs failed ({', '.join(failed)}); run again to retry them")


if __name__ == "__main__":
    # main() of the importable module, not of __main__: Ray pickles the job function and the preset by reference to
    # their module, which a worker can import (a spawned process pool likewise).
    from benchmarks import run

    run.main()
