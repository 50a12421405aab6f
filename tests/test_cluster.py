"""
Beyond one machine (docs/cluster.md): ``benchmarks.run --backend ray`` on a local Ray instance, and the README's
multi-machine ``-optimize`` recipe on a real PostgreSQL server.
"""

import csv
import json
import os
import re
import subprocess
import sys
import uuid

import optuna
import pytest
import yaml
from test_zoo import QUIET, TINY_PARAMS, run_python

from benchmarks import backends, run


def tiny_preset(tiny_kwargs: dict) -> run.Preset:
    """PolyGRAD on Pendulum-v1 for 300 env steps, evaluated on one episode at 0, 150 and 300 steps, seeds 0 and 1."""
    # n_sampling_steps and the state clip of the zoo's CPU entry do not fit the tiny 8-step diffusion.
    overrides = {**tiny_kwargs, "n_sampling_steps": None, "imagination_kwargs": {"state_change_clip_steps": None}}
    return run.Preset(
        envs=(run.EnvSetting("Pendulum-v1", 300, 150, -1000.0),),
        algos=("polygrad",),
        seeds=(0, 1),
        n_eval_episodes=1,
        hyperparam_overrides=overrides,
    )


def run_preset(monkeypatch, results, preset: run.Preset, *args: str) -> list[dict[str, str]]:
    """``python -m benchmarks.run --preset tiny <args>`` into ``results``; its merged CSV's rows."""
    monkeypatch.setattr(run, "RESULTS", results)
    monkeypatch.setitem(run.PRESETS, "tiny", preset)
    run.main(["--preset", "tiny", "--workers", "2", *args])
    with (results / "tiny" / "tiny.csv").open() as f:
        return list(csv.DictReader(f))


def test_ray_backend_gives_the_rows_of_the_process_pool(tmp_path, monkeypatch, tiny_kwargs):
    pytest.importorskip("ray", reason="Ray is the optional 'cluster' extra")
    preset = tiny_preset(tiny_kwargs)
    # --workers 2 without --address: the backend starts a local Ray instance of 2 CPUs (ray.init(num_cpus=2)).
    on_ray = run_preset(monkeypatch, tmp_path / "ray", preset, "--backend", "ray")
    in_pool = run_preset(monkeypatch, tmp_path / "pool", preset)
    assert [row["seed"] for row in on_ray] == ["0"] * 3 + ["1"] * 3
    assert [row["env_steps"] for row in on_ray] == ["0", "150", "300"] * 2

    def without_wall_clock(rows: list[dict[str, str]]) -> list[dict[str, str]]:
        return [{key: value for key, value in row.items() if key != "wall_clock_s"} for row in rows]

    assert without_wall_clock(on_ray) == without_wall_clock(in_pool)
    # PolyGRAD's imagination figures and its policy's std ride along with each evaluation, from the first imagination on;
    # its sampled actions' evaluation with every evaluation
    assert set(json.loads(in_pool[0]["diagnostics"])) == {"eval/sampled_return"}
    expected = {"eval/sampled_return", "train/imagined_action_std", "train/imagined_action_bias", "train/std"}
    assert set(json.loads(in_pool[-1]["diagnostics"])) >= expected
    assert "local Ray instance of 2 CPUs" in (tmp_path / "ray" / "tiny" / "machine.txt").read_text()


def fails_on_seed_1(
    preset: run.Preset, algo: str, setting: run.EnvSetting, seed: int, checkpoint=None, evaluations=None
) -> list[dict]:
    """A stand-in for run_job (module level, so that the pool pickles it): one evaluation row, or an error for seed 1."""
    if seed == 1:
        raise RuntimeError("diverged")
    return [
        dict(algo=algo, env=setting.env_id, seed=seed, env_steps=0, eval_return=1.0, eval_return_std=0.0, wall_clock_s=0.0)
    ]


def test_a_failed_job_is_reported_and_the_others_are_saved(tmp_path, monkeypatch, capsys, tiny_kwargs):
    monkeypatch.setattr(run, "run_job", fails_on_seed_1)
    with pytest.raises(SystemExit, match=r"1 of 2 jobs failed \(polygrad Pendulum-v1 seed 1\)"):
        run_preset(monkeypatch, tmp_path, tiny_preset(tiny_kwargs))
    assert "RuntimeError: diverged" in capsys.readouterr().out  # with the traceback
    assert [path.name for path in (tmp_path / "tiny" / "runs").iterdir()] == ["polygrad_Pendulum-v1_0.csv"]


