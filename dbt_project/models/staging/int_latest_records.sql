{#- The record that counts for each paper: latest datestamp wins (tombstones included). -#}
{{ dedupe_latest(ref('stg_raw_records')) }}
