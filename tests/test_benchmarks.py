import csv
import dataclasses
import json

import numpy as np
import pytest
import torch

from benchmarks import polygrad_figures, presets, report, run
from benchmarks.checkpoints import JobCheckpoint
from benchmarks.csv_rows import write_rows
from benchmarks.diagnostics import ip_presets
from benchmarks.machine import cpu_model, describe_machine
from sb3_polygrad import PolyGRAD


def test_zoo_hyperparams_fall_back_to_the_tuned_entry_of_another_version():
    ppo = presets.zoo_hyperparams("ppo", "InvertedPendulum-v4")
    assert ppo["n_steps"] == 32  # the zoo's tuned InvertedPendulum-v2 entry, not `default`
    assert presets.zoo_hyperparams("sac", "InvertedPendulum-v4")["policy"] == "MlpPolicy"  # only `default` exists
    assert "learning_starts" in presets.zoo_hyperparams("polygrad", "InvertedPendulum-v4")


def test_job_writes_its_csv_and_report_summarises(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "RESULTS", tmp_path)
    monkeypatch.setitem(
        run.PRESETS,
        "tiny",
        presets.Preset(envs=(presets.EnvSetting("Pendulum-v1", 512, 256, -1000.0),), algos=("ppo",), seeds=(0,)),
    )
    ppo_entry = dict(policy="MlpPolicy", n_steps=256, batch_size=64)
    monkeypatch.setattr(presets, "zoo_hyperparams", lambda algo, env, entries: ppo_entry)
    rows = run.run_job(run.PRESETS["tiny"], "ppo", run.PRESETS["tiny"].envs[0], 0)
    message = run.save_job("tiny", "ppo", "Pendulum-v1", 0, rows)
    assert "ppo Pendulum-v1 seed 0" in message
    saved = list(csv.DictReader(run.job_csv("tiny", "ppo", "Pendulum-v1", 0).open()))
    assert [row["eval_return"] for row in saved] == [str(row["eval_return"]) for row in rows]
    assert {row["diagnostics"] for row in saved} == {"{}"}  # PPO logs no world-model or imagination figures
    steps = [int(r["env_steps"]) for r in saved]
    # an evaluation at the start and at every 256 steps; the zoo's Pendulum entry runs 4 envs, so PPO collects its
    # rollouts in units of 4 * 256 steps and may run past the budget, as SB3 does
    assert steps[:3] == [0, 256, 512] and steps[-1] >= 512
    merged = run.merge("tiny")
    curves = report.load(merged)
    assert set(curves) == {("ppo", "Pendulum-v1")}
    text = report.table(curves, run.PRESETS["tiny"])
    assert "| ppo |" in text
    report.plot(curves, run.PRESETS["tiny"], 0, "env steps", tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_report_draws_the_plotted_variants_beside_the_algorithms_and_every_variant_apart(tmp_path, monkeypatch):
    setting = presets.EnvSetting("Pendulum-v1", 10, 5, -1000.0)
    variants = {"simulator": {"imagination": "simulator"}, "x": {"gamma": 0.9}}
    preset = presets.Preset(envs=(setting,), algos=("polygrad", "ppo"), variants=variants, plotted_variants=("simulator",))
    assert preset.plotted_algos() == ("polygrad", "ppo", "polygrad[simulator]")
    with pytest.raises(ValueError, match=r"plotted_variants \['y'\] are not variants"):
        presets.Preset(envs=(setting,), variants=variants, plotted_variants=("y",))
    monkeypatch.setattr(run, "RESULTS", tmp_path)
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    rows = [
        {"algo": algo, "env": "Pendulum-v1", "seed": 0, "env_steps": steps, "eval_return": -steps, "eval_return_std": 0,
         "wall_clock_s": steps, "diagnostics": "{}"}
        for algo in ("polygrad", "ppo", "polygrad[simulator]", "polygrad[x]")
        for steps in (0, 5, 10)
    ]  # fmt: skip
    (tmp_path / "p").mkdir()
    write_rows(tmp_path / "p" / "p.csv", rows, run.FIELDS)
    drawn = []
    plot = report.plot
    monkeypatch.setattr(report, "plot", lambda *args, **kwargs: drawn.append(plot(*args, **kwargs)))
    for name, plotted in [("p", ("simulator",)), ("all", None)]:
        monkeypatch.setitem(run.PRESETS, name, presets.Preset(envs=(setting,), variants=variants, plotted_variants=plotted))
        (tmp_path / name).mkdir(exist_ok=True)
        write_rows(tmp_path / name / f"{name}.csv", rows, run.FIELDS)
        monkeypatch.setattr("sys.argv", ["report", "--preset", name])
        report.main()
    main_curves = ["polygrad", "polygrad[simulator]", "ppo"]
    every = ["polygrad", "polygrad[simulator]", "polygrad[x]", "ppo"]
    assert drawn == [main_curves, main_curves, every, every, every]  # the subset, its wall-clock twin, every variant
    assert (tmp_path / "p" / "curves_variants.png").exists() and not (tmp_path / "all" / "curves_variants.png").exists()


def test_the_report_rewrites_its_presets_readme_block_and_nothing_else(tmp_path):
    from benchmarks import readme_results

    readme = tmp_path / "README.md"
    text = "# R\n\n<!-- results:a -->\nold a\n<!-- /results -->\ntext\n<!-- results:b -->\nold b\n<!-- /results -->\n"
    readme.write_text(text)
    assert readme_results.blocks(readme) == {"a": "old a\n", "b": "old b\n"}
    assert readme_results.write_block(readme, "b", "| new |\n")
    assert readme.read_text() == text.replace("old b", "| new |")
    assert not readme_results.write_block(readme, "c", "| new |\n")  # a preset the README does not report
    assert readme_results.blocks(readme) == {"a": "old a\n", "b": "| new |\n"}


def test_published_figures_stand_beside_the_measured_ones_marked_as_not_run_here(tmp_path, monkeypatch):
    from benchmarks import published
    from benchmarks.diagnostics import step_cost

    (tmp_path / "published.yml").write_text(
        "sources:\n  P: {title: a paper's runs, url: 'https://example.org/p'}\nrows:\n"
        "  - {algo: ppo, source: P, seeds: 5, env_steps: 10, returns: {Pendulum-v1: [-150, 20]}, note: other settings}\n"
        "  - {algo: mbpo, source: P, seeds: 4, env_steps: 10, returns: {Pendulum-v1: [-140.4, 9.6], Hopper-v4: [1, 1]}}\n"
        "  - {algo: mbpo, source: P, seeds: 4, env_steps: 20, returns: {Pendulum-v1: [-130, 5]}}\n"
    )
    monkeypatch.setattr(published, "PUBLISHED", tmp_path / "published.yml")
    monkeypatch.setattr(step_cost, "RESULTS", tmp_path)
    cost = dict(algo="mbpo", env="Pendulum-v1", device="cpu", timed_env_steps=10, seconds_per_1000_env_steps=512.3)
    write_rows(tmp_path / "step_cost.csv", [{**cost, "machine": "m"}], step_cost.FIELDS)
    setting = presets.EnvSetting("Pendulum-v1", 10, 5, -1000.0)
    preset = presets.Preset(envs=(setting,), algos=("ppo",))
    rows = [dict(algo="ppo", env="Pendulum-v1", seed=0, env_steps=steps, eval_return=-steps, eval_return_std=0,
                 wall_clock_s=steps, diagnostics="{}") for steps in (0, 5, 10)]  # fmt: skip
    write_rows(tmp_path / "p.csv", rows, run.FIELDS)
    curves = report.load(tmp_path / "p.csv")
    mbpo = "mbpo, published ([P](https://example.org/p)), not run here (512 s per 1,000 env steps here on cpu)"
    text = report.table(curves, preset).splitlines()
    header = next(line for line in text if line.startswith("| algo"))
    published_lines = [line for line in text if "published" in line and line.startswith("|")]
    # the figures at the env's budget only, each in the return column of that budget, in every table column
    assert published_lines == [
        "| ppo, published ([P](https://example.org/p)), not run here | 5 | — | — | -150 ± 20 |" + " — |" * 5,
        f"| {mbpo} | 4 | — | — | -140 ± 10 |" + " — |" * 5,
    ]
    assert all(line.count(" | ") == header.count(" | ") for line in published_lines)
    sources = next(line for line in text if line.startswith("Published figures: "))
    assert "[P](https://example.org/p): a paper's runs" in sources and "ppo [P]: other settings" in sources
    # the README's summary leaves out the published figures of an algorithm measured here
    summary = report.summary(curves, preset).splitlines()
    assert [line for line in summary if "published" in line] == [f"| {mbpo} | 4 | -140 ± 10 |" + " — |" * 3]


def test_step_cost_times_the_training_steps_after_the_random_ones_and_keeps_one_row_per_measurement(
    tmp_path, monkeypatch, capsys
):
    from benchmarks.diagnostics import step_cost

    sac_entry = dict(policy="MlpPolicy", learning_starts=100, buffer_size=1000, policy_kwargs="dict(net_arch=[8])")
    monkeypatch.setattr(presets, "zoo_hyperparams", lambda algo, env, entries: sac_entry)
    preset = presets.Preset(envs=(presets.EnvSetting("Pendulum-v1", 1000, 500, -1000.0),), algos=("sac",))
    learnt = []
    learn = step_cost.build_job

    def recording_build(*args):
        manager, model = learn(*args)
        model_learn = model.learn
        model.learn = lambda steps, **kwargs: learnt.append((steps, model.num_timesteps)) or model_learn(steps, **kwargs)
        return manager, model

    monkeypatch.setattr(step_cost, "build_job", recording_build)
    cost, device = step_cost.seconds_per_1000_steps(preset, "sac", preset.envs[0], 20)
    assert learnt == [(100, 0), (20, 100)]  # the random-action steps untimed, then the timed ones that train
    assert cost > 0 and device == "cpu"

    monkeypatch.setattr(step_cost, "RESULTS", tmp_path)
    monkeypatch.setitem(step_cost.PRESETS, "tiny", preset)
    for _ in range(2):
        step_cost.main(["--preset", "tiny", "--algo", "sac", "--steps", "10"])
    costs = step_cost.read_costs()
    assert list(costs) == [("sac", "Pendulum-v1")] and list(costs["sac", "Pendulum-v1"]) == ["cpu"]  # measured again
    assert "s per 1,000 env steps" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        step_cost.main(["--preset", "tiny", "--algo", "sac", "--env", "Hopper-v4"])


def test_the_runner_builds_tqc_and_crossq_with_their_zoo_hyperparameters_and_takes_a_device(tmp_path, monkeypatch):
    from sb3_contrib import TQC, CrossQ

    setting = presets.BENCHMARK_PRESETS["hopper-100k"].envs[0]
    preset = dataclasses.replace(presets.BENCHMARK_PRESETS["hopper-100k"], device="cpu")
    for algo, algo_class in [("tqc", TQC), ("crossq", CrossQ)]:
        _, model = run.build_job(preset, algo, setting, 0, str(tmp_path))
        assert isinstance(model, algo_class)
        assert model.learning_starts == presets.zoo_hyperparams(algo, setting.env_id)["learning_starts"]
        model.env.close()
    # --device replaces the preset's for every job
    monkeypatch.setattr(run, "RESULTS", tmp_path)
    monkeypatch.setattr(run, "check_jobs", lambda preset, todo: [])
    tiny = presets.Preset(envs=(presets.EnvSetting("Pendulum-v1", 512, 256, -1000.0),), algos=("ppo",), seeds=(0,))
    monkeypatch.setitem(run.PRESETS, "tiny", tiny)
    started = []
    monkeypatch.setattr(run.LocalBackend, "results", lambda self, function, todo: started.extend(todo) or iter(()))
    run.main(["--preset", "tiny", "--workers", "1", "--device", "cuda"])
    assert [job.preset.device for job in started] == ["cuda"]


def test_report_opens_with_the_command_and_each_machine_once_not_the_operation_notes(tmp_path):
    machine = "Linux-6.1-x86_64; 2 CPU cores; python 3.11.7"
    (tmp_path / "machine.txt").write_text(
        "Jobs shared the cores: wall-clock ratios are indicative only.\n"
        f"{machine}; algos ppo; local process pool of 1 workers\n"
        f"{machine}; algos polygrad; local process pool of 1 workers; polygrad Hopper-v4 seed 0 resumed from its checkpoint\n"
        "Linux-6.2-x86_64; 16 CPU cores; python 3.12.1; algos sac; Ray cluster\n"
    )
    lines = report.header("p", tmp_path / "machine.txt").splitlines()
    assert lines == [
        "Command: `python -m benchmarks.run --preset p`, then `python -m benchmarks.report --preset p`.",
        "",
        f"Machine: `{machine}` and `Linux-6.2-x86_64; 16 CPU cores; python 3.12.1` ([machine.txt](machine.txt): each "
        "invocation, with notes).",
    ]
    assert "Machine: not recorded" in report.header("p", tmp_path / "absent.txt")


def test_the_runner_records_the_cpu_and_package_versions_and_the_report_names_them(tmp_path):
    described = describe_machine()
    assert cpu_model() in described and f"torch {torch.__version__}" in described and "gymnasium " in described
    (tmp_path / "machine.txt").write_text(f"{described}; algos ppo; local process pool of 1 workers\n")
    assert f"Machine: `{described}`" in report.header("p", tmp_path / "machine.txt")


@pytest.mark.parametrize(
    "points, threshold, expected",
    [([(0, 1.0, 0.0), (10, 5.0, 1.0), (20, 9.0, 2.0)], 5.0, 10.0), ([(0, 1.0, 0.0)], 5.0, float("inf"))],
)
def test_steps_to_threshold(points, threshold, expected):
    assert report.steps_to_threshold(points, threshold) == expected


@pytest.mark.parametrize("values, expected", [([100.0, 300.0], "200 ± 100"), ([545.4], "545")])
def test_one_seed_shows_its_mean_without_a_spread(values, expected):
    assert report.mean_std_text(values) == expected


@pytest.mark.parametrize("values, expected", [([100.0, 300.0, 158.4], "186 ± 84 (100, 300, 158)"), ([545.4], "545")])
def test_the_return_at_the_budget_shows_every_seed(values, expected):
    assert report.seeds_text(values) == expected


def test_the_evaluation_keeps_where_each_episode_ends_on_tasks_that_report_it():
    ends = run.FinalPositions()
    for done, info in [(False, {"x_position": 0.1}), (True, {"x_position": 0.3}), (True, {"x_position": 5.0}), (True, {})]:
        ends({"done": done, "info": info}, {})
    assert ends.positions == [0.3, 5.0]  # the positions at the ends of the episodes only; none where the task has none


def test_the_tables_give_each_seeds_return_at_the_budget_in_seed_order(tmp_path):
    setting = presets.EnvSetting("Pendulum-v1", 10, 5, -1000.0)
    preset = presets.Preset(envs=(setting,), algos=("ppo",))
    finals = ((2, 30), (0, 10), (1, 20))  # the CSV's seeds out of order
    rows = [dict(algo="ppo", env="Pendulum-v1", seed=seed, env_steps=steps, eval_return=final * steps / 10,
                 eval_return_std=0, wall_clock_s=steps, diagnostics="{}")
            for seed, final in finals for steps in (0, 5, 10)]  # fmt: skip
    write_rows(tmp_path / "p.csv", rows, run.FIELDS)
    curves = report.load(tmp_path / "p.csv")
    line = next(line for line in report.table(curves, preset).splitlines() if line.startswith("| ppo |"))
    assert line.startswith("| ppo | 3 | 0 ± 0 | 10 ± 4 | 20 ± 8 (10, 20, 30) | 15 ± 6 |")
    summary = next(line for line in report.summary(curves, preset).splitlines() if line.startswith("| ppo |"))
    assert summary.startswith("| ppo | 3 | 20 ± 8 (10, 20, 30) |")


@pytest.mark.parametrize(
    "polygrad, baseline, expected",
    [(10.0, 20.0, "2.00x"), (np.inf, 20.0, "PolyGRAD did not reach it"), (10.0, np.inf, "baseline did not reach it"),
     (np.inf, np.inf, "neither reached"), (None, 20.0, "PolyGRAD not run"), (0.0, 20.0, "PolyGRAD at the start"),
     (0.0, 0.0, "both at the start"), (10.0, 0.0, "0.00x")],
)  # fmt: skip
def test_ratio_text_says_which_side_is_missing(polygrad, baseline, expected):
    assert report.ratio_text(polygrad, baseline) == expected


def test_report_holds_the_second_half_mean_the_wall_clock_ratio_and_the_world_model_figures(tmp_path):
    preset = presets.BENCHMARK_PRESETS["hopper-100k"]
    figures = {"world_model/state_mse_h9": 2.0, "world_model/data_actions_state_mse_h9": 0.5, "train/imagined_action_std": 1}
    figures["train/imagined_action_bias"] = -0.1
    figures |= {"world_model/termination_rate": 0.02, "world_model/true_termination_rate": 0.05}
    later = {**figures, "world_model/state_mse_h9": 4.0, "train/imagined_action_bias": 0.3}
    rows = [
        # algo, seed, env steps, return, wall-clock, diagnostics
        ("ppo", 0, 0, 10.0, 0.0, {}),
        ("ppo", 0, 50_000, 300.0, 50.0, {}),
        ("ppo", 0, 100_000, 500.0, 100.0, {}),
        ("polygrad", 0, 0, 10.0, 0.0, {}),
        ("polygrad", 0, 50_000, 1000.0, 400.0, figures),
        ("polygrad", 0, 100_000, 600.0, 800.0, later),
        ("polygrad[simulator]", 0, 100_000, 2000.0, 900.0, {}),
    ]
    path = tmp_path / "grid.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, run.FIELDS)
        writer.writeheader()
        for algo, seed, steps, ret, wall, diagnostics in rows:
            writer.writerow(dict(algo=algo, env="Hopper-v4", seed=seed, env_steps=steps, eval_return=ret,
                                 eval_return_std=0, wall_clock_s=wall, diagnostics=json.dumps(diagnostics)))  # fmt: skip
    text = report.table(report.load(path), preset)
    # polygrad: 600 at 100k, 800 = mean(1000, 600) over 50k-100k, 8.0x PPO's wall-clock
    assert "| polygrad | 1 | 10 | 1000 | 600 | 800 | 50,000 |" in text and "| 800 | 8.0x |" in text
    assert "| polygrad[simulator] (diagnostic: simulator rollouts) | 1 |" in text
    world_model = polygrad_figures.world_model_table(polygrad_figures.load(path), preset)
    # no rule termination logged (a task whose rule is not known): nan
    assert "| 50,000 | 1 | nan | nan | 2 | 0.5 | 1 | -0.1 | 0.02 | nan | 0.05 |" in world_model
    assert "| 100,000 | 1 | nan | nan | 4 | 0.5 | 1 | 0.3 | 0.02 | nan | 0.05 |" in world_model
    assert "| mean (bias: mean size) | | nan | nan | 3 | 0.5 | 1 | 0.2 | 0.02 | nan | 0.05 |" in world_model  # |bias|
    assert "ppo" not in world_model  # no figures logged
    # the learner's figures are a table of their own, empty for runs that did not log them
    assert polygrad_figures.learner_table(polygrad_figures.load(path), preset) == ""
    learner = {"eval/sampled_return": 1500.0, "imagination/reward_mean": 1.9, "imagination/done_rate": 0.05, "train/std": 0.8}
    seed_1 = dict(algo="polygrad", env="Hopper-v4", seed=1, env_steps=100_000, eval_return=600.0, eval_return_std=0)
    seed_1 |= dict(wall_clock_s=800.0, diagnostics=json.dumps({**later, **learner}))
    with path.open("a", newline="") as f:
        csv.DictWriter(f, run.FIELDS).writerow(seed_1)
    learner_text = polygrad_figures.learner_table(polygrad_figures.load(path), preset)
    # at 100k seed 0 logged none of them and seed 1 did: the means are seed 1's; the mean row is over that one row
    assert "| 100,000 | 2 | 1500 | 1.9 | 0.05 | 0.8 |" in learner_text
    assert "| mean | | 1500 | 1.9 | 0.05 | 0.8 |" in learner_text
    assert "| 50,000 |" not in learner_text  # no learner figures by then


def test_preset_variants_are_polygrad_runs_with_their_overrides_on_top_of_the_presets():
    preset = presets.Preset(
        envs=(presets.IP_20K,), algos=("polygrad",), hyperparam_overrides=dict(horizon=8), variants={"h5": dict(horizon=5)}
    )
    assert preset.job_algos() == ("polygrad", "polygrad[h5]")
    shipped = presets.zoo_hyperparams("polygrad", "InvertedPendulum-v4")
    assert preset.hyperparams("polygrad", "InvertedPendulum-v4") == {**shipped, "horizon": 8}
    assert preset.hyperparams("polygrad[h5]", "InvertedPendulum-v4") == {**shipped, "horizon": 5}
    with pytest.raises(ValueError, match="no variant 'h4'"):
        preset.hyperparams("polygrad[h4]", "InvertedPendulum-v4")


def test_a_variant_with_another_imagination_keeps_only_the_entrys_options_that_it_takes():
    # Hopper's CPU entry imagines closed loop; its simulator variant stands in for guided imagination, as its runs did.
    preset = presets.BENCHMARK_PRESETS["hopper-100k"]
    entry = presets.zoo_hyperparams("polygrad", "Hopper-v4", "cpu")["imagination_kwargs"]
    assert "row_lag" in entry
    merged = preset.hyperparams("polygrad[entry1-simulator]", "Hopper-v4")
    assert merged["imagination"] == "simulator"
    kept = {"state_change_clip_steps": entry["state_change_clip_steps"], "start_window": None, "terminations": "world_model"}
    assert merged["imagination_kwargs"] == kept  # no row_lag; the variant's own options on top
    own = preset.variant_overrides("polygrad[tau0.2]")["imagination_kwargs"]
    assert preset.hyperparams("polygrad[tau0.2]", "Hopper-v4")["imagination_kwargs"] == {**entry, **own}  # same method: all


def test_a_dict_override_updates_the_entrys_dict_instead_of_replacing_it():
    variants = {"std": {"policy_kwargs": {"init_std": 0.3}}}
    preset = presets.Preset(envs=(presets.IP_20K,), algos=("polygrad",), variants=variants)
    shipped = presets.zoo_hyperparams("polygrad", "InvertedPendulum-v4")
    assert shipped["policy_kwargs"]["net_arch"]  # the entry's own policy_kwargs, which the variant must keep
    merged = preset.hyperparams("polygrad[std]", "InvertedPendulum-v4")
    assert merged["policy_kwargs"] == {**shipped["policy_kwargs"], "init_std": 0.3}
    assert "init_std" not in presets.zoo_hyperparams("polygrad", "InvertedPendulum-v4")["policy_kwargs"]  # not mutated


@pytest.mark.parametrize("name", ["hopper-100k", "walker2d-100k", "halfcheetah-100k"])
def test_a_100k_preset_runs_its_tasks_shipped_cpu_entry_against_each_baselines_zoo_entry(name):
    from sb3_polygrad.zoo import cpu
    from sb3_polygrad.zoo.registration import hyperparams_path

    preset = presets.BENCHMARK_PRESETS[name]
    (setting,) = preset.envs
    # what `rl_zoo3.train --algo polygrad -conf sb3_polygrad.zoo.cpu` runs for the task
    assert preset.hyperparams("polygrad", setting.env_id) == cpu.hyperparams[setting.env_id]
    assert preset.zoo_config("polygrad[simulator]") == str(hyperparams_path("cpu"))
    for algo in preset.algos[1:]:
        assert preset.hyperparams(algo, setting.env_id) == presets.zoo_hyperparams(algo, setting.env_id)
        assert preset.zoo_config(algo).endswith(f"rl_zoo3/hyperparams/{algo}.yml")


def test_recorded_variants_are_read_from_beside_the_presets_results(tmp_path, monkeypatch):
    monkeypatch.setattr(presets, "RESULTS", tmp_path)
    assert presets.recorded_variants("fresh") == {}  # no results, no recorded variants
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "variants.yml").write_text(
        "# what each is\nb: {tau: 0.2}\na: {imagination_kwargs: {start_window: null}, policy_kwargs: {init_std: 0.3}}\n"
    )
    variants = presets.recorded_variants("p")
    assert list(variants) == ["b", "a"]  # the file's order, which the grid and the report keep
    assert variants["a"] == {"imagination_kwargs": {"start_window": None}, "policy_kwargs": {"init_std": 0.3}}
    preset = presets.Preset(envs=(presets.IP_20K,), algos=("polygrad",), variants=variants)
    shipped = presets.zoo_hyperparams("polygrad", "InvertedPendulum-v4")
    assert preset.hyperparams("polygrad[b]", "InvertedPendulum-v4") == {**shipped, "tau": 0.2}
    (tmp_path / "p" / "variants.yml").write_text("a: 0.2\n")
    with pytest.raises(ValueError, match=r"the variants \['a'\] are not mappings"):
        presets.recorded_variants("p")