def test_ray_backend_without_ray_says_how_to_install_it(monkeypatch, capsys, tiny_kwargs):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    monkeypatch.setitem(run.PRESETS, "tiny", tiny_preset(tiny_kwargs))
    with pytest.raises(SystemExit):
        run.main(["--preset", "tiny", "--backend", "ray"])
    assert "pip install -e '.[cluster]'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "device, cluster_gpus, expected", [("cpu", 4, 0), ("auto", 0, 0), ("auto", 4, 1), ("cuda", 4, 1), ("cuda:1", 2, 1)]
)
def test_jobs_ask_for_a_gpu_where_the_preset_runs_on_one(device, cluster_gpus, expected):
    assert backends.gpus_per_job(device, cluster_gpus) == expected


def test_cuda_preset_on_a_cluster_without_gpus_fails_at_once():
    with pytest.raises(ValueError, match="no GPU"):
        backends.gpus_per_job("cuda", 0)


def require_postgres() -> str:
    """
    The SQLAlchemy URL of a PostgreSQL database for Optuna studies, from SB3_POLYGRAD_POSTGRES_URL (which ``.ci/run``
    sets after it starts a server), or a skip that says what is missing; CI sets SB3_POLYGRAD_REQUIRE_POSTGRES=1 to fail
    instead.
    """
    url = os.environ.get("SB3_POLYGRAD_POSTGRES_URL")
    missing = "" if url else "SB3_POLYGRAD_POSTGRES_URL is not set: no PostgreSQL server to test against (.ci/postgres)"
    try:
        import psycopg  # noqa: F401  # the driver that postgresql+psycopg:// URLs name
    except ImportError:
        missing = missing or "no PostgreSQL driver: pip install -e '.[cluster]'"
    if missing:
        if os.environ.get("SB3_POLYGRAD_REQUIRE_POSTGRES") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
    assert url is not None
    return url


def finished_trials(output: str) -> list[int]:
    """The numbers of the trials that Optuna reports finished in one worker's log."""
    return [int(number) for number in re.findall(r"Trial (\d+) finished", output)]


def test_two_optimize_workers_on_two_machines_share_one_postgresql_study(tmp_path):
    """The README's multi-machine recipe, with a tiny budget: each worker has its own directory, as on its own machine."""
    storage = require_postgres()
    study_name = f"polygrad-hopper-{uuid.uuid4().hex[:8]}"  # a fresh study in a database that outlives the test
    # `optuna create-study`: the optuna console script's entry point, run by this interpreter (a venv that uses the system's
    # site-packages has no script of its own)
    optuna_cli = [sys.executable, "-c", "import sys; from optuna.cli import main; sys.exit(main())"]
    study_args = ["--storage", storage, "--study-name", study_name]
    create = [*optuna_cli, "create-study", *study_args, "--direction", "maximize", "--skip-if-exists"]
    created = subprocess.run(create, capture_output=True, text=True, timeout=120)
    assert created.returncode == 0, f"storage {storage!r}: {created.stderr[-3000:]}"
    try:
        args = ["-m", "rl_zoo3.train", "--algo", "polygrad", "--env", "Hopper-v4", "-optimize", *study_args]
        args += ["--n-trials", "2", "--n-jobs", "1", "-n", "200", "--n-evaluations", "2", "--sampler", "tpe"]
        args += ["--pruner", "median", "--no-optim-plots", "--eval-episodes", "1", "--num-threads", "1"]
        machines = [tmp_path / "machine1", tmp_path / "machine2"]
        workers = []
        for seed, machine in enumerate(machines, start=1):
            machine.mkdir()
            command = [sys.executable, *args, "--seed", str(seed), "-params", *TINY_PARAMS]
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            workers.append(
                subprocess.Popen(command, cwd=machine, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            )
        outputs = []
        for worker in workers:
            output, _ = worker.communicate(timeout=600)
            assert worker.returncode == 0, output[-3000:]
            outputs.append(output)
        # Each worker ran its own two trials of the one study: four trials, two from each.
        first, second = (finished_trials(output) for output in outputs)
        assert len(first) == len(second) == 2 and sorted(first + second) == [0, 1, 2, 3]
        trials = optuna.load_study(storage=storage, study_name=study_name).trials
        assert [trial.state for trial in trials] == [optuna.trial.TrialState.COMPLETE] * 4
        # The recipe's last step, on a third machine: train with a finished trial's hyperparameters.
        run_python(["-m", "rl_zoo3.train", "--algo", "polygrad", "--env", "Hopper-v4", *study_args, "--trial-id", "3",
                    "-n", "200", *QUIET, "-params", *TINY_PARAMS], tmp_path)  # fmt: skip
        config = yaml.load((tmp_path / "logs/polygrad/Hopper-v4_1/Hopper-v4/config.yml").read_text(), Loader=yaml.UnsafeLoader)
        assert config["learning_rate"] == trials[3].params["learning_rate"]
    finally:
        optuna.delete_study(storage=storage, study_name=study_name)
