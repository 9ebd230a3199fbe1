"""Citations of the methods and probe pages point at files in the repository."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["README.md", "docs", "app", "workers", "models", "experiments", "benchmarks"]
CITATION = re.compile(r"docs/([a-z_]+)\.md(?: §(\d+))?")


def _texts():
    for entry in SOURCES:
        path = ROOT / entry
        for file in [path] if path.is_file() else sorted([*path.rglob("*.py"), *path.rglob("*.md")]):
            yield file, file.read_text()


def _sections(page: str) -> set[str]:
    return set(re.findall(r"^## (\d+)\. ", (ROOT / "docs" / f"{page}.md").read_text(), flags=re.M))


def test_every_cited_page_and_section_exists():
    cited = 0
    for file, text in _texts():
        for page, section in CITATION.findall(text):
            cited += 1
            assert (ROOT / "docs" / f"{page}.md").is_file(), f"{file} cites docs/{page}.md"
            if section:
                assert section in _sections(page), f"{file} cites docs/{page}.md §{section}"
    assert cited >= 20  # the probes' docstrings cite their sections


def test_nothing_cites_the_methods_page_outside_the_repository():
    for file, text in _texts():
        assert "METHODS.md" not in text and "shared/" not in text, file
