from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_ci_runs_exactly_the_readme_test_command():
    ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    readme_commands = [line.strip() for line in (ROOT / "README.md").read_text().splitlines()]
    assert ci_command in readme_commands
