"""
The documentation a newcomer reads: a short README (its test command, a Citing section with
BibTeX), the Apache-2.0 LICENSE, and relative links of the README and the docs that resolve.
"""

import re
import unicodedata
from pathlib import Path

import pytest
from conftest import REPO_ROOT

README = REPO_ROOT / "README.md"
DOCS = sorted((REPO_ROOT / "docs").glob("*.md"))
LINKED = [
    README,
    REPO_ROOT / "MODEL_ZOO.md",
    REPO_ROOT / "benchmarks" / "README.md",
    *DOCS,
    *sorted((REPO_ROOT / "projects").glob("*/README.md")),
]
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _unfenced(text: str) -> str:
    return re.sub(r"^(```|~~~).*?^\1", "", text, flags=re.S | re.M)


def _prose(text: str) -> str:
    """The text without fenced code blocks and inline code, where brackets are not links."""
    return re.sub(r"`[^`\n]*`", "", _unfenced(text))


def _anchors(path: Path) -> set:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats -1."""
    anchors, seen = set(), {}
    for line in _unfenced(path.read_text()).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1))  # a link keeps its text
        slug = "".join(
            c
            for c in heading.lower()
            if c in " -_" or unicodedata.category(c)[0] in "LN"  # letters, digits
        ).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def test_the_readme_is_short_and_keeps_the_test_command():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    commands = text.index("./setup.sh main"), text.index("./setup.sh test")
    assert max(commands) < text.index("## Quick start on real IR frames")  # the two come first
    assert "./setup.sh test" in (REPO_ROOT / ".ci" / "run").read_text()  # what CI runs
    for path in LINKED:  # users have their own data layout
        assert "shared/data" not in path.read_text() and "/work/" not in path.read_text(), path


def test_the_license_is_apache_2():
    text = (REPO_ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License\nVersion 2.0, January 2004")
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text and "ir_d2 authors" in text
    assert re.search(r'license\s*=\s*"Apache-2\.0"', (REPO_ROOT / "setup.py").read_text())
    assert "[Apache 2.0 license](LICENSE)" in README.read_text()


def test_the_readme_ends_with_a_citing_section_with_bibtex():
    text = README.read_text()
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    assert headings[-1] == "Citing"
    citing = text[text.index("## Citing") :]
    bibtex = re.search(r"```bibtex\n(.*?)```", citing, re.S).group(1)
    keys = re.findall(r"^@(\w+)\{(\w+),", bibtex, flags=re.M)
    assert {k for _, k in keys} >= {
        "wang2025attention",
        "deng2025sgem",
        "lu2024sirst5k",
        "dai2021acm",  # SIRST
        "li2023dnanet",  # NUDT-SIRST
        "zhang2022isnet",  # IRSTD-1k
        "flir_adas",
    }
    assert bibtex.count("{") == bibtex.count("}")
    for _, key in keys:
        entry = bibtex[bibtex.index(key) :].split("\n@")[0]
        assert "title" in entry and "author" in entry, key


@pytest.mark.parametrize("path", LINKED, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_relative_link_points_at_an_existing_file(path):
    assert path.exists(), path
    for target in LINK.findall(_prose(path.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        assert resolved.exists(), f"{path.name}: {target}"
        assert resolved.is_relative_to(REPO_ROOT), f"{path.name}: {target}"
        if anchor and resolved.suffix == ".md":
            assert anchor in _anchors(resolved), f"{path.name}: {target}"
