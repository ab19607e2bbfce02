{#- Kept in step with papersys.migration.legacy.DEFECT_KINDS (a test checks it). -#}
{%- set kinds = {
    "none_year_file": "file of rows with a null year (*_None.parquet); rows = its rows",
    "missing_column": "an expected column is absent from the file (detail names it)",
    "missing_manifest": "an embeddings alias folder has no readable manifest.json",
    "manifest_mismatch": "manifest.json disagrees with the files (rows, dimension)",
    "invalid_id": "id is not an arXiv id and cannot be repaired; row not imported",
    "repaired_id": "id damaged by float parsing, repaired (detail: the damaged id)",
    "ambiguous_id": "damaged id whose repair is also present undamaged; row not imported",
    "duplicate_id_in_file": "id seen earlier in the same file (the later copy wins)",
    "duplicate_id_across_files": "id seen in an earlier file (the later copy wins)",
    "null_created": "no submission date (created/publish_date/published_at)",
    "unknown_id": "vector for an id absent from the metadata; not imported",
    "null_vector": "no vector for this model in the row (the paper stays absent)",
    "wrong_dim": "vector length differs from the model's dimension; rejected",
    "nan": "vector has NaN/inf values (failed inference); rejected",
    "zero": "all-zero placeholder vector; rejected",
    "f16_vectors": "vectors stored as float16, widened to float32 (rows = vectors)"
} %}
{#- Every defect of the latest completed run of each legacy source, one row per finding. -#}
with runs as (
    -- The latest completed run of each source: a rerun supersedes the earlier report.
    select *
    from {{ source('migration', 'migration_runs') }}
    where status = 'completed'
    qualify row_number() over (partition by source order by started_at desc) = 1
)

select
    d.run_id,
    r.source,
    r.shape,
    d.file,
    d.year,
    d.model,
    d.kind,
    case d.kind
        {%- for kind, meaning in kinds.items() %}
        when '{{ kind }}' then '{{ meaning | replace("'", "''") }}'
        {%- endfor %}
    end as kind_description,
    d.arxiv_id,
    d.detail,
    d.rows,
    d.recorded_at
from {{ source('migration', 'migration_defects') }} as d
join runs as r on r.run_id = d.run_id
