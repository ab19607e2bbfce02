-- Open the papersys lake in the DuckDB shell, read-only:
--     duckdb -init sql/attach.sql          (from the repository root, lake at ./lake)
-- For another lake, change the catalog path below (or copy this file). The extensions are the
-- ones papersys installed offline from its pinned packages (run any papersys command once,
-- e.g. `papersys status`, if LOAD fails); nothing is downloaded.
SET autoinstall_known_extensions = false;
LOAD ducklake;
LOAD sqlite_scanner;
-- The catalog records where the data files live, so no DATA_PATH is needed here.
ATTACH IF NOT EXISTS 'ducklake:sqlite:lake/catalog.sqlite' AS lake (READ_ONLY);
USE lake;
-- Try: SELECT year, count(*) FROM papers GROUP BY year ORDER BY year;
--      SELECT * FROM embedding_coverage ORDER BY model, year;
--      SELECT model, reason, count(*) FROM missing_embeddings GROUP BY ALL;
