{#- The text that gets embedded: title, a newline, abstract (as the legacy vectors were made). -#}
{% macro paper_text(title, abstract) -%}
(coalesce({{ title }}, '') || chr(10) || coalesce({{ abstract }}, ''))
{%- endmacro %}

{#-
  Start of the next incremental window for rows of `metadata_source` ('oai' | 'legacy'): the
  newest landed_at already in papers minus a lookback (var landed_lookback_minutes), so rows of a
  transaction that committed while the previous run was reading are not skipped. Re-reading a
  row is harmless: the same record wins again.
-#}
{% macro papers_watermark(metadata_source) -%}
(select coalesce(
    max(landed_at) - to_minutes({{ var('landed_lookback_minutes') | int }}),
    '-infinity'::timestamptz)
 from {{ this }} where metadata_source = '{{ metadata_source }}')
{%- endmacro %}

{#- Latest raw record per paper among the rows landed since the watermark. -#}
{% macro papers_new_raw_latest() -%}
with new_raw as (
    select * from {{ ref('stg_raw_records') }}
    where landed_at > {{ papers_watermark('oai') }}
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
