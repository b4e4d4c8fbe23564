"""One distribution per product: each wheel holds its own package and depends on nothing of ours.

The wheels are built as `pip wheel --no-deps` would build them: through each pyproject.toml's own
build backend (PEP 517), here without build isolation so that no network is needed.
"""

from __future__ import annotations

import ast
import email.parser
import re
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[1]
#: distribution -> (its folder, its import package, its console scripts)
DISTRIBUTIONS = {
    "tap-qualys": (REPO, "tap_qualys", {"tap-qualys"}),
    "target-qualys-sqlite": (
        REPO / "packages" / "target-qualys-sqlite",
        "target_qualys_sqlite",
        # SQLite mode and Postgres mode (the `postgres` extra).
        {"target-qualys-sqlite", "target-qualys-postgres"},
    ),
    "qualys-simulator": (
        REPO / "packages" / "qualys-simulator",
        "qualys_simulator",
        {"qualys-simulator"},
    ),
    "qualys-report": (
        REPO / "packages" / "qualys-report",
        "qualys_report",
        {"qualys-report"},
    ),
}
OUR_PACKAGES = {package for _, package, _ in DISTRIBUTIONS.values()}
BUILD = (
    "import importlib, sys; "
    "backend = importlib.import_module(sys.argv[1]); "
    "print(backend.build_wheel(sys.argv[2]))"
)


@dataclass
class Wheel:
    names: list[str]
    metadata: email.message.Message
    entry_points: str

    def requirements(self) -> list[str]:
        """Requires-Dist names, extras' requirements included, lowercased."""
        return [
            re.split(r"[ ;<>=!~\[(]", requirement, maxsplit=1)[0].lower()
            for requirement in self.metadata.get_all("Requires-Dist") or []
        ]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Wheel]:
    built = {}
    for distribution, (folder, _, _) in DISTRIBUTIONS.items():
        backend = tomllib.loads((folder / "pyproject.toml").read_text())["build-system"][
            "build-backend"
        ]
        out = tmp_path_factory.mktemp(distribution)
        result = subprocess.run(
            [sys.executable, "-c", BUILD, backend, str(out)],
            cwd=folder,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        name = result.stdout.strip().splitlines()[-1]
        with zipfile.ZipFile(out / name) as wheel:
            names = wheel.namelist()
            dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
            metadata = email.parser.Parser().parsestr(wheel.read(f"{dist_info}/METADATA").decode())
            entry_points = wheel.read(f"{dist_info}/entry_points.txt").decode()
        built[distribution] = Wheel(names, metadata, entry_points)
    return built


@pytest.mark.parametrize("distribution", sorted(DISTRIBUTIONS))
def test_each_wheel_holds_its_own_package_only(wheels: dict[str, Wheel], distribution: str) -> None:
    _, package, scripts = DISTRIBUTIONS[distribution]
    wheel = wheels[distribution]
    assert wheel.metadata["Name"] == distribution
    top_level = {name.split("/")[0] for name in wheel.names}
    dist_info = f"{package}-{wheel.metadata['Version']}.dist-info"
    assert top_level == {package, dist_info}, top_level
    assert f"{package}/__init__.py" in wheel.names
    console_scripts = re.findall(r"^([\w-]+) = ", wheel.entry_points, flags=re.MULTILINE)
    assert set(console_scripts) == scripts


def test_the_tap_wheel_carries_its_stream_schemas(wheels: dict[str, Wheel]) -> None:
    schemas = sorted(n for n in wheels["tap-qualys"].names if n.startswith("tap_qualys/schemas/"))
    assert "tap_qualys/schemas/host_detections.json" in schemas


@pytest.mark.parametrize("distribution", sorted(DISTRIBUTIONS))
def test_no_wheel_depends_on_another_of_ours(wheels: dict[str, Wheel], distribution: str) -> None:
    """Installing the tap (the Hub's pip_url) installs neither the target nor the simulator, and
    no extra of any distribution pulls in the simulator or the test tools."""
    requirements = set(wheels[distribution].requirements())
    ours = {
        "tap-qualys",
        "target-qualys-sqlite",
        "qualys-simulator",
        "target-sqlite",
        "qualys-report",
    }
    assert requirements & ours == set()
    tools = {"pytest", "ruff", "mypy", "moto", "orjson", "xmltodict", "py-spy"}
    assert requirements & tools == set()


def test_only_the_target_and_the_report_have_an_extra(wheels: dict[str, Wheel]) -> None:
    extras = {name: wheel.metadata.get_all("Provides-Extra") for name, wheel in wheels.items()}
    assert extras == {
        "tap-qualys": None,
        "target-qualys-sqlite": ["postgres", "s3"],
        "qualys-simulator": None,
        "qualys-report": ["postgres"],
    }
    assert "qualys-simulator" not in wheels["tap-qualys"].requirements()
    assert wheels["qualys-simulator"].requirements() == []
    # The report uses the standard library only; its postgres extra brings the driver.
    assert wheels["qualys-report"].requirements() == ["psycopg2-binary"]


@pytest.mark.parametrize("distribution", sorted(DISTRIBUTIONS))
def test_no_package_imports_another_of_ours(distribution: str) -> None:
    """What the metadata promises: each package runs without the others installed."""
    folder, package, _ = DISTRIBUTIONS[distribution]
    others = OUR_PACKAGES - {package}
    imported = []
    for path in sorted((folder / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            imported += [
                f"{path.relative_to(REPO)}: {name}"
                for name in names
                if name.split(".")[0] in others
            ]
    assert imported == []


def test_the_development_tools_are_dependency_groups() -> None:
    """The simulator, the test tools and the benchmarks' parsers come only with the groups."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    groups = project["dependency-groups"]
    assert "qualys-simulator" in groups["dev"]
    assert any(requirement.startswith("target-qualys-sqlite") for requirement in groups["dev"])
    bench = {re.split(r"[<>=]", requirement)[0] for requirement in groups["bench"]}
    assert bench == {"orjson", "xmltodict", "py-spy"}
    assert "optional-dependencies" not in project["project"]
    assert set(project["tool"]["uv"]["workspace"]["members"]) == {
        "packages/target-qualys-sqlite",
        "packages/qualys-simulator",
        "packages/qualys-report",
    }


def test_the_tap_sdist_holds_the_tap_only(tmp_path: Path) -> None:
    build = "import sys; from hatchling.build import build_sdist; print(build_sdist(sys.argv[1]))"
    result = subprocess.run(
        [sys.executable, "-c", build, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with tarfile.open(tmp_path / result.stdout.strip().splitlines()[-1]) as sdist:
        top_level = {name.split("/")[1] for name in sdist.getnames() if "/" in name}
    assert "tap_qualys" in top_level
    assert top_level & {"packages", "tests", "benchmarks", "scripts", "uv.lock"} == set()
