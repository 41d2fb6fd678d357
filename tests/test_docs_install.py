"""Issue 20: the docs install extras from a checkout (`durably` is not on PyPI) and link only inside the
repository."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", REPO / "SECURITY.md", *sorted((REPO / "docs").glob("*.md"))]


def test_extras_are_installed_from_a_checkout() -> None:
    for doc in DOCS:
        text = doc.read_text()
        assert not re.search(r"pip install ['\"]?durably", text), f"{doc.name} installs durably from PyPI"
    assert "pip install -e '.[openai]'" in (REPO / "README.md").read_text()


def test_relative_links_stay_in_the_repository() -> None:
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)", doc.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # an absolute URL
            path = (doc.parent / target).resolve()
            assert path.is_relative_to(REPO), f"{doc.name} links outside the repository: {target}"
            assert path.exists(), f"{doc.name} links to a missing file: {target}"
    assert "DESIGN.md" not in (REPO / "README.md").read_text() or (REPO / "DESIGN.md").exists()
