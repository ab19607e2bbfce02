{#- Every paper has exactly one primary category, and it is one of its categories. -#}
{% test primary_category_in_categories(model, column_name, categories_column='categories') %}
select arxiv_id, {{ column_name }}, {{ categories_column }}
from {{ model }}
where {{ column_name }} is null
   or {{ column_name }} = ''
   or strpos({{ column_name }}, ' ') > 0
   or not list_contains({{ categories_column }}, {{ column_name }})
{% endtest %}
