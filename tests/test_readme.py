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
