"""
RL Zoo integration, exercised through the real install (subprocesses, CleanRL style): the unchanged
``python -m rl_zoo3.train/enjoy --algo polygrad`` commands, checkpoints, ``-optimize`` with a shared study, the
``python -m sb3_polygrad.train`` wrapper and the start-up hook's cost and safety.

Needs the package installed (``pip install -e .``) after ``setup.py`` gained the ``.pth`` hook.
"""

import inspect
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
import yaml

import sb3_polygrad
from sb3_polygrad import PolyGRAD
from sb3_polygrad.zoo.optimize import convert_polygrad_params, sample_polygrad_params
from sb3_polygrad.zoo.registration import hyperparams_path

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIR = Path(sb3_polygrad.__file__).parent
HOOK_FILE = PACKAGE_DIR / "zoo" / "_hook.py"
HEAVY_MODULES = ["torch", "stable_baselines3", "rl_zoo3", "sb3_polygrad", "optuna", "gymnasium", "numpy"]
# -params overrides on top of the packaged YAML entry: a model that trains a few hundred steps in seconds.
TINY_PARAMS = [
    "learning_starts:100",
    "world_model_warmup:20",
    "batch_size:16",
    "imagination_batch_size:64",
    "horizon:4",
    "n_diffusion_steps:8",
    "n_sampling_steps:None",
    "world_model_kwargs:dict(denoiser_kwargs=dict(hidden_dim=16,num_layers=1,embed_dim=16))",
    "policy_kwargs:dict(net_arch=[16])",
]
QUIET = ["--eval-freq", "-1", "--num-threads", "1", "--seed", "0", "--log-interval", "-2"]


