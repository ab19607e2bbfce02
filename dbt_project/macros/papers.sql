{#- The text that gets embedded: title, a newline, abstract (as the legacy vectors were made). -#}
{% macro paper_text(title, abstract) -%}
(coalesce({{ title }}, '') || chr(10) || coalesce({{ abstract }}, ''))
{%- endmacro %}

{#-
  Incremental watermark for rows of `metadata_source` ('oai' | 'legacy'): the highest source
  row id (DuckLake rowid of raw_records / legacy_papers) already in papers. DuckLake assigns row
  ids when a transaction commits, so rows committed later always have higher ids, even when
  their transaction started before the previous run: nothing is skipped, and no lookback is
  needed. Read when the model runs and inlined as a literal so the scan skips older files.
-#}
{% macro papers_watermark(metadata_source) -%}
{%- if execute and is_incremental() -%}
    {%- set result = run_query(
        "select coalesce(max(source_row_id), -1) from " ~ this
        ~ " where metadata_source = '" ~ metadata_source ~ "'") -%}
    {{- return(result.columns[0].values()[0] | int) -}}
{%- endif -%}
{{- return(-1) -}}
{%- endmacro %}

{#- Latest raw record per paper among the rows landed since the watermark. -#}
{% macro papers_new_raw_latest() -%}
with new_raw as (
    select * from {{ ref('stg_raw_records') }}
    where raw_row_id > {{ papers_watermark('oai') }}
)
{{ dedupe_latest('new_raw') }}
{%- endmacro %}

{#-
  pre-hook of papers on incremental runs: remove the papers whose newest record is a tombstone
  at least as recent as the stored version (a legacy-only paper goes whenever OAI deletes it).
-#}
{% macro delete_tombstoned_papers() -%}
{% if is_incremental() %}
delete from {{ this }}
where arxiv_id in (
    select latest.arxiv_id
    from ({{ papers_new_raw_latest() }}) as latest
    join {{ this }} as p using (arxiv_id)
    where latest.deleted
      and (p.metadata_source <> 'oai' or coalesce(latest.datestamp >= p.datestamp, true))
)
{% else %}
select 1
{% endif %}
{%- endmacro %}
