{#- Legacy metadata, one row per paper (the latest import wins), normalized like OAI data. -#}
{{ legacy_latest() }}
