{{ config(materialized='view') }}
-- depends_on: {{ ref('papers') }}
-- depends_on: {{ source('lake', 'embedding_models') }}
-- depends_on: {{ source('lake', 'embedding_rejects') }}

{#- Per registered model and year: papers, papers with a fresh vector, papers missing one. -#}

{%- set models = embedding_model_names() %}
{%- if models | length == 0 %}
select
    null::varchar as model, null::integer as year, null::bigint as papers,
    null::bigint as embedded, null::bigint as missing
where false
{%- else %}
{%- for name in models %}
{%- if not loop.first %}
union all
{%- endif %}
select
    '{{ name }}' as model,
    p.year,
    count(*) as papers,
    count(*) filter (where fresh.arxiv_id is not null) as embedded,
    count(*) filter (where fresh.arxiv_id is null) as missing
from {{ ref('papers') }} as p
left join (
    select distinct arxiv_id, text_sha256 from {{ embeddings_relation(name) }}
) as fresh
    on fresh.arxiv_id = p.arxiv_id and fresh.text_sha256 = p.text_sha256
group by p.year
{%- endfor %}
{%- endif %}
