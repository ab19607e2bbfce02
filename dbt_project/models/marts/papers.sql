{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='arxiv_id',
    partitioned_by=['year'],
    on_schema_change='append_new_columns',
    pre_hook="{{ delete_tombstoned_papers() }}",
) }}

{#-
  One row per paper: the latest OAI record (arXivRaw or arXiv), else legacy metadata.
  Full build: every raw row. Incremental: only raw/legacy rows committed since the last run
  (row id watermark, see papers_watermark); a new
  record replaces the stored paper when its datestamp is at least as recent (delete+insert on
  arxiv_id), tombstones are removed by the pre-hook.
-#}

with
{% if is_incremental() %}
latest as (
    {{ papers_new_raw_latest() }}
),

winners as (
    select latest.*
    from latest
    left join {{ this }} as p using (arxiv_id)
    where not latest.deleted
      and (p.arxiv_id is null
           or p.metadata_source <> 'oai'
           or coalesce(latest.datestamp >= p.datestamp, true))
),

oai as (
    {{ parse_arxiv_payload('winners') }}
),

legacy as (
    select *
    from ({{ legacy_latest('rowid > ' ~ papers_watermark('legacy')) }}) as new_legacy
    where arxiv_id not in (select arxiv_id from {{ ref('stg_raw_records') }})
),
{% else %}
oai as (
    select * from {{ ref('int_arxiv_records') }}
    where not deleted
),

legacy as (
    select *
    from {{ ref('stg_legacy_papers') }}
    -- OAI wins: a paper OAI knows (even as a tombstone) never comes from legacy data.
    where arxiv_id not in (select arxiv_id from {{ ref('stg_raw_records') }})
),
{% endif %}

combined as (
    select
        arxiv_id, title, abstract, authors, categories, primary_category, submitted_at,
        updated_at, version_count, doi, journal_ref, comments, license, datestamp,
        metadata_format, 'oai' as metadata_source, landed_at, raw_row_id as source_row_id
    from oai
    union all
    select
        arxiv_id, title, abstract, authors, categories, primary_category, submitted_at,
        updated_at, null::bigint as version_count, doi, journal_ref, comments, license,
        null::date as datestamp, 'legacy' as metadata_format, 'legacy' as metadata_source,
        landed_at, legacy_row_id as source_row_id
    from legacy
)

select
    arxiv_id,
    title,
    abstract,
    authors,
    categories,
    primary_category,
    submitted_at,
    updated_at,
    version_count::integer as version_count,
    year(submitted_at)::integer as year,
    doi,
    journal_ref,
    comments,
    license,
    datestamp,
    sha256({{ paper_text('title', 'abstract') }}) as text_sha256,
    metadata_format,
    metadata_source,
    landed_at,
    source_row_id
from combined
