"""Every link in the README and docs/ leads somewhere: a file of the repository, and a heading in it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens."""
    text = FENCE.sub("", page.read_text())
    ids = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        ids.add(slug)
    return ids


def links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text())
    text = re.sub(r"`[^`\n]*`", "", text)
    return [a or b for a, b in LINK.findall(text)]


def local_links() -> list[tuple[Path, str]]:
    return [
        (page, target)
        for page in PAGES
        for target in links(page)
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target)  # https:, mailto:, gs: are not files here
    ]


def test_the_readme_links_to_every_page_of_docs() -> None:
    linked = {(ROOT / target.split("#")[0]).resolve() for page, target in local_links() if page.name == "README.md"}
    assert {page.resolve() for page in PAGES[1:]} <= linked


@pytest.mark.parametrize(("page", "target"), local_links(), ids=lambda v: v.name if isinstance(v, Path) else v)
def test_the_link_resolves(page: Path, target: str) -> None:
    path, _, anchor = target.partition("#")
    destination = (page.parent / path).resolve() if path else page
    assert destination.exists(), f"{page.name} links to {target}, which does not exist"
    if anchor:
        assert anchor in anchors(destination), f"{page.name} links to {target}: no such heading"


def test_the_readme_fits_on_a_few_screens() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300
