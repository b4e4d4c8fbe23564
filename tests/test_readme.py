"""README.md stays true: its settings table is generated, its set-up commands are the real ones."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def first_screen() -> str:
    """What a reader sees before scrolling: everything before the second `## ` heading."""
    headings = [m.start() for m in re.finditer(r"^## ", README, flags=re.MULTILINE)]
    return README[: headings[1]] if len(headings) > 1 else README


def test_settings_table_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_settings_table.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_first_screen_has_exactly_the_two_setup_commands() -> None:
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", first_screen(), flags=re.DOTALL)
    commands = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    assert [c for c in commands if c] == ["bash scripts/demo.sh", "bash scripts/test.sh"]


def test_ci_runs_the_readme_commands() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in ci
    assert "scripts/check_readme_commands.sh" in ci
    workflow = (REPO / ".github" / "workflows" / "test.yml").read_text()
    assert "bash .ci/run" in workflow


def test_placeholder_sections_exist() -> None:
    for section in ("Simulator", "Settings", "Reliability", "Benchmarks", "Parser choice"):
        assert re.search(rf"^## {section}\b", README, flags=re.MULTILINE), section
