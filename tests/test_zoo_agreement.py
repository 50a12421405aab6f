"""The parts of benchmarks.diagnostics.zoo_agreement that train nothing: reading the zoo's runs and the runner's rows, and
the tables and sentences made from them."""

import copy
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch as th
import yaml

from benchmarks.csv_rows import write_rows
from benchmarks.diagnostics import zoo_agreement
from benchmarks.presets import EnvSetting
from benchmarks.run import FIELDS

SETTING = EnvSetting("HalfCheetah-v4", 20_000, 5_000, 0.0)


def zoo_run(log_folder, run_id, seed, returns, **changed_args):
    """
    A run folder as ``rl_zoo3.train`` writes one: its arguments dumped as an ``OrderedDict`` in ``<env>/args.yml``, and
    ``EvalCallback``'s ``evaluations.npz`` with two episodes per evaluation, every 5,000 env steps.

    :param returns: the mean return of each evaluation
    :param changed_args: arguments that differ from the diagnostic's command
    """
    folder = log_folder / "sac" / f"HalfCheetah-v4_{run_id}"
    (folder / "HalfCheetah-v4").mkdir(parents=True)
    args = dict(algo="sac", env="HalfCheetah-v4", n_timesteps=20_000, eval_freq=5_000, eval_episodes=2, num_threads=1,
                hyperparams=None, conf_file=None, seed=seed, device="auto", log_folder=str(log_folder))  # fmt: skip
    args |= changed_args
    (folder / "HalfCheetah-v4" / "args.yml").write_text(yaml.dump(OrderedDict(sorted(args.items()))))
    results = np.array([[r - 1.0, r + 1.0] for r in returns])
    timesteps = 5_000 * np.arange(1, len(returns) + 1)
    np.savez(folder / "evaluations.npz", timesteps=timesteps, results=results, ep_lengths=np.full(results.shape, 1000))
    return folder


def test_zoo_args_are_read_without_loading_python_objects(tmp_path):
    folder = zoo_run(tmp_path, 1, 3, [1.0])
    text = (folder / "HalfCheetah-v4" / "args.yml").read_text()
    assert text.startswith("!!python/object/apply:collections.OrderedDict")  # as the zoo writes it
    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.safe_load(text)
    assert zoo_agreement.read_zoo_args(folder / "HalfCheetah-v4" / "args.yml")["seed"] == 3


def test_full_runs_are_matched_by_seed_from_their_args(tmp_path):
    zoo_run(tmp_path, 1, 0, [1, 2, 3, 4])
    zoo_run(tmp_path, 2, 1, [1, 2])  # not finished
    zoo_run(tmp_path, 3, 2, [1, 2, 3, 4], eval_episodes=5)  # another command
    zoo_run(tmp_path, 4, 2, [1, 2, 3, 4], hyperparams={"learning_rate": 1e-3})  # other hyperparameters
    zoo_run(tmp_path, 10, 0, [10, 20, 30, 40])  # seed 0 again, later than run 4 although "_10" < "_4" as text
    runs = zoo_agreement.find_zoo_runs(tmp_path, "sac", SETTING, episodes=2)
    assert sorted(runs) == [0]
    assert runs[0].folder.name == "HalfCheetah-v4_10"
    assert runs[0].returns == {5_000: 10.0, 10_000: 20.0, 15_000: 30.0, 20_000: 40.0}


