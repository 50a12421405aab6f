"""
Beyond one machine (docs/cluster.md): ``benchmarks.run --backend ray`` on a local Ray instance, and the README's
multi-machine ``-optimize`` recipe on a real PostgreSQL server.
"""

import csv
import sys

import pytest

from benchmarks import backends, run


def tiny_preset(tiny_kwargs: dict) -> run.Preset:
    """PolyGRAD on Pendulum-v1 for 300 env steps, evaluated on one episode at 0, 150 and 300 steps, seeds 0 and 1."""
    # n_sampling_steps and the state clip of the zoo's CPU entry do not fit the tiny 8-step diffusion.
    overrides = {**tiny_kwargs, "n_sampling_steps": None, "state_change_clip_steps": None}
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
    assert "local Ray instance of 2 CPUs" in (tmp_path / "ray" / "tiny" / "machine.txt").read_text()


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
