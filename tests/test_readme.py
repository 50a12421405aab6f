from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_ci_runs_exactly_the_readme_test_command():
    ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    readme_commands = [line.strip() for line in (ROOT / "README.md").read_text().splitlines()]
    assert ci_command in readme_commands


def test_readme_results_are_what_the_report_makes_of_the_committed_runs():
    from benchmarks import readme_results, report, run

    found = readme_results.blocks(ROOT / "README.md")
    assert found
    for preset_name, body in found.items():
        curves = report.load(run.RESULTS / preset_name / f"{preset_name}.csv")
        expected = report.summary(curves, run.PRESETS[preset_name])
        assert body == expected, f"run `python -m benchmarks.report --preset {preset_name}` to write its README results"


def test_the_key_arguments_table_names_only_arguments_and_options_that_exist():
    import inspect
    import re

    from sb3_polygrad import PolyGRAD
    from sb3_polygrad.imagination import IMAGINATIONS, imagination_options
    from sb3_polygrad.polygrad.actor_critic import ACTOR_CRITIC_OPTIONS

    section = (ROOT / "README.md").read_text().split("## Key arguments")[1].split("\n## ")[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    assert rows
    options = {
        "imagination_kwargs": {name for method in IMAGINATIONS for name in imagination_options(method, {})}
        | set(imagination_options("simulator", {})),
        "actor_critic_kwargs": set(ACTOR_CRITIC_OPTIONS),
    }
    for row in rows:
        group, colon, keys = row.partition("`: ")  # "`imagination_kwargs`: `row_lag`", or a row of arguments
        names = re.findall(r"`(\w+)`", keys if colon else row)
        valid = options[group.strip(" `")] if colon else set(inspect.signature(PolyGRAD).parameters)
        assert names and set(names) <= valid, row