@pytest.mark.parametrize("name", [*presets.BENCHMARK_PRESETS, *ip_presets.DIAGNOSTIC_PRESETS])
def test_every_polygrad_job_of_every_preset_builds_with_its_own_hyperparameters(name, tmp_path):
    # A preset's variant that the constructor rejects would otherwise fail only when its job starts, possibly hours
    # into a grid; each job is built here as the runner builds it, untrained, on the CPU.
    torch.set_num_threads(1)
    preset = dataclasses.replace({**presets.BENCHMARK_PRESETS, **ip_presets.DIAGNOSTIC_PRESETS}[name], device="cpu")
    for algo in (algo for algo in preset.job_algos() if algo.startswith("polygrad")):
        for setting in preset.envs:
            _, model = run.build_job(preset, algo, setting, 0, str(tmp_path))
            assert isinstance(model, PolyGRAD) and model.num_timesteps == 0
            hyperparams = preset.hyperparams(algo, setting.env_id)
            for key in ("gamma", "tau", "imagination", "imagination_kwargs", "actor_critic_kwargs"):
                if key in hyperparams:
                    assert getattr(model, key) == hyperparams[key], key
            schedule = hyperparams.get("actor_critic_kwargs", {}).get("action_std_schedule")
            # the zoo's YAML list reaches the actor-critic as a tuple
            assert model.actor_critic_config().action_std_schedule == (tuple(schedule) if schedule else None)
            model.env.close()


