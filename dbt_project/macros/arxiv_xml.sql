{#-
  Parsing of arXiv OAI payloads (`raw_records.payload_xml`: the <arXivRaw> or <arXiv> element,
  verbatim) with DuckDB string functions. DuckDB has no XML functions; the payloads are flat and
  machine-written, so locating `<tag>`...`</tag>` with split_part (a plain substring search) is
  exact and several times faster than a regular expression per field (see bench/transform.py).
-#}

{#- Inner text of the first <tag>...</tag>, entities still encoded; NULL when absent or empty. -#}
{% macro xml_raw(payload, tag) -%}
nullif(split_part(split_part({{ payload }}, '<{{ tag }}>', 2), '</{{ tag }}>', 1), '')
{%- endmacro %}

{#- Decode XML entities: numeric (&#233; &#xE9;) first, &amp; last so "&amp;lt;" stays "&lt;". -#}
{% macro xml_unescape(expr) -%}
(case when strpos({{ expr }}, '&') = 0 then {{ expr }} else
replace(replace(replace(replace(replace(
    {{ xml_decode_numeric(expr) }},
    '&lt;', '<'), '&gt;', '>'), '&quot;', '"'), '&apos;', ''''), '&amp;', '&')
end)
{%- endmacro %}

{% macro xml_decode_numeric(expr) -%}
(case when strpos({{ expr }}, '&#') = 0 then {{ expr }} else
    list_reduce(
        list_transform(
            string_split({{ expr }}, '&#'),
            (part, i) -> case
                when i = 1 then part
                when regexp_matches(part, '^([0-9]{1,7}|[xX][0-9a-fA-F]{1,6});') then
                    chr(case when lower(part[1]) = 'x'
                        then ('0x' || split_part(part[2:], ';', 1))::integer
                        else split_part(part, ';', 1)::integer end)
                    || part[strpos(part, ';') + 1:]
                else '&#' || part
            end
        ),
        (acc, piece) -> acc || piece
    )
end)
{%- endmacro %}

{#-
  Collapse runs of whitespace (hard-wrapped abstracts, indented titles) to one space. Matching
  runs of two or more, or a lone tab/newline, leaves single spaces alone: about 4x faster than
  rewriting every '\s+' match.
-#}
{% macro normalize_ws(expr) -%}
nullif(trim(regexp_replace({{ expr }}, '\s\s+|[\t\n\r\f\v]', ' ', 'g')), '')
{%- endmacro %}

{#- Decoded, whitespace-normalized text of a tag. -#}
{% macro xml_text(payload, tag) -%}
{{ normalize_ws(xml_unescape(xml_raw(payload, tag))) }}
{%- endmacro %}

{#-
  arXivRaw's single author string -> list of names: "A, B, and C", "A and B"; affiliations in
  parentheses (possibly nested, possibly containing commas) are dropped; "Jr."/"Sr."/"II"...
  after a comma stay with their author.
-#}
{% macro split_raw_authors(expr) -%}
list_filter(
    list_transform(
        regexp_split_to_array(
            case
                when strpos({{ expr }}, '(') = 0 and not regexp_matches({{ expr }}, ',\s*(Jr|Sr|I[IV])')
                    then {{ expr }}
                else regexp_replace(
                    regexp_replace(
                        regexp_replace({{ expr }}, '\s*\([^()]*\)', '', 'g'),
                        '\s*\([^()]*\)', '', 'g'),
                    ',\s*(Jr\.?|Sr\.?|III|II|IV)(\s*,|\s+and\s|\s*$)', ' \1\2', 'g')
            end,
            ',\s*(?:and\s+)?|\s+and\s+|\s*;\s*'),
        name -> trim(name)),
    name -> name <> '')
{%- endmacro %}

{#- arXiv format's structured authors -> "Forenames Keyname Suffix". -#}
{% macro structured_authors(payload) -%}
list_filter(
    list_transform(
        regexp_extract_all({{ payload }}, '<author>(.*?)</author>', 1),
        author -> {{ normalize_ws(xml_unescape(
            "concat_ws(' ', " ~ xml_raw('author', 'forenames') ~ ", " ~ xml_raw('author', 'keyname')
            ~ ", " ~ xml_raw('author', 'suffix') ~ ")")) }}),
    name -> name is not null)
{%- endmacro %}

{#- "Tue, 3 Apr 2007 22:04:11 GMT" -> DATE. -#}
{% macro rfc822_date(expr) -%}
try_strptime(regexp_extract({{ expr }}, '(\d{1,2} [A-Za-z]{3} \d{4})', 1), '%d %b %Y')::date
{%- endmacro %}

{#-
  One row per input row of `relation` (columns of stg_raw_records) with the paper fields parsed
  from its payload. Tombstones and unknown payloads come out with NULL fields.
-#}
{% macro parse_arxiv_payload(relation) -%}
with typed as (
    select
        *,
        case
            when payload_xml is null then null
            when starts_with(ltrim(payload_xml), '<arXivRaw') then 'arXivRaw'
            when regexp_matches(ltrim(payload_xml), '^<arXiv[\s>]') then 'arXiv'
        end as metadata_format
    from {{ relation }}
),

fields as (
    select
        arxiv_id,
        datestamp,
        deleted,
        landed_at,
        metadata_format,
        {{ xml_text('payload_xml', 'title') }} as title,
        {{ xml_text('payload_xml', 'abstract') }} as abstract,
        case metadata_format
            when 'arXivRaw' then {{ xml_text('payload_xml', 'authors') }}
        end as raw_authors,
        case metadata_format
            when 'arXiv' then {{ structured_authors('payload_xml') }}
        end as structured_authors,
        list_filter(string_split(coalesce({{ xml_text('payload_xml', 'categories') }}, ''), ' '), c -> c <> '') as categories,
        case metadata_format
            -- arXivRaw lists every version in order: v1 is the first <date>, the latest the last.
            when 'arXivRaw' then regexp_extract_all(payload_xml, '<date>([^<]*)</date>', 1)
        end as version_dates,
        {{ xml_text('payload_xml', 'created') }} as created_text,
        {{ xml_text('payload_xml', 'updated') }} as updated_text,
        {{ xml_text('payload_xml', 'doi') }} as doi,
        {{ xml_text('payload_xml', 'journal-ref') }} as journal_ref,
        {{ xml_text('payload_xml', 'comments') }} as comments,
        {{ xml_text('payload_xml', 'license') }} as license
    from typed
)

select
    arxiv_id,
    datestamp,
    deleted,
    landed_at,
    metadata_format,
    title,
    abstract,
    coalesce(
        case metadata_format
            when 'arXivRaw' then {{ split_raw_authors('raw_authors') }}
            else structured_authors
        end,
        []::varchar[]) as authors,
    categories,
    categories[1] as primary_category,
    case metadata_format
        when 'arXivRaw' then {{ rfc822_date('version_dates[1]') }}
        -- arXiv format has no v1 date; <created> is the closest it offers.
        else try_cast(created_text as date)
    end as submitted_at,
    case metadata_format
        when 'arXivRaw' then {{ rfc822_date('version_dates[-1]') }}
        else coalesce(try_cast(updated_text as date), try_cast(created_text as date))
    end as updated_at,
    case metadata_format when 'arXivRaw' then len(version_dates) end as version_count,
    doi,
    journal_ref,
    comments,
    license
from fields
{%- endmacro %}
