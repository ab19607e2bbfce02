{#- Rows whose column does not fully match `pattern` (RE2 syntax). NULLs are left to not_null. -#}
{% test matches_regex(model, column_name, pattern) %}
select {{ column_name }}
from {{ model }}
where {{ column_name }} is not null
  and not regexp_full_match({{ column_name }}, '{{ pattern }}')
{% endtest %}