def run_python(args: list[str], cwd: Path, env_vars: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``python <args>`` in ``cwd`` on one thread and fail with its output if it fails."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_vars or {})}
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def startup_report(cwd: Path, code: str = "", env_vars: dict[str, str] | None = None, flags: tuple = ()) -> dict:
    """What a fresh interpreter holds after start-up (and after ``code``): heavy modules and zoo finders."""
    report = (
        f"import json, sys\n{code}\n"
        f"print(json.dumps({{'heavy': sorted(set({HEAVY_MODULES!r}) & set(sys.modules)), "
        "'finders': sum(getattr(f, 'is_sb3_polygrad_zoo_finder', False) for f in sys.meta_path)}))"
    )
    return json.loads(run_python([*flags, "-c", report], cwd, env_vars).stdout.splitlines()[-1])


# ----- start-up hook ---------------------------------------------------------------------------------------------------


def test_startup_hook_is_installed_and_imports_nothing_heavy(tmp_path):
    report = startup_report(tmp_path)
    assert report["finders"] == 1, "sb3_polygrad_zoo.pth is not active: reinstall the package (pip install -e .)"
    assert report["heavy"] == []


def test_hook_file_alone_imports_only_the_standard_library(tmp_path):
    # -S: no site-packages, no .pth; the hook is loaded by path exactly as the .pth line does, then installed.
    load = (
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('hook', {str(HOOK_FILE)!r})\n"
        "hook = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(hook)\n"
        "hook.install()\n"
        "hook.install()  # idempotent\n"
    )
    report = startup_report(tmp_path, load, flags=("-S",))
    assert report == {"heavy": [], "finders": 1}


def test_opt_out_variable_disables_the_hook(tmp_path):
    assert startup_report(tmp_path, env_vars={"SB3_POLYGRAD_NO_ZOO_HOOK": "1"})["finders"] == 0


def test_broken_registration_only_warns_and_the_zoo_keeps_working(tmp_path):
    # Simulate a broken registration: the module the hook imports cannot be imported.
    code = (
        "import sys\n"
        "sys.modules['sb3_polygrad.zoo.registration'] = None\n"
        "from rl_zoo3 import ALGOS\n"
        "assert 'ppo' in ALGOS and 'polygrad' not in ALGOS\n"
    )
    result = run_python(["-c", code], tmp_path)
    assert "sb3-polygrad could not register 'polygrad' with rl_zoo3.utils" in result.stderr


# ----- hyperparameters -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("entries, name", [("paper", "polygrad.yml"), ("cpu", "polygrad_cpu.yml")])
def test_packaged_yaml_is_the_top_level_file(entries, name):
    """One source: each packaged file is the top-level one in ``hyperparams/`` (a symlink in the checkout)."""
    top_level = REPO / "hyperparams" / name
    assert hyperparams_path(entries).read_bytes() == top_level.read_bytes()
    if hyperparams_path(entries).parent == REPO / "sb3_polygrad" / "zoo":  # editable install: the checkout itself
        assert hyperparams_path(entries).resolve() == top_level.resolve()


def test_yaml_has_the_paper_and_cpu_entries():
    config = yaml.safe_load(hyperparams_path().read_text())
    for version in ("v4", "v5"):
        # The paper's Hopper settings, with imagination strided to 32 of 128 steps
        # (benchmarks/diagnostics/strided_sampling.py).
        hopper = {"n_timesteps": 1e6, "policy": "MlpPolicy", "noise_schedule_tau": 0.1, "n_sampling_steps": 32}
        assert config[f"Hopper-{version}"] == hopper
        for env in ("Walker2d", "HalfCheetah"):
            assert config[f"{env}-{version}"] == {"n_timesteps": 1.5e6, "policy": "MlpPolicy"}
    # One CPU-sized configuration; InvertedPendulum adds closed-loop imagination to it, with the options it takes.
    cpu = config["InvertedDoublePendulum-v4"]
    for env in ("InvertedDoublePendulum-v5", "Pendulum-v1"):
        assert config[env] == cpu
    closed_loop = dict(
        denoiser="causal_mlp",
        imagination="closed_loop",
        imagination_kwargs=dict(row_lag=2.0, state_change_clip_steps=cpu["imagination_kwargs"]["state_change_clip_steps"]),
        n_sampling_steps=None,
    )
    for version in ("v4", "v5"):
        assert config[f"InvertedPendulum-{version}"] == {**cpu, **closed_loop}
    assert cpu["n_timesteps"] == 20000 and cpu["n_sampling_steps"] == 16


def test_cpu_file_has_cpu_sized_locomotion_entries_and_loads_as_a_conf_module():
    from sb3_polygrad.zoo import cpu

    assert cpu.hyperparams == yaml.safe_load(hyperparams_path("cpu").read_text())
    paper = yaml.safe_load(hyperparams_path().read_text())
    for version in ("v4", "v5"):
        hopper = cpu.hyperparams[f"Hopper-{version}"]
        assert hopper["n_timesteps"] == 100_000 and hopper["imagination"] == "closed_loop"
        assert hopper["noise_schedule_tau"] == paper[f"Hopper-{version}"]["noise_schedule_tau"]  # the paper's schedule
        assert hopper["world_model_kwargs"]["denoiser_kwargs"]["hidden_dim"] == 256  # not the paper's 1024x6
        learner = hopper["actor_critic_kwargs"]
        assert (hopper["gamma"], learner["reward_scale"]) == (0.999, 0.1)  # the zoo's PPO Hopper discount
        # One learner: Walker2d and HalfCheetah take every key of Hopper's entry except the world model's noise
        # schedule and the settings of how cheaply imagination and the world model train.
        cheap_training = {"noise_schedule_tau", "n_sampling_steps", "gradient_steps", "batch_size"}
        for env in ("Walker2d", "HalfCheetah"):
            entry = cpu.hyperparams[f"{env}-{version}"]
            assert entry.keys() == hopper.keys(), env
            differ = {key for key in hopper if entry[key] != hopper[key]}
            assert differ <= cheap_training | {"imagination_kwargs"}, (env, differ)
            imagination = {
                key
                for key in hopper["imagination_kwargs"]
                if entry["imagination_kwargs"][key] != hopper["imagination_kwargs"][key]
            }
            assert imagination <= {"row_lag"}, (env, imagination)


def test_every_yaml_key_reaches_the_constructor(tmp_path):
    """The zoo's own preprocessing of each entry gives keyword arguments that PolyGRAD's constructor accepts."""
    code = textwrap.dedent(
        """
        import argparse, inspect, yaml
        from rl_zoo3.exp_manager import ExperimentManager
        from sb3_polygrad import PolyGRAD
        from sb3_polygrad.zoo.registration import hyperparams_path, register

        register()
        signature = inspect.signature(PolyGRAD)
        # The packaged default, and the CPU entries as `-conf sb3_polygrad.zoo.cpu` gives them
        entries = [(None, "paper"), ("sb3_polygrad.zoo.cpu", "cpu")]
        for config, name in entries:
            for env_id in yaml.safe_load(hyperparams_path(name).read_text()):
                manager = ExperimentManager(argparse.Namespace(), "polygrad", env_id, "logs", verbose=0, config=config)
                # The zoo's own conversion (schedules, policy_kwargs strings, removal of its keys), as setup_experiment
                # runs it.
                kwargs = manager._preprocess_hyperparams(manager.read_hyperparameters()[0])[0]
                bound = signature.bind(env=None, **kwargs).arguments
                assert callable(bound.get("learning_rate", print)), "the zoo turns learning rates into schedules"
                dicts = ["policy_kwargs", "world_model_kwargs", "imagination_kwargs", "actor_critic_kwargs"]
                assert all(isinstance(bound.get(key, {}), dict) for key in dicts)
                print("checked", name, env_id, bound.get("imagination", "guided"))
        """
    )
    printed = run_python(["-c", code], tmp_path).stdout
    assert "checked paper Pendulum-v1 guided" in printed and "checked paper HalfCheetah-v5 guided" in printed
    assert "checked cpu Hopper-v4 closed_loop" in printed and "checked cpu HalfCheetah-v5 closed_loop" in printed


def test_sampler_gives_constructor_arguments_and_converter_restores_them():
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    sampled = sample_polygrad_params(trial, n_actions=1, n_envs=1, additional_args={})
    assert set(sampled) <= set(inspect.signature(PolyGRAD).parameters)
    assert convert_polygrad_params(trial.params) == sampled
    assert set(sampled["actor_critic_kwargs"]) == {"target_policy_update"}  # an actor-critic option, in its group


# ----- the zoo's commands ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """``python -m rl_zoo3.train --algo polygrad --env Hopper-v4`` for 300 steps, with a checkpoint and the replay buffer."""
    workdir = tmp_path_factory.mktemp("zoo")
    args = ["-m", "rl_zoo3.train", "--algo", "polygrad", "--env", "Hopper-v4", "-n", "300", *QUIET]
    result = run_python([*args, "--save-freq", "200", "--save-replay-buffer", "-params", *TINY_PARAMS], workdir)
    assert f"Loading hyperparameters from: {hyperparams_path()}" in result.stdout
    return workdir


def test_train_saves_model_checkpoint_and_buffer(trained):
    run_dir = trained / "logs" / "polygrad" / "Hopper-v4_1"
    for name in ["Hopper-v4.zip", "rl_model_200_steps.zip", "replay_buffer.pkl", "Hopper-v4/config.yml"]:
        assert (run_dir / name).is_file(), name
    # The zoo dumps an OrderedDict, which only the unsafe loader reads (as the zoo's enjoy does); this is our own file.
    config = yaml.load((run_dir / "Hopper-v4" / "config.yml").read_text(), Loader=yaml.UnsafeLoader)
    assert config["noise_schedule_tau"] == 0.1  # from the packaged Hopper entry, under the -params overrides
    assert config["horizon"] == 4


def test_enjoy(trained):
    args = ["-m", "rl_zoo3.enjoy", "--algo", "polygrad", "--env", "Hopper-v4", "-f", "logs/", "--no-render", "-n", "50"]
    result = run_python([*args, "--num-threads", "1"], trained)
    assert "Hopper-v4_1/Hopper-v4.zip" in result.stdout


def test_continue_from_checkpoint(trained):
    checkpoint = "logs/polygrad/Hopper-v4_1/rl_model_200_steps.zip"
    args = ["-m", "rl_zoo3.train", "--algo", "polygrad", "--env", "Hopper-v4", "-n", "200", *QUIET, "-i", checkpoint]
    result = run_python([*args, "-params", *TINY_PARAMS], trained)
    assert "Loading pretrained agent" in result.stdout and "Loading replay buffer" in result.stdout
    assert (trained / "logs" / "polygrad" / "Hopper-v4_2" / "Hopper-v4.zip").is_file()


def test_a_cpu_entry_trains_through_the_zoo_with_the_shared_learner(tmp_path):
    """Walker2d's CPU entry as ``-conf sb3_polygrad.zoo.cpu`` gives it, at tiny sizes: the learner's keys reach the model."""
    args = ["-m", "rl_zoo3.train", "--algo", "polygrad", "--env", "Walker2d-v4", "-conf", "sb3_polygrad.zoo.cpu", *QUIET]
    run_python([*args, "-n", "300", "-params", *TINY_PARAMS], tmp_path)
    model = PolyGRAD.load(tmp_path / "logs" / "polygrad" / "Walker2d-v4_1" / "Walker2d-v4.zip", device="cpu")
    config = model.actor_critic_config()
    assert (model.gamma, config.reward_scale, model.tau) == (0.999, 0.1, 0.02)
    assert model.imagination_kwargs == dict(
        row_lag=2.0, state_change_clip_steps=11, start_window=5000, terminations="env_rule"
    )
    assert config.action_std_schedule == (1.0, 0.3)  # the YAML list, as a tuple
    # moved along the schedule to the end of the 300-step budget, a training call or two behind
    assert model.actor.std().mean().item() == pytest.approx(0.31, abs=0.011)


def test_wrapper_entry_without_the_hook(tmp_path):
    args = ["-m", "sb3_polygrad.train", "--algo", "polygrad", "--env", "Pendulum-v1", "-n", "200", *QUIET]
    run_python([*args, "-params", *TINY_PARAMS], tmp_path, {"SB3_POLYGRAD_NO_ZOO_HOOK": "1"})
    assert (tmp_path / "logs" / "polygrad" / "Pendulum-v1_1" / "Pendulum-v1.zip").is_file()


def test_two_optimization_workers_share_one_study(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    # Created once beforehand, as in docs/rl_zoo.md's recipe: concurrent creation of a fresh database can race.
    optuna.create_study(storage=storage, study_name="polygrad", direction="maximize")
    args = ["-m", "rl_zoo3.train", "--algo", "polygrad", "--env", "Pendulum-v1", "-n", "200", "--num-threads", "1"]
    args += ["-optimize", "--n-trials", "2", "--n-jobs", "1", "--n-evaluations", "1", "--eval-episodes", "1"]
    args += ["--sampler", "random", "--pruner", "none", "--no-optim-plots", "--storage", storage, "--study-name", "polygrad"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    workers = [
        subprocess.Popen(
            [sys.executable, *args, "--seed", str(seed), "-params", *TINY_PARAMS],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for seed in (1, 2)
    ]
    for worker in workers:
        output, _ = worker.communicate(timeout=300)
        assert worker.returncode == 0, output[-3000:]
    trials = optuna.load_study(storage=storage, study_name="polygrad").trials
    assert [trial.state for trial in trials] == [optuna.trial.TrialState.COMPLETE] * 4
    assert all(set(trial.params) == set(trials[0].params) and "horizon" in trial.params for trial in trials)
