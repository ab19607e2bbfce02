-- Handy queries on the lake (after `duckdb -init sql/attach.sql`).

-- Papers per year and how many have several versions.
SELECT year, count(*) AS papers, count(*) FILTER (WHERE version_count > 1) AS revised
FROM papers GROUP BY year ORDER BY year;

-- Embedding coverage per model (percent of papers with a current vector).
SELECT model, sum(papers) AS papers, sum(embedded) AS embedded,
       round(100.0 * sum(embedded) / nullif(sum(papers), 0), 1) AS pct
FROM embedding_coverage GROUP BY model ORDER BY model;

-- What embed-gaps would do next, per model and reason.
SELECT model, reason, count(*) AS papers FROM missing_embeddings GROUP BY ALL ORDER BY ALL;

-- A paper, all fields.
SELECT * FROM papers WHERE arxiv_id = '0704.0471';

-- Raw history of a paper (every landed record, newest first).
SELECT datestamp, deleted, metadata_prefix, source, landed_at
FROM raw_records WHERE arxiv_id = '0704.0471' ORDER BY datestamp DESC, landed_at DESC;

-- Lake snapshots (time travel: SELECT ... FROM papers AT (VERSION => n)).
SELECT snapshot_id, snapshot_time, changes FROM ducklake_snapshots('lake') ORDER BY snapshot_id DESC LIMIT 10;
