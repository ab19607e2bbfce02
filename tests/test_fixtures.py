"""The real-abstracts corpus matches its verbatim sources and is big enough for bench/embed.py."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO_ROOT

REAL = REPO_ROOT / "tests" / "fixtures" / "real"


def test_abstracts_jsonl_is_built_from_the_committed_sources() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "build_real_abstracts.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_corpus_holds_2000_distinct_real_papers_with_text() -> None:
    papers = [json.loads(line) for line in (REAL / "abstracts.jsonl").read_text().splitlines()]
    ids = [p["arxiv_id"] for p in papers]
    assert len(ids) == len(set(ids)) >= 2000
    assert all(p["title"] and p["abstract"] for p in papers)
    # Every digest file listed in SOURCES.md is present, and every present one is listed.
    sources = (REAL / "SOURCES.md").read_text()
    for path in (REAL / "digest").glob("*.json"):
        assert f"`digest/{path.name}`" in sources, path.name
