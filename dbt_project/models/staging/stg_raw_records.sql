{#- OAI rows of raw_records with canonical versionless ids; RSS items are left to OAI. -#}
select
    rowid as raw_row_id,
    regexp_replace(trim(arxiv_id), 'v[0-9]+$', '') as arxiv_id,
    datestamp,
    deleted,
    metadata_prefix,
    payload_xml,
    landed_at
from {{ source('lake', 'raw_records') }}
where source <> 'rss'
