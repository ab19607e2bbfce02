{#-
  Legacy metadata rows (legacy_papers) that satisfy `where`, one per paper (the latest import
  wins), normalized like OAI data. `where` (on legacy_papers columns, e.g. rowid) is applied
  before ranking so an incremental run reads only newly imported rows.
-#}
{% macro legacy_latest(where='true') -%}
with ranked as (
    select
        rowid as legacy_row_id,
        regexp_replace(trim(arxiv_id), 'v[0-9]+$', '') as arxiv_id,
        * exclude (arxiv_id)
    from {{ source('lake', 'legacy_papers') }}
    where ({{ where }})
    qualify row_number() over (
        partition by regexp_replace(trim(arxiv_id), 'v[0-9]+$', '')
        order by landed_at desc, legacy_row_id desc
    ) = 1
)

select
    arxiv_id,
    {{ normalize_text('title') }} as title,
    {{ normalize_text('abstract') }} as abstract,
    coalesce(list_filter(list_transform(authors, a -> {{ normalize_ws('a') }}), a -> a is not null), []::varchar[]) as authors,
    coalesce(list_filter(categories, c -> nullif(trim(c), '') is not null), []::varchar[]) as categories,
    coalesce(nullif(trim(primary_category), ''), list_filter(categories, c -> nullif(trim(c), '') is not null)[1]) as primary_category,
    submitted_at,
    coalesce(updated_at, submitted_at) as updated_at,
    nullif(trim(doi), '') as doi,
    {{ normalize_ws('journal_ref') }} as journal_ref,
    {{ normalize_ws('comments') }} as comments,
    nullif(trim(license), '') as license,
    landed_at,
    legacy_row_id
from ranked
{%- endmacro %}
