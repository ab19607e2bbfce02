{#- Kept in step with papersys.migration.legacy.DEFECT_KINDS (a test checks it). -#}
{%- set kinds = [
    "none_year_file",
    "missing_column",
    "missing_manifest",
    "manifest_mismatch",
    "invalid_id",
    "repaired_id",
    "ambiguous_id",
    "duplicate_id_in_file",
    "duplicate_id_across_files",
    "null_created",
    "unknown_id",
    "null_vector",
    "wrong_dim",
    "nan",
    "zero",
    "f16_vectors"
] %}
{#- One row per file (and model) of the latest completed run of each legacy source. -#}
with runs as (
    -- The latest completed run of each source: a rerun supersedes the earlier report.
    select *
    from {{ source('migration', 'migration_runs') }}
    where status = 'completed'
    qualify row_number() over (partition by source order by started_at desc) = 1
),

files as (
    select f.*
    from {{ source('migration', 'migration_files') }} as f
    semi join runs as r on r.run_id = f.run_id
),

defects as (
    select
        d.run_id,
        d.file,
        d.year,
        d.model,
        {%- for kind in kinds %}
        coalesce(sum(d.rows) filter (where d.kind = '{{ kind }}'), 0)::bigint as {{ kind }},
        {%- endfor %}
        sum(d.rows)::bigint as defects
    from {{ source('migration', 'migration_defects') }} as d
    semi join runs as r on r.run_id = d.run_id
    group by all
),

keys as (
    select run_id, file, year, model from files
    union
    select run_id, file, year, model from defects
)

select
    k.run_id || '|' || k.file || '|' || coalesce(k.model, '') as report_key,
    k.run_id,
    r.source,
    r.shape,
    r.started_at as run_started_at,
    k.file,
    k.year,
    k.model,
    coalesce(f.role, 'manifest') as role,
    coalesce(f.rows, 0) as rows_read,
    coalesce(f.papers_landed, 0) as papers_landed,
    coalesce(f.vectors_stored, 0) as vectors_stored,
    coalesce(f.vectors_rejected, 0) as vectors_rejected,
    f.vector_type,
    f.sha256,
    f.bytes,
    {%- for kind in kinds %}
    coalesce(d.{{ kind }}, 0) as {{ kind }},
    {%- endfor %}
    coalesce(d.defects, 0) as defects
from keys as k
join runs as r on r.run_id = k.run_id
left join files as f
    on f.run_id = k.run_id and f.file = k.file and f.model is not distinct from k.model
left join defects as d
    on d.run_id = k.run_id and d.file = k.file and d.model is not distinct from k.model