def test_a_grid_with_a_job_the_algorithm_rejects_starts_no_job(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(run, "RESULTS", tmp_path)
    preset = dataclasses.replace(
        presets.BENCHMARK_PRESETS["halfcheetah-100k"],
        variants={"std0.3to0.1": {"actor_critic_kwargs": {"action_std_schedule": [0.3, 0.1]}}},
        plotted_variants=None,
    )
    monkeypatch.setitem(run.PRESETS, "bad", preset)
    started = []
    monkeypatch.setattr(run.LocalBackend, "results", lambda self, function, todo: started.extend(todo) or iter(()))
    with pytest.raises(SystemExit):
        run.main(["--preset", "bad", "--algos", "polygrad", "polygrad[std0.3to0.1]", "--seeds", "0", "--workers", "1"])
    assert not started and not (tmp_path / "bad").exists()
    error = capsys.readouterr().err
    assert (
        "polygrad[std0.3to0.1] HalfCheetah-v4: ValueError: actor_critic_kwargs['action_std_schedule'] (0.3, 0.1) must" in error
    )
    assert "polygrad HalfCheetah-v4" not in error  # the entry builds


def test_diagnostics_are_a_group_of_their_own_run_by_the_same_command():
    benchmarks, diagnostics = presets.BENCHMARK_PRESETS, ip_presets.DIAGNOSTIC_PRESETS
    assert not set(benchmarks) & set(diagnostics)
    assert run.PRESETS == {**benchmarks, **diagnostics}  # every one of them a --preset choice
    # PolyGRAD alone (the entry, or variants of it), one change each
    assert all(
        preset.job_algos() and all(algo.startswith("polygrad") for algo in preset.job_algos())
        for preset in diagnostics.values()
    )


def test_consistency_ratios_skip_ended_windows_and_come_with_an_interval():
    from types import SimpleNamespace

    import numpy as np
    import torch as th

    from benchmarks.diagnostics.imagination_consistency import StateErrors

    rng = np.random.default_rng(0)
    true_obs = rng.normal(size=(400, 5, 3))
    alive = np.ones((400, 5), dtype=bool)
    alive[:100, 4] = False  # ended before k = H - 1 in the simulator: not counted there

    def errors(scale: float, diverged: float) -> StateErrors:
        """Imagined states off by ``scale`` everywhere, and by ``diverged`` where the window has ended."""
        offset = np.full((400, 5, 1), scale)
        offset[:100, 4] = diverged
        return StateErrors(SimpleNamespace(observations=th.tensor(true_obs + offset)), true_obs, alive)

    control, method = errors(1.0, 1.0), errors(2.0, 100.0)
    np.testing.assert_allclose(method.means(), [4.0, 4.0])  # the ended windows' 100 is left out
    ratios, intervals = method.ratio_to(control)
    np.testing.assert_allclose(ratios, [4.0, 4.0])
    assert np.all(intervals[:, 0] <= ratios) and np.all(ratios <= intervals[:, 1])
    noisy = StateErrors(SimpleNamespace(observations=th.tensor(true_obs + rng.normal(size=(400, 5, 1)))), true_obs, alive)
    low, high = noisy.ratio_to(control)[1][1]
    assert 0.7 < low < 1.0 < high < 1.3  # unit-variance errors against unit errors: about 1, with a visible spread


def test_a_killed_job_continues_from_its_last_checkpoint(tmp_path, tiny_kwargs):
    overrides = {**tiny_kwargs, "n_sampling_steps": None, "imagination_kwargs": {"state_change_clip_steps": None}}

    def preset(budget: int) -> presets.Preset:
        return presets.Preset(envs=(presets.EnvSetting("Pendulum-v1", budget, 150, -1000.0),), algos=("polygrad",),
                              seeds=(0,), n_eval_episodes=1, hyperparam_overrides=overrides)  # fmt: skip

    folder, evaluations = tmp_path / "polygrad_Pendulum-v1_0.ckpt", tmp_path / "unfinished" / "polygrad_Pendulum-v1_0.csv"
    run.run_job(preset(100), "polygrad", preset(100).envs[0], 0, folder, evaluations)
    assert JobCheckpoint(folder).latest() is None  # only the evaluation at step 0: nothing worth a checkpoint
    assert not evaluations.exists()
    # A job whose budget ends at 300 env steps stands for one killed before its checkpoint after the evaluation at 300:
    # its latest checkpoint is the one after the evaluation at 150, at the next rollout (train_freq 4: 152 env steps).
    first = run.run_job(preset(300), "polygrad", preset(300).envs[0], 0, folder, evaluations)
    assert [row["env_steps"] for row in first] == [0, 150, 300]
    # the checkpoint's evaluations, kept outside its folder
    assert [row["eval_return"] for row in csv.DictReader(evaluations.open())] == [str(row["eval_return"]) for row in first[:2]]
    assert sorted(path.name for path in folder.iterdir()) == ["152", "latest"]  # older checkpoints removed
    (folder / "456").mkdir()  # as half-written by a kill during the next save: not the latest, and replaced
    whole = run.run_job(preset(600), "polygrad", preset(600).envs[0], 0, folder)
    assert [row["env_steps"] for row in whole] == [0, 150, 300, 450, 600]
    assert whole[:2] == first[:2]  # the rows up to the checkpoint, wall-clock included, come back as they were saved
    assert whole[2]["wall_clock_s"] > whole[1]["wall_clock_s"]  # from 152 on, the job ran again, its clock going on
    assert sorted(path.name for path in folder.iterdir()) == ["452", "latest"]
    final = PolyGRAD.load(folder / "452" / "model.zip")
    final.load_replay_buffer(folder / "452" / "replay_buffer.pkl")
    buffer = final.replay_buffer
    assert final.num_timesteps == buffer.n_stored() == 452  # every counted transition is stored, none lost at 152
    # Pendulum's episodes end every 200 steps; the resumed job reset its env at 152, so that episode was cut there
    assert buffer.timeouts[:452, 0].nonzero()[0].tolist() == [151, 351]
    JobCheckpoint(folder, evaluations).remove()
    assert not folder.exists() and not evaluations.exists()


def test_report_lists_the_evaluations_so_far_of_the_jobs_that_have_not_finished(tmp_path):
    preset = presets.Preset(
        envs=(presets.EnvSetting("Hopper-v4", 10_000, 2_500, 1000.0),), variants={"sim": {"imagination": "simulator"}}
    )

    def unfinished(algo: str, seed: int, returns: list[float]) -> None:
        with (tmp_path / f"{algo}_Hopper-v4_{seed}.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, ["algo", "env", "seed", "env_steps", "eval_return"])
            writer.writeheader()
            writer.writerows(dict(algo=algo, env="Hopper-v4", seed=seed, env_steps=2_500 * i, eval_return=r)
                             for i, r in enumerate(returns))  # fmt: skip

    assert report.unfinished_table(tmp_path, preset, []) == ""
    unfinished("polygrad", 1, [5.0, 180.4, 1065.2])
    unfinished("polygrad[sim]", 0, [5.0, 178.0])
    unfinished("ppo", 0, [10.0, 200.0])  # finished since: in the table above, not here
    text = report.unfinished_table(tmp_path, preset, [("ppo", "Hopper-v4", 0)])
    assert "| polygrad | Hopper-v4 | 1 | 5,000 | 0k: 5, 2.5k: 180, 5k: 1065 |" in text
    assert "| polygrad[sim] (diagnostic: simulator rollouts) | Hopper-v4 | 0 | 2,500 | 0k: 5, 2.5k: 178 |" in text
    assert "ppo" not in text


def test_merge_keeps_the_finished_jobs_of_the_merged_csv_and_the_grid_skips_them(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "RESULTS", tmp_path)

    def write(path, algo: str, seed: int, returns: list[float]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, run.FIELDS)
            writer.writeheader()
            writer.writerows(dict(algo=algo, env="Pendulum-v1", seed=seed, env_steps=i, eval_return=r, eval_return_std=0,
                                  wall_clock_s=0, diagnostics="{}") for i, r in enumerate(returns))  # fmt: skip

    # a fresh checkout: the merged CSV holds ppo seeds 0 and 1, and no per-job CSV is there
    write(tmp_path / "tiny" / "tiny.csv", "ppo", 0, [1.0, 2.0])
    with (tmp_path / "tiny" / "tiny.csv").open("a", newline="") as f:
        csv.DictWriter(f, run.FIELDS).writerow(dict(algo="ppo", env="Pendulum-v1", seed=1, env_steps=0, eval_return=3.0,
                                                    eval_return_std=0, wall_clock_s=0, diagnostics="{}"))  # fmt: skip
    write(run.job_csv("tiny", "sac", "Pendulum-v1", 0), "sac", 0, [4.0])  # a job finished since
    write(run.job_csv("tiny", "ppo", "Pendulum-v1", 1), "ppo", 1, [5.0, 6.0])  # a job run again
    assert set(run.finished_jobs("tiny")) == {("ppo", "Pendulum-v1", 0), ("ppo", "Pendulum-v1", 1), ("sac", "Pendulum-v1", 0)}
    merged = list(csv.DictReader(run.merge("tiny").open()))
    assert [(row["algo"], row["seed"], row["eval_return"]) for row in merged] == [
        ("ppo", "0", "1.0"), ("ppo", "0", "2.0"), ("ppo", "1", "5.0"), ("ppo", "1", "6.0"), ("sac", "0", "4.0")
    ]  # fmt: skip
    monkeypatch.setitem(
        run.PRESETS,
        "tiny",
        presets.Preset(envs=(presets.EnvSetting("Pendulum-v1", 512, 256, -1000.0),), algos=("ppo", "sac"), seeds=(0, 1)),
    )
    started = []
    monkeypatch.setattr(run.LocalBackend, "results", lambda self, function, todo: started.extend(todo) or iter(()))
    run.main(["--preset", "tiny", "--workers", "1"])
    assert [(job[1], job[3]) for job in started] == [("sac", 1)]  # the only job held by neither CSV


def test_a_resumed_job_keeps_its_observation_normalisation(tmp_path, monkeypatch):
    import pickle

    ppo_entry = dict(policy="MlpPolicy", n_envs=2, n_steps=64, batch_size=64, normalize=True)  # rollouts of 128 steps
    monkeypatch.setattr(presets, "zoo_hyperparams", lambda algo, env, entries: ppo_entry)

    def preset(budget: int) -> presets.Preset:
        return presets.Preset(envs=(presets.EnvSetting("Pendulum-v1", budget, 128, -1000.0),), algos=("ppo",),
                              seeds=(0,), n_eval_episodes=1)  # fmt: skip

    folder = tmp_path / "ppo_Pendulum-v1_0.ckpt"
    run.run_job(preset(256), "ppo", preset(256).envs[0], 0, folder)  # its latest checkpoint: 128, after that evaluation
    run.run_job(preset(512), "ppo", preset(512).envs[0], 0, folder)
    latest = JobCheckpoint(folder).latest()
    assert latest is not None and latest.name == "384"
    with (latest / "vec_normalize.pkl").open("rb") as f:
        obs_rms, _ = pickle.load(f)
    # every observation since the start went into the statistics, not only the 256 since the resume at 128
    assert obs_rms.count > 384


def test_returns_to_go_discount_and_scale_the_rewards_that_follow():
    from benchmarks.diagnostics.critic_check import returns_to_go

    # 0.1 * (1 + 0.5 * 2 + 0.25 * 3), 0.1 * (2 + 0.5 * 3), 0.1 * 3
    np.testing.assert_allclose(returns_to_go(np.array([1.0, 2.0, 3.0]), 0.5, 0.1), [0.275, 0.35, 0.3])


def test_critic_check_sets_the_critic_against_the_returns_of_the_policys_own_episodes(tiny_kwargs, tmp_path, monkeypatch):
    import sys

    import gymnasium as gym
    import torch as th

    from benchmarks.diagnostics import critic_check

    learner = dict(reward_scale=0.5)
    model = PolyGRAD("MlpPolicy", "InvertedPendulum-v4", seed=0, gamma=0.9, actor_critic_kwargs=learner, **tiny_kwargs)
    model.learn(200)
    episodes = critic_check.run_episodes(model, "InvertedPendulum-v4", max_steps=120, deterministic=True, n_episodes=1)
    found = critic_check.check(model, episodes)
    length = int(found.length)
    assert found.reward_per_step == 1.0  # InvertedPendulum pays 1 per step alive
    t, value, ret, tail = found.rows[0]
    start = gym.make("InvertedPendulum-v4").reset(seed=0)[0]  # the episode's first state
    assert t == 0 and value == pytest.approx(
        model.policy.predict_values(th.as_tensor(start[None], dtype=th.float32)).item(), rel=1e-5
    )
    assert ret == pytest.approx(0.5 * (1 - 0.9**length) / (1 - 0.9))  # in the critic's units
    assert tail == (0.0 if found.terminated else pytest.approx(0.9**length))
    assert [row[0] for row in found.rows] == [step for step in critic_check.CHECKED_STEPS if step < length]

    model.save(tmp_path / "model.zip")
    monkeypatch.setattr(critic_check, "RESULTS", tmp_path)
    argv = ["critic_check", "--model", str(tmp_path / "model.zip"), "--env", "InvertedPendulum-v4", "--name", "ip"]
    monkeypatch.setattr(sys, "argv", [*argv, "--max-steps", "50", "--episodes", "1"])
    critic_check.main()
    text = (tmp_path / "ip.md").read_text()
    assert "## Policy: mean action (as evaluated)" in text and "## Policy: sampled actions (as imagined)" in text
    assert "(gamma 0.9, reward_scale 0.5)" in text and "| 0 |" in text
    monkeypatch.setattr(sys, "argv", [*argv, "--episodes", "0"])
    with pytest.raises(SystemExit):
        critic_check.main()
    for bad in (["--critic-updates", "-1"], ["--critic-learning-rate", "0"], ["--tau", "1.5"]):
        monkeypatch.setattr(sys, "argv", [*argv, *bad])
        with pytest.raises(SystemExit):
            critic_check.main()


def test_critic_check_can_train_the_critic_alone_and_check_it_again(tiny_kwargs, tmp_path, monkeypatch):
    import sys

    import torch as th

    from benchmarks.diagnostics import critic_check

    model = PolyGRAD("MlpPolicy", "InvertedPendulum-v4", seed=0, gamma=0.9, **tiny_kwargs)
    model.learn(200)
    episodes = critic_check.run_episodes(model, "InvertedPendulum-v4", max_steps=60, deterministic=False, n_episodes=1)
    starts = episodes[0].states
    actor = [p.detach().clone() for p in model.actor.parameters()]
    critic, target = ([p.detach().clone() for p in net.parameters()] for net in (model.critic, model.critic_target))
    values = model.policy.predict_values(th.as_tensor(starts)).detach()
    model.critic_learning_rate = 0.01
    reward, done = critic_check.fit_critic(model, starts, updates=3)
    assert model.critic.optimizer.param_groups[0]["lr"] == 0.01  # the model's critic rate, as train() sets it
    # Only the critic and its target moved; the actor, whose rate is 0, did not.
    for before, now in zip(actor, model.actor.parameters(), strict=True):
        th.testing.assert_close(now, before, rtol=0.0, atol=0.0)
    assert all(not th.equal(b, n) for b, n in zip(critic, model.critic.parameters(), strict=True))
    assert any(not th.equal(b, n) for b, n in zip(target, model.critic_target.parameters(), strict=True))
    assert not th.allclose(model.policy.predict_values(th.as_tensor(starts)), values)
    assert reward > 0.0 and 0.0 <= done <= 1.0  # InvertedPendulum pays 1 per step alive, in raw units

    model.save(tmp_path / "model.zip")
    monkeypatch.setattr(critic_check, "RESULTS", tmp_path)
    argv = ["critic_check", "--model", str(tmp_path / "model.zip"), "--env", "InvertedPendulum-v4", "--name", "ip"]
    options = ["--max-steps", "50", "--episodes", "1", "--critic-updates", "2", "--critic-learning-rate", "0.002"]
    options += ["--tau", "0.5"]
    monkeypatch.setattr(sys, "argv", [*argv, *options])
    critic_check.main()
    text = (tmp_path / "ip.md").read_text()
    assert "--critic-updates 2 --critic-learning-rate 0.002 --tau 0.5" in text
    assert "after 2 more actor-critic steps" in text and "(critic learning rate 0.002, tau 0.5)" in text
    assert "| step | V | G | V / G | V after | V after / G | tail |" in text


def test_the_expected_clipped_action_is_the_mean_of_the_clipped_samples():
    import torch as th

    from benchmarks.diagnostics.noise_check import expected_clipped_action

    mean, std = th.tensor([0.0, 0.9, -0.95, 2.0]), th.tensor([0.5, 0.7, 0.3, 0.1])
    samples = (mean + std * th.randn(400_000, 4, generator=th.Generator().manual_seed(0))).clamp(-1.0, 1.0)
    expected = expected_clipped_action(mean, std)
    th.testing.assert_close(expected, samples.mean(dim=0), atol=3e-3, rtol=0.0)
    assert expected[0] == pytest.approx(0.0, abs=1e-6) and expected[1] < 0.85 and expected[3] == pytest.approx(1.0)


def test_noise_check_acts_by_each_rule_and_writes_its_table(tiny_kwargs, tmp_path, monkeypatch):
    import sys

    import gymnasium as gym

    from benchmarks.diagnostics import noise_check

    model = PolyGRAD("MlpPolicy", "InvertedPendulum-v4", seed=0, **tiny_kwargs)
    model.learn(200)
    env = gym.make("InvertedPendulum-v4")
    # Scale 0 is the mean action, the evaluations' predict(deterministic=True).
    obs, _ = env.reset(seed=3)
    length, total = 0, 0.0
    while True:
        obs, reward, terminated, truncated, _ = env.step(model.predict(obs, deterministic=True)[0])
        length, total = length + 1, total + float(reward)
        if terminated or truncated:
            break
    assert noise_check.episode_return(model, env, noise_check.noisy(0.0), seed=3) == (total, length)
    # The same seed gives the same noise: a reproducible table.
    sampled = noise_check.episode_return(model, env, noise_check.noisy(1.0), seed=3)
    assert noise_check.episode_return(model, env, noise_check.noisy(1.0), seed=3) == sampled

    model.save(tmp_path / "model.zip")
    monkeypatch.setattr(noise_check, "RESULTS", tmp_path)
    argv = ["noise_check", "--model", str(tmp_path / "model.zip"), "--env", "InvertedPendulum-v4", "--name", "ip"]
    monkeypatch.setattr(sys, "argv", [*argv, "--episodes", "2"])
    noise_check.main()
    text = (tmp_path / "ip.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| actions")]
    assert [row.split(" | ")[0] for row in rows] == [
        "| mean action (as evaluated)",
        "| mean + 0.25 std noise",
        "| mean + 0.5 std noise",
        "| mean + 0.75 std noise",
        "| mean + 1 std noise",
        "| expected clipped action",
    ]
    monkeypatch.setattr(sys, "argv", [*argv, "--episodes", "0"])
    with pytest.raises(SystemExit):
        noise_check.main()


def test_advantage_sources_split_the_actors_step_by_when_its_start_states_were_recorded(tiny_kwargs, tmp_path, monkeypatch):
    import sys

    from benchmarks.diagnostics import advantage_sources

    model = PolyGRAD("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs)
    model.learn(300)
    groups, num_timesteps = advantage_sources.advantage_sources(model, [150], n_starts=64, newest=None)
    assert num_timesteps == 300 and [(g.first, g.end) for g in groups] == [(0, 150), (150, 300)]
    for share in ("starts", "squared_advantages", "gradient"):
        assert sum(getattr(g, share) for g in groups) == pytest.approx(1.0, abs=1e-4)
    assert 0 < groups[0].starts < 1
    # drawn among the newest 100 transitions, every start state lies in the last group
    (newest,), _ = advantage_sources.advantage_sources(model, [150], n_starts=64, newest=100)
    assert (newest.first, newest.starts, newest.gradient) == (150, 1.0, pytest.approx(1.0, abs=1e-4))

    model.save(tmp_path / "model.zip")
    model.save_replay_buffer(tmp_path / "replay_buffer.pkl")
    monkeypatch.setattr(advantage_sources, "RESULTS", tmp_path)
    argv = ["advantage_sources", "--checkpoint", str(tmp_path), "--name", "pendulum", "--starts", "64", "--edges"]
    monkeypatch.setattr(sys, "argv", [*argv, "100", "200"])
    advantage_sources.main()
    text = (tmp_path / "pendulum.md").read_text()
    assert "from the whole replay buffer, after 300 env steps" in text
    assert "| 0 - 100 |" in text and "| 200 - 300 |" in text
    monkeypatch.setattr(sys, "argv", [*argv, "200", "100"])
    with pytest.raises(SystemExit):
        advantage_sources.main()


def test_gradient_noise_separates_the_actors_expected_gradient_from_the_noise_of_one_batch(tiny_kwargs, tmp_path, monkeypatch):
    import sys

    from benchmarks.diagnostics import gradient_noise

    # Known gradients: G = (3, 0, 0) plus +-2 along the second axis in turn: tr(S) = 4 * 4 / 3, |G|^2 = 9.
    grads = torch.tensor([[3.0, 2.0, 0.0], [3.0, -2.0, 0.0], [3.0, 2.0, 0.0], [3.0, -2.0, 0.0]])
    stats = gradient_noise.GradientNoise.from_gradients("known", 10, 8, grads)
    assert stats.noise == pytest.approx(16 / 3) and stats.signal == pytest.approx(9.0 - 16 / 3 / 4)
    assert stats.signal_share == pytest.approx(stats.signal / (stats.signal + 16 / 3))
    assert stats.noise_scale == pytest.approx(8 * (16 / 3) / stats.signal)
    assert stats.mean_cosine == pytest.approx((4 * 5 / 13 + 2 * 1.0) / 6)
    # with G = (1, 0, 0) the noise's share exceeds what the mean's norm shows: no signal is measured
    weak = gradient_noise.GradientNoise.from_gradients("weak", 10, 8, grads / torch.tensor([3.0, 1.0, 1.0]))
    assert weak.signal < 0 and (weak.signal_share, weak.noise_scale) == (0.0, float("inf"))
    same = gradient_noise.GradientNoise.from_gradients("same", 10, 8, torch.ones(3, 5))
    assert (same.noise, same.signal_share, same.mean_cosine) == (pytest.approx(0.0), 1.0, pytest.approx(1.0))

    model = PolyGRAD("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs)
    model.learn(300)
    first = gradient_noise.batch_gradient(model, 32, seed=0)
    assert first.shape == (sum(p.numel() for p in model.actor.parameters() if p.requires_grad),)
    assert torch.equal(first, gradient_noise.batch_gradient(model, 32, seed=0))  # a seed fixes the batch
    assert not torch.equal(first, gradient_noise.batch_gradient(model, 32, seed=1))
    stats = gradient_noise.gradient_noise(model, "pendulum", n_batches=4, n_starts=32)
    assert (stats.env_steps, stats.batch_size, stats.batches) == (300, 32, 4) and stats.noise > 0

    model.save(tmp_path / "model.zip")
    model.save_replay_buffer(tmp_path / "replay_buffer.pkl")
    monkeypatch.setattr(gradient_noise, "RESULTS", tmp_path)
    argv = ["gradient_noise", "--env", "Pendulum-v1", "--name", "pendulum", f"--checkpoint=s0={tmp_path}", "--starts", "16"]
    monkeypatch.setattr(sys, "argv", [*argv, "--batches", "3"])
    gradient_noise.main()
    assert "| s0 | 300 | 16 | 3 |" in (tmp_path / "pendulum.md").read_text()
    for wrong in (["--batches", "1"], ["--checkpoint", "no-label"]):
        monkeypatch.setattr(sys, "argv", [*argv, *wrong])
        with pytest.raises(SystemExit):
            gradient_noise.main()


def test_polygrad_jobs_log_their_sampled_actions_return_and_leave_the_deterministic_evaluations_as_they_were(
    tiny_kwargs, monkeypatch
):
    from stable_baselines3.common import evaluation

    overrides = {**tiny_kwargs, "n_sampling_steps": None, "imagination_kwargs": {"state_change_clip_steps": None}}
    preset = presets.Preset(envs=(presets.EnvSetting("Pendulum-v1", 300, 150, -1000.0),), algos=("polygrad",),
                            seeds=(0,), n_eval_episodes=1, hyperparam_overrides=overrides)  # fmt: skip
    rows = run.run_job(preset, "polygrad", preset.envs[0], 0)
    sampled = [json.loads(row["diagnostics"])["eval/sampled_return"] for row in rows]
    assert len(sampled) == 3 and all(-2000.0 < value < 0.0 for value in sampled)  # Pendulum's rewards are negative
    assert sampled != [row["eval_return"] for row in rows]  # the samples, not the mean action
    # The same job with the sampled-action evaluations replaced by nothing: training and the deterministic evaluations
    # must not have depended on them (their episodes draw from the torch RNG that training draws from).
    deterministic_only = evaluation.evaluate_policy

    def without_sampled(model, env, n_eval_episodes, deterministic=True, **kwargs):
        return deterministic_only(model, env, n_eval_episodes, deterministic=True, **kwargs) if deterministic else (0, 0)

    monkeypatch.setattr(evaluation, "evaluate_policy", without_sampled)
    again = run.run_job(preset, "polygrad", preset.envs[0], 0)
    assert [row["eval_return"] for row in again] == [row["eval_return"] for row in rows]


@pytest.mark.parametrize(
    ("name", "change"),
    [
        ("ip-50k", {}),
        ("ip-screen", {}),
        ("ip-causal", {"denoiser": "causal_mlp"}),
        ("ip-censored", {"agent_gradient_steps": 2, "actor_critic_kwargs": {"censored_log_prob": True}}),
        ("ip-oracle", {"imagination": "simulator"}),
        ("ip-sequential", {"imagination": "sequential", "denoiser": "causal_mlp", "n_sampling_steps": 8}),
    ],
)
def test_the_guided_diagnostics_run_on_the_guided_entry_their_results_came_from(name, change):
    """The InvertedPendulum entry has moved to closed-loop imagination; these diagnostics ran on the guided CPU entry
    (the InvertedDoublePendulum entry's settings), which their presets restore, with their one change."""
    guided = {"imagination": "guided", "denoiser": "mlp", **presets.zoo_hyperparams("polygrad", "InvertedDoublePendulum-v4")}
    preset = ip_presets.DIAGNOSTIC_PRESETS[name]
    assert preset.hyperparams("polygrad", preset.envs[0].env_id) == presets.merge_overrides(guided, change)


@pytest.mark.parametrize("denoiser", ["mlp", "causal_mlp"])
def test_imagination_fidelity_measures_guided_imagination_on_a_closed_loop_entry(denoiser):
    from benchmarks.diagnostics.imagination_fidelity import guided_hyperparams

    model = PolyGRAD("MlpPolicy", "InvertedPendulum-v4", device="cpu", **guided_hyperparams("InvertedPendulum-v4", denoiser))
    assert (model.imagination, model.denoiser, model.n_sampling_steps) == ("guided", denoiser, 16)
    model.env.close()


def test_real_windows_sets_imagined_targets_against_those_of_the_windows_imagination_starts_from(tiny_kwargs, monkeypatch):
    from benchmarks.diagnostics import real_windows

    learner = dict(reward_scale=0.5)
    model = PolyGRAD("MlpPolicy", "InvertedPendulum-v4", seed=0, gamma=0.9, actor_critic_kwargs=learner, **tiny_kwargs)
    model.learn(200)
    imagined, real, gap, gap_std = real_windows.compare(model, n_starts=32)
    assert real.reward == pytest.approx(0.5)  # InvertedPendulum pays 1 per step alive, in the critic's units
    assert imagined.start_value == pytest.approx(real.start_value)  # the same start states
    assert gap == pytest.approx(imagined.start_target - real.start_target, abs=1e-5) and gap_std > 0

    # an imagination that replays the real windows gives the critic the same targets: no gap
    def replay(start, generator=None):
        return start.as_trajectory()

    monkeypatch.setattr(model.imaginer, "imagine", replay)
    imagined, real, gap, gap_std = real_windows.compare(model, n_starts=32)
    assert imagined == real and gap == 0 and gap_std == 0
