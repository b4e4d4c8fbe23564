"""README.md stays true: its settings table is generated, its set-up commands are the real ones."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


NOT_RUN = re.compile(r"<!-- not run: (?P<reason>[^>]+?) -->\n$")


@dataclass(frozen=True)
class ShellBlock:
    """A ```bash block of README.md; `not_run` is the reason its marker gives, if any."""

    line: int
    section: str
    text: str
    not_run: str | None


def shell_blocks(readme: str = README) -> list[ShellBlock]:
    blocks = []
    for match in re.finditer(r"^```(?:bash|sh)\n(.*?)^```", readme, re.MULTILINE | re.DOTALL):
        before = readme[: match.start()]
        marker = NOT_RUN.search(before[before.rstrip("\n").rfind("\n") + 1 :])
        headings = re.findall(r"^#+ (.+)$", before, re.MULTILINE)
        blocks.append(
            ShellBlock(
                line=before.count("\n") + 1,
                section=headings[-1] if headings else "",
                text=match.group(1),
                not_run=marker.group("reason") if marker else None,
            )
        )
    return blocks


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


def test_only_marked_shell_blocks_are_left_out() -> None:
    """tests/e2e/test_readme_commands.py runs every other block; these must stay runnable."""
    blocks = shell_blocks()
    skipped = [block for block in blocks if block.not_run]
    assert all(len(block.not_run or "") > 10 for block in skipped), "a marker without a reason"
    # A marker may only sit directly above a block: anywhere else it would skip nothing.
    assert README.count("<!-- not run:") == len(skipped)
    run_sections = {block.section for block in blocks if not block.not_run}
    assert run_sections >= {"Settings", "Switching to Postgres / S3", "Running on a schedule"}
    for command in ("meltano run qualys-to-postgres", "target-s3", "meltano run qualys-to-sqlite"):
        assert any(command in block.text for block in blocks if not block.not_run), command


def test_no_meltano_3_config_syntax() -> None:
    """Meltano 4 has `meltano config set PLUGIN NAME VALUE` and `meltano config list PLUGIN`."""
    old = re.findall(r"meltano (?:--\S+ )*config [a-z][\w-]* (?:set|list)\b", README)
    assert not old, old