def test_runner_rows_and_zoo_returns_side_by_side(tmp_path):
    rows = [dict(algo=algo, env="HalfCheetah-v4", seed=seed, env_steps=steps, eval_return=ret, eval_return_std=0,
                 wall_clock_s=0, diagnostics="{}")
            for algo, seed, steps, ret in [("sac", 0, 10_000, 1), ("sac", 0, 20_000, 100), ("sac", 1, 20_000, 300),
                                           ("ppo", 0, 20_000, -5)]]  # fmt: skip
    write_rows(tmp_path / "preset.csv", rows, FIELDS)
    runner = zoo_agreement.committed_returns(tmp_path / "preset.csv", "sac", "HalfCheetah-v4")
    assert runner == {0: {10_000: 1.0, 20_000: 100.0}, 1: {20_000: 300.0}}
    zoo = {0: {10_000: 2.0, 20_000: 110.0}, 1: {10_000: 4.0, 20_000: 290.0}}

    table = zoo_agreement.comparison_table([10_000, 20_000], runner, zoo, [0, 1]).splitlines()
    assert table[0] == "| env steps | seed 0: runner | seed 0: zoo | seed 1: runner | seed 1: zoo | runner | zoo |"
    assert table[2] == "| 10,000 | 1.0 | 2.0 | — | 4.0 | 1 | 2 |"  # the means of seed 0 alone, which has both
    assert table[3] == "| 20,000 | 100.0 | 110.0 | 300.0 | 290.0 | 200 ± 100 | 200 ± 90 |"
    plain = zoo_agreement.comparison_table([20_000], runner, zoo, [0, 1], means=False, labels=("here", "rows"))
    assert plain.splitlines()[0] == "| env steps | seed 0: here | seed 0: rows | seed 1: here | seed 1: rows |"
    assert plain.splitlines()[2] == "| 20,000 | 100.0 | 110.0 | 300.0 | 290.0 |"


def test_report_steps_are_each_10k_and_the_budget():
    assert zoo_agreement.report_steps(25_000) == [10_000, 20_000, 25_000]
    assert zoo_agreement.report_steps(100_000)[-2:] == [90_000, 100_000]


def test_parameter_hash_sees_one_bit():
    policy = th.nn.Linear(3, 2)
    same = copy.deepcopy(policy)
    assert zoo_agreement.parameter_hash(policy) == zoo_agreement.parameter_hash(same)
    with th.no_grad():
        same.bias[0] = th.nextafter(same.bias[0], th.tensor(np.inf))
    assert zoo_agreement.parameter_hash(policy) != zoo_agreement.parameter_hash(same)


def test_runner_machines_are_those_of_the_invocations_that_ran_the_algorithm(tmp_path):
    machine = "Linux-x; 2 CPU cores; python 3.11.7"
    (tmp_path / "machine.txt").write_text(
        "A note on what shared the machine.\n"
        f"{machine}; algos ppo; local process pool of 1 workers\n"
        f"{machine}; algos ppo sac; local process pool of 2 workers\n"
        f"Linux-y; 2 CPU cores; python 3.11.7; algos sac; local process pool of 1 workers\n"
        "Linux-z; 2 CPU cores; python 3.11.7; algos polygrad[sac-like]; local process pool of 1 workers\n"
    )
    assert zoo_agreement.runner_machines(tmp_path / "machine.txt", "sac") == [machine, "Linux-y; 2 CPU cores; python 3.11.7"]


def test_first_difference_is_the_first_shared_evaluation_past_the_rounding():
    ours = {0: -0.8778651, 5_000: -1.2295419, 10_000: -6.754}
    assert zoo_agreement.first_difference(ours, {0: -0.8778649, 5_000: -1.2295419, 15_000: 9.7}) is None
    assert zoo_agreement.first_difference(ours, {0: -0.8778649, 5_000: -1.2295419, 10_000: 9.685}) == 10_000


def test_findings_follow_the_tables():
    returns = {0: 1.0, 5_000: 2.0, 10_000: 3.0}
    same, other = zoo_agreement.ShortRun("a" * 64, returns), zoo_agreement.ShortRun("b" * 64, returns)
    committed = {0: {0: 1.0, 5_000: 2.0, 10_000: 3.5, 20_000: 100.0}, 1: {**returns, 20_000: 300.0}}
    zoo = {s: zoo_agreement.ZooRun(Path(str(s)), {20_000: final}) for s, final in [(0, 110.0), (1, 100.0)]}
    text = zoo_agreement.findings({0: (same, same), 1: (same, same)}, committed, zoo, 20_000, 5_000)
    assert "same weights, to the last bit, on seeds 0 and 1" in text
    assert "first at 10,000 env steps on seed 0 (learning starts after 5,000):" in text  # seed 1 follows its rows
    assert "+10 on seed 0, -200 on seed 1, up to 200 on one seed" in text
    assert "not the runner's doing" in text
    text = zoo_agreement.findings({0: (same, same), 1: (same, other)}, committed, zoo, 20_000, 5_000)
    assert text.startswith("The runner and the zoo's own command train different weights on seed 1:")
    assert "At the budget" not in text  # the runs are not the same job, so their gaps say nothing of the machine
