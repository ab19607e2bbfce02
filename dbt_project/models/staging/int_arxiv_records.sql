{#- Latest record per paper, parsed (tombstones kept, with NULL fields). -#}
{{ parse_arxiv_payload(ref('int_latest_records')) }}
