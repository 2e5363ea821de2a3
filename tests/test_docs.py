"""The documentation stays navigable: the README is a short front page and every concern lives on its own
page under docs/. A moved section leaves relative links (images, sample reports, other sections) that point
nowhere unless something checks them, and a front page grows back to a thousand lines one paragraph at a
time; these tests stop both.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 350

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _prose(text: str) -> str:
    """The text outside fenced code blocks and inline code, where a bracket is markdown, not code."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a markdown file: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).strip().replace(" ", "-") for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _links(path: Path) -> list[str]:
    return LINK.findall(_prose(path.read_text(encoding="utf-8")))


def test_every_relative_link_points_to_a_file_that_exists():
    broken = []
    for page in _pages():
        for target in _links(page):
            if re.match(r"^[a-z]+:", target):  # https:, mailto: - not ours to check offline
                continue
            file, _, anchor = target.partition("#")
            resolved = (page.parent / file).resolve() if file else page
            if not resolved.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
            elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert broken == []


def test_readme_stays_a_short_front_page():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines < MAX_README_LINES, f"README.md has {lines} lines; move the detail to a page under docs/"


def test_every_docs_page_is_linked_from_the_readme_and_the_index():
    pages = {p.name for p in DOCS.glob("*.md")} - {"README.md"}
    from_readme = {Path(t.partition("#")[0]).name for t in _links(README) if t.startswith("docs/")}
    from_index = {Path(t.partition("#")[0]).name for t in _links(DOCS / "README.md")}
    assert pages - from_readme == set()
    assert pages - from_index == set()


def test_the_readme_keeps_the_set_up_commands_ci_runs():
    """.ci/run runs `make test`, "the README's test command": the front page must still say it."""
    readme = README.read_text(encoding="utf-8")
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "make demo" in readme and "make test" in readme
