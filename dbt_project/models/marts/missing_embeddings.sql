{{ config(materialized='view') }}
-- depends_on: {{ ref('papers') }}
-- depends_on: {{ source('lake', 'embedding_models') }}
-- depends_on: {{ source('lake', 'embedding_rejects') }}

{#-
  Papers that need an embedding, per registered model:
  absent = no vector; stale = a vector exists but for another text (title/abstract changed);
  invalid = no vector, and a vector for it was rejected (legacy NaN/zero/wrong dimension).
  A paper is fresh when a vector with its current text_sha256 exists.
-#}

{%- set models = embedding_model_names() %}
{%- if models | length == 0 %}
select
    null::varchar as model, null::varchar as arxiv_id, null::integer as year,
    null::varchar as text, null::varchar as text_sha256, null::varchar as reason
where false
{%- else %}
{%- for name in models %}
{%- if not loop.first %}
union all
{%- endif %}
select
    '{{ name }}' as model,
    p.arxiv_id,
    p.year,
    {{ paper_text('p.title', 'p.abstract') }} as text,
    p.text_sha256,
    case
        when p.arxiv_id in (select arxiv_id from {{ embeddings_relation(name) }}) then 'stale'
        when p.arxiv_id in (
            select arxiv_id from {{ source('lake', 'embedding_rejects') }} where model = '{{ name }}'
        ) then 'invalid'
        else 'absent'
    end as reason
from {{ ref('papers') }} as p
anti join {{ embeddings_relation(name) }} as e
    on e.arxiv_id = p.arxiv_id and e.text_sha256 = p.text_sha256
{%- endfor %}
{%- endif %}
