"""The README's two commands stay true: CI runs the README's test command verbatim."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci_lines = [l.strip() for l in (REPO / ".ci" / "run").read_text().splitlines()]
    command = ci_lines[-1]
    assert "pytest" in command
    assert f"\n{command}\n" in readme, f"README must show the test command exactly: {command}"


def test_readme_main_job_command_uses_the_setup_script():
    readme = (REPO / "README.md").read_text()
    assert "\nbash .ci/setup && .venv/bin/invsolve demo" in readme
