"""
The documentation a newcomer reads: a short README (its test command, a Citing section with
BibTeX), the Apache-2.0 LICENSE, relative links of the README and the docs that resolve, and the
``ir_d2.`` names and tool options they mention, which must exist.
"""

import importlib
import importlib.util
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


def _resolve(dotted: str):
    """The object ``ir_d2.a.b.C`` names: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attribute in parts[i:]:
            obj = getattr(obj, attribute)
        return obj
    raise ImportError(dotted)


@pytest.mark.parametrize("path", LINKED, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_ir_d2_name_the_docs_mention_exists(path):
    for name in sorted(set(re.findall(r"\bir_d2(?:\.[A-Za-z_]\w*)+", path.read_text()))):
        try:
            _resolve(name)
        except (ImportError, AttributeError) as e:
            pytest.fail(f"{path.name}: {name} does not exist ({e})")


def _commands(text: str):
    """The command lines of the fenced blocks (continuations joined) and of inline code."""
    for block in re.findall(r"^```(?:bash|sh)?\n(.*?)^```", text, flags=re.S | re.M):
        yield from re.sub(r"\\\n\s*", " ", block).splitlines()
    yield from re.findall(r"`([^`]*python3? [^`]*)`", _unfenced(text).replace("\n", " "))


def _tool_options(module: str) -> set:
    """Every option string the tool's source declares (and detectron2's, for train_net)."""
    source = Path(importlib.util.find_spec(module).origin).read_text()
    options = set(re.findall(r"""["'](--[a-z0-9][a-z0-9-]*)["']""", source)) | {"--help"}
    if "add_opts_arguments" in source:
        options.add("--opts")
    if "default_argument_parser" in source:
        from detectron2.engine import default_argument_parser

        options |= set(default_argument_parser()._option_string_actions)
    return options


SCRIPTS = {"projects/demo.py": "ir_d2.tools.demo", "projects/train_net.py": "ir_d2.tools.train_net"}
CONFIG_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+$")


@pytest.mark.parametrize("path", LINKED, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_the_ir_d2_commands_the_docs_show_take_the_options_they_show(path):
    """Each option of a ``python -m ir_d2.tools.X`` / ``projects/*.py`` command exists, and comes
    before the trailing ``KEY VALUE`` overrides (which take the rest of the line), except in the
    demo, which takes the pairs anywhere."""
    for command in _commands(path.read_text()):
        words = command.split("#")[0].split()
        module = next((w for w in words if w.startswith("ir_d2.tools.")), None)
        module = module or next((SCRIPTS[w] for w in words if w in SCRIPTS), None)
        if module is None:
            continue
        options = _tool_options(module)
        for word in re.findall(r"(?<![\w-])--[a-z0-9][a-z0-9-]*", " ".join(words)):
            assert word in options, f"{path.name}: {module} has no {word}: {command.strip()}"
        if module != "ir_d2.tools.demo":
            pairs = [i for i, w in enumerate(words) if CONFIG_KEY.match(w)]
            late = [w for w in words[pairs[0] :] if w.startswith("--")] if pairs else []
            first = late[0] if late else "--opts"
            assert first == "--opts", f"{path.name}: {first} after KEY VALUE pairs: {command}"
