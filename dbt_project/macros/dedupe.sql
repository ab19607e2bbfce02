{#-
  The winning raw row per arxiv_id among the rows of `relation` (columns of stg_raw_records)
  that satisfy `where`: latest datestamp, then latest landing, then arXivRaw over arXiv (it
  carries every version), then the later row. Two passes so the ranking reads only narrow
  columns and the payloads stream through a semi-join.
-#}
{% macro dedupe_latest(relation, where='true') -%}
select *
from {{ relation }}
where ({{ where }})
  and raw_row_id in (
    select raw_row_id
    from {{ relation }}
    where ({{ where }})
    qualify row_number() over (
        partition by arxiv_id
        order by datestamp desc nulls last,
                 landed_at desc,
                 (metadata_prefix = 'arXivRaw') desc nulls last,
                 raw_row_id desc
    ) = 1
  )
{%- endmacro %}
