"""The docs stay true to the code: the CLI reference is generated, links resolve, the README is short."""

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


def test_the_cli_reference_is_what_the_app_generates():
    import typer

    pinned = re.search(r"^typer==(\S+)", (ROOT / "constraints" / "cpu.txt").read_text(), re.MULTILINE).group(
        1
    )
    if typer.__version__ != pinned:  # e.g. a GPU install without the constraints file
        pytest.skip(f"docs/cli.md is rendered by typer {pinned}; this is {typer.__version__}")
    spec = importlib.util.spec_from_file_location("cli_docs", ROOT / "scripts" / "cli_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.render() == (ROOT / "docs" / "cli.md").read_text(), "run scripts/cli_docs.py"


def test_relative_links_in_the_readme_and_docs_resolve():
    broken = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target, _ in LINK.findall(page.read_text(encoding="utf-8")):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} → {target}")
    assert not broken, broken


def test_the_readme_fits_on_a_screen_or_two():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 200
