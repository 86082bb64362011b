"""The package layers of docs/architecture.md: every import inside rulewise points down (or
sideways within a layer), never up."""

import ast
from pathlib import Path

import pytest

# low → high; packages on one line are one layer (docs/architecture.md, "Layers")
LAYERS = [
    {"errors", "fileio", "config", "runtime", "memory", "progress", "hub", "endpoint"},
    {"rules", "models"},
    {"generation", "training"},
    {"evaluation"},
    {"data", "serving"},
    {"saro", "rl"},
    {"pipeline"},
    {"cli"},
]
LEVEL = {package: level for level, packages in enumerate(LAYERS) for package in packages}
ROOT = Path(__file__).resolve().parents[1] / "src" / "rulewise"


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rulewise."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("rulewise.")}
    return found


def package_of(path: Path) -> str:
    return path.relative_to(ROOT).parts[0].removesuffix(".py")


def test_every_package_has_a_layer():
    packages = {package_of(p) for p in ROOT.rglob("*.py")} - {"__init__"}
    assert packages <= set(LEVEL), sorted(packages - set(LEVEL))


def test_no_import_points_upward():
    upward = [
        f"{path.relative_to(ROOT)} imports rulewise.{target}"
        for path in ROOT.rglob("*.py")
        if package_of(path) in LEVEL
        for target in imported_packages(path)
        if LEVEL.get(target, -1) > LEVEL[package_of(path)]
    ]
    assert not upward, upward


@pytest.mark.parametrize("source", ["from rulewise.saro.jobs import x\n", "import rulewise.cli.main\n"])
def test_an_upward_import_is_seen(tmp_path, source):
    path = tmp_path / "m.py"
    path.write_text(source)
    assert imported_packages(path) & {"saro", "cli"}
