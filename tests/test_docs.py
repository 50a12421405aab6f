"""
The README and docs/ hold together: every relative link and image resolves (to a file, and to a heading where it names
one), every "section X.Y" they or the code cite is a heading of docs/method.md, and the README's Python blocks use no
undefined name.
"""

import ast
import builtins
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
CODE = [
    *sorted((ROOT / "sb3_polygrad").rglob("*.py")),
    *sorted((ROOT / "benchmarks").rglob("*.py")),
    *sorted((ROOT / "tests").glob("*.py")),
    *sorted((ROOT / "hyperparams").glob("*.yml")),
    ROOT / "setup.py",
]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
# "section 1.4", "sections 3.4 and 3.5"; a citation of another paper ("Nichol & Dhariwal 2021, section 4") is not ours.
CITATION = re.compile(r"(?<!\d{4}, )\bsections? (\d+(?:\.\d+)?)(?: and (\d+(?:\.\d+)?))?")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def headings(path: Path) -> list[str]:
    return [line.lstrip("#").strip() for line in FENCE.sub("", path.read_text()).splitlines() if line.startswith("#")]


def method_sections() -> set[str]:
    numbers = (re.match(r"(\d+(?:\.\d+)?)\.? ", heading) for heading in headings(ROOT / "docs" / "method.md"))
    return {match.group(1) for match in numbers if match}


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path):
    for target in LINK.findall(FENCE.sub("", path.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # a web address
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        assert linked.exists(), f"{path.name}: {target} does not exist"
        if anchor:
            assert linked.suffix == ".md", f"{path.name}: {target} names a heading of a file that has none"
            assert anchor in {slug(h) for h in headings(linked)}, f"{path.name}: {target}: no such heading"


def test_method_note_has_numbered_sections():
    assert {"1.1", "1.4", "1.5", "2.3", "3.4", "4.1", "4.4"} <= method_sections()


@pytest.mark.parametrize("path", DOCS + CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_cited_section_is_a_heading_of_the_method_note(path):
    sections = method_sections()
    for match in CITATION.finditer(path.read_text()):
        for number in filter(None, match.groups()):
            assert number in sections, f"{path.relative_to(ROOT)} cites section {number}, not in docs/method.md"


@pytest.mark.parametrize("path", CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_code_names_only_docs_that_exist(path):
    text, name = path.read_text(), str(path.relative_to(ROOT))
    for doc in re.findall(r"\bdocs/[\w/.-]+\.md\b", text):
        assert (ROOT / doc).exists(), f"{name} names {doc}"
    if path != Path(__file__):
        assert "polygrad-method.md" not in text, f"{name} cites a note the repository does not ship: use docs/method.md"


def test_readme_python_blocks_use_no_undefined_name():
    blocks = re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(), re.S | re.M)
    assert blocks
    for block in blocks:
        tree = ast.parse(block)
        defined = set(dir(builtins))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                defined |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                defined.add(node.id)
        used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
        assert used <= defined, f"undefined in the README: {sorted(used - defined)}"
