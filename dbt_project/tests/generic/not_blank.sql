{#- Rows where the text column is NULL or only whitespace. -#}
{% test not_blank(model, column_name) %}
select {{ column_name }}
from {{ model }}
where {{ column_name }} is null or trim({{ column_name }}) = ''
{% endtest %}
