"""The repository stands on its own: nothing in it points at files a clone does not have.

The project's Qualys API reference is `docs/qualys-api.md`; code comments cite its sections
("docs/qualys-api.md §7"), so every cited section must exist there.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# "shared/" followed by a folder the project's inputs lived in, or a path leaving the repository.
OUTSIDE = re.compile(r"\.\./shared|shared/(docs|seeds|hooks)\b")
SECTION = re.compile(r"qualys-api\.md\)? (?:§|section )(\d+)")


def tracked_text_files() -> list[Path]:
    names = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    files = []
    for name in names:
        path = REPO / name
        if path.suffix in {".py", ".md", ".yml", ".yaml", ".toml", ".sh", ".dtd", ".json", ".txt"}:
            files.append(path)
    return files


def test_no_reference_leaves_the_repository() -> None:
    offending = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in tracked_text_files()
        if path != Path(__file__).resolve()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert offending == []


def test_every_cited_section_of_the_api_reference_exists() -> None:
    reference = (REPO / "docs" / "qualys-api.md").read_text(encoding="utf-8")
    sections = {int(n) for n in re.findall(r"^## (\d+)\. ", reference, flags=re.MULTILINE)}
    cited = {
        (str(path.relative_to(REPO)), int(n))
        for path in tracked_text_files()
        for n in SECTION.findall(path.read_text(encoding="utf-8"))
    }
    assert cited, "no citation found: the pattern no longer matches how code cites the reference"
    assert sorted(c for c in cited if c[1] not in sections) == []
