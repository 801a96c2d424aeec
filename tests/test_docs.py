"""The docs stand alone: no citation of files outside the repository, no dead relative links, a short README."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Markdown links and images: [text](target) / ![alt](target); the target ends at whitespace or ')'.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
OUTSIDE = re.compile(r"METHOD\.md|\.\./shared|shared/docs")


def markdown_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    files += sorted((ROOT / "benchmarks").rglob("*.md"))
    return [f for f in files if f.is_file()]


def relative_links(text: str) -> list[str]:
    """Targets of the Markdown links in `text` that point into the repository (no URL, no pure anchor)."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # links inside code blocks are not links
    targets = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue
        targets.append(target.split("#", 1)[0])
    return targets


def test_link_pattern_finds_links_and_skips_urls_and_code():
    text = ("see [a](docs/a.md#x), ![fig](img/f.png \"t\") and [web](https://x.org/y), [top](#top)\n"
            "```\n[not](a/link.md)\n```\n")
    assert relative_links(text) == ["docs/a.md", "img/f.png"]


def test_nothing_cites_a_path_outside_the_repository():
    sources = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "src").rglob("*.py")]
    offenders = [f"{p.relative_to(ROOT)}:{i}" for p in sources if p.is_file()
                 for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if OUTSIDE.search(line)]
    assert not offenders, f"cites a file outside the repository (use docs/method.md): {offenders}"


def test_user_docs_cite_no_issue_numbers():
    issue = re.compile(r"\bissues? #?\d+|(?<![\w/&])#\d+\b", re.I)
    offenders = [f"{p.relative_to(ROOT)}:{i}" for p in markdown_files()
                 for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if issue.search(line)]
    assert not offenders, f"user docs cite issue numbers a reader cannot see: {offenders}"


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_existing_files(path):
    dead = [t for t in relative_links(path.read_text(encoding="utf-8")) if not (path.parent / t).exists()]
    assert not dead, f"{path.relative_to(ROOT)} links to missing files: {dead}"


def test_method_spec_exists_and_cites_the_paper():
    text = (ROOT / "docs" / "method.md").read_text(encoding="utf-8")
    assert "https://arxiv.org/abs/2512.12193" in text
    assert "https://arxiv.org/abs/2512.12193" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_license_and_citation_are_present():
    assert "Apache License" in (ROOT / "LICENSE").read_text(encoding="utf-8")
    yaml = pytest.importorskip("yaml")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] and cff["license"] == "Apache-2.0"
    assert "2512.12193" in str(cff["preferred-citation"]["identifiers"])


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 160, f"README.md has {len(lines)} lines; keep it under 160 and move details to docs/"
