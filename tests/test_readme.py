"""README.md is the front door: its relative links resolve, and every page of docs/ is reachable from it.

The docs site itself is checked by ``mkdocs build --strict`` (``make docs``, part of ``make test``);
these tests cover what mkdocs does not see: the README, which is read on GitHub and PyPI.
"""
import re
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"

# [text](target) and ![alt](target), outside code blocks and inline code.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _prose(text: str) -> str:
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def _links(path: Path) -> list[str]:
    return LINK.findall(_prose(path.read_text(encoding="utf-8")))


def _slug(heading: str) -> str:
    # Python-Markdown's toc slugify (what mkdocs and GitHub agree on for these headings).
    text = re.sub(r"`|\*\*|\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    return {_slug(m) for m in re.findall(r"^#{1,6}\s+(.*?)\s*#*\s*$", text, flags=re.M)}


def _local(target: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", target) and not target.startswith("#")


def test_readme_is_a_front_door_under_200_lines():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 200


def test_readme_relative_links_resolve():
    links = [t for t in _links(README) if _local(t)]
    assert links, "README.md links to no page of docs/"
    for target in links:
        path, _, anchor = unquote(target).partition("#")
        file = (README.parent / path).resolve()
        assert file.is_file(), f"README.md links to {target}: {file} does not exist"
        if anchor and file.suffix == ".md":
            assert anchor in _anchors(file), f"README.md links to {target}: no heading with that anchor"


def test_every_docs_page_is_reachable_from_the_readme():
    seen, todo = set(), [README.resolve()]
    while todo:
        page = todo.pop()
        if page in seen:
            continue
        seen.add(page)
        for target in _links(page):
            path = unquote(target).partition("#")[0]
            if _local(target) and path.endswith(".md"):
                file = (page.parent / path).resolve()
                assert file.is_file(), f"{page.relative_to(ROOT)} links to {target}, which does not exist"
                todo.append(file)
    pages = {p.resolve() for p in DOCS.rglob("*.md")}
    assert not pages - seen, f"not reachable from README.md: {sorted(str(p.relative_to(ROOT)) for p in pages - seen)}"
