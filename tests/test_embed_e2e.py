"""End to end on the real dbt project: legacy metadata -> dbt build -> embed-gaps -> no gaps."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from test_embed import real_papers

from papersys import lake, transform
from papersys.config import PACKAGED_MINILM, Config
from papersys.embedding import embed_gaps

pytestmark = pytest.mark.slow


def test_transform_then_embed_gaps_leaves_no_gaps(con, config: Config):
    papers = real_papers()

    def land() -> None:
        con.executemany(
            """INSERT INTO legacy_papers (arxiv_id, title, abstract, authors, categories,
                   primary_category, submitted_at, updated_at, landed_at)
               VALUES (?, ?, ?, ['A. Author'], ['hep-th'], 'hep-th', ?, ?, now())""",
            [
                [arxiv_id, title, abstract, dt.date(2015, 1, 2), dt.date(2015, 1, 2)]
                for arxiv_id, title, abstract in papers
            ],
        )

    lake.run_transaction(con, land)
    transform.run_build(config)
    gaps = con.execute(
        "SELECT arxiv_id, reason, text, text_sha256 FROM missing_embeddings WHERE model = 'minilm'"
    ).fetchall()
    assert {g[0] for g in gaps} == {p[0] for p in papers}
    assert {g[1] for g in gaps} == {"absent"}

    [run] = embed_gaps(config, con=con)
    assert (run.status, run.embedded, run.rejects) == ("done", len(papers), [])
    assert con.execute("SELECT count(*) FROM missing_embeddings").fetchone() == (0,)
    stored = dict(con.execute("SELECT arxiv_id, text_sha256 FROM embeddings_minilm").fetchall())
    # The stored hash is the hash of the exact text the view handed out, and of the paper.
    assert stored == {g[0]: g[3] for g in gaps}
    assert all(hashlib.sha256(g[2].encode()).hexdigest() == g[3] for g in gaps)
    assert con.execute("SELECT DISTINCT model_id FROM embeddings_minilm").fetchall() == [
        (PACKAGED_MINILM,)
    ]
