{#-
  Names of the embedding models to report on: var embedding_models when given (a list or a
  comma-separated string), else the registry table embedding_models that papersys fills from its
  config, read when the model runs. Names are validated before they reach SQL.
-#}
{% macro embedding_model_names() -%}
{%- set names = [] -%}
{%- set given = var('embedding_models', none) -%}
{%- if given -%}
    {%- set items = given.split(',') if given is string else given -%}
    {%- for item in items -%}{%- do names.append(item | trim) -%}{%- endfor -%}
{%- elif execute -%}
    {%- set result = run_query("select distinct name from " ~ source('lake', 'embedding_models') ~ " order by name") -%}
    {%- for row in result.rows -%}{%- do names.append(row[0]) -%}{%- endfor -%}
{%- endif -%}
{%- for name in names -%}
    {%- if not modules.re.match('^[a-z][a-z0-9_]{0,62}$', name) -%}
        {{ exceptions.raise_compiler_error("invalid embedding model name '" ~ name ~ "': use lowercase letters, digits and _") }}
    {%- endif -%}
{%- endfor -%}
{{ return(names | unique | list) }}
{%- endmacro %}

{% macro embeddings_relation(name) -%}
{{ api.Relation.create(database=source('lake', 'embedding_models').database, schema=source('lake', 'embedding_models').schema, identifier='embeddings_' ~ name) }}
{%- endmacro %}
