import argparse

import pytest

from benchmarks.training_speed import ROOT, describe, entry, parse_overrides, table


def test_variant_overrides_are_yaml_mappings():
    assert parse_overrides("{n_sampling_steps: 8, imagination_kwargs: {row_lag: 1.0}}") == {
        "n_sampling_steps": 8,
        "imagination_kwargs": {"row_lag": 1.0},
    }
    for text in ("gradient_steps=2", "{}", "[1, 2]"):
        with pytest.raises(argparse.ArgumentTypeError, match="YAML mapping"):
            parse_overrides(text)


def test_a_nested_override_is_named_by_its_path():
    assert (
        describe({"gradient_steps": 1, "imagination_kwargs": {"row_lag": 1.0}})
        == "gradient_steps=1, imagination_kwargs.row_lag=1.0"
    )


def test_table_takes_each_versions_fastest_round_and_its_speed_up_against_the_first():
    def run(total: float, fingerprint: str) -> dict:
        return {
            "total": total,
            "world_model": total / 4,
            "imagination": total / 2,
            "actor_critic": total / 8,
            "fingerprint": fingerprint,
        }

    lines = table([("old", [run(60.0, "aa"), run(50.0, "aa")]), ("new", [run(20.0, "bb"), run(25.0, "bb")])], span=500)
    old, new = lines[2], lines[3]
    assert old.startswith("| old | 100.0 | 25.0 (25%) | 50.0 (50%) | 12.5 (12%) | 12.5 (12%) | 1.00x | aa |")
    assert new.startswith("| new | 40.0 | 10.0 (25%) | 20.0 (50%) | 5.0 (12%) | 5.0 (12%) | 2.50x | bb |")


def test_entries_come_from_the_cpu_file_then_the_small_tasks_of_the_zoo_file():
    hopper = entry(ROOT, "Hopper-v4")  # in both files: the CPU one wins
    assert hopper["imagination"] == "closed_loop" and "n_timesteps" not in hopper and "policy" not in hopper
    pendulum = entry(ROOT, "InvertedPendulum-v4")  # the quickstart's entry, only in polygrad.yml
    assert pendulum["imagination"] == "closed_loop" and pendulum["imagination_kwargs"]["row_lag"] == 2.0
    with pytest.raises(ValueError, match="no entry"):
        entry(ROOT, "CartPole-v1")
