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
  Collapse runs of whitespace to one space and trim; '' becomes NULL. Matching runs of two or
  more, or a lone tab/newline, leaves single spaces alone, and the regex only runs when there is
  something to fold.
-#}
{% macro normalize_ws(expr) -%}
nullif(trim(case when regexp_matches({{ expr }}, '\s\s|[\t\n\r\f\v]')
    then regexp_replace({{ expr }}, '\s\s+|[\t\n\r\f\v]', ' ', 'g')
    else {{ expr }} end), '')
{%- endmacro %}

{#-
  Title and abstract (the text that gets embedded and hashed): every run of whitespace folded to
  one space, trimmed, '' -> NULL, by papersys_normalize_text (registered by papersys.dbt_plugin;
  vectorized, several times faster than regexp_replace on hard-wrapped abstracts).
-#}
{% macro normalize_text(expr) -%}
nullif(papersys_normalize_text({{ expr }}), '')
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

{#- Each element located once (a substring search); decoding and normalizing come next. #}
located as (
    select
        raw_row_id,
        arxiv_id,
        datestamp,
        deleted,
        landed_at,
        metadata_format,
        {{ xml_raw('payload_xml', 'title') }} as title_xml,
        {{ xml_raw('payload_xml', 'abstract') }} as abstract_xml,
        case metadata_format when 'arXivRaw' then {{ xml_raw('payload_xml', 'authors') }} end as authors_xml,
        case metadata_format
            when 'arXiv' then {{ structured_authors('payload_xml') }}
        end as structured_authors,
        {{ xml_raw('payload_xml', 'categories') }} as categories_xml,
        case metadata_format
            -- arXivRaw lists every version in order: v1 is the first <date>, the latest the last.
            when 'arXivRaw' then regexp_extract_all(payload_xml, '<date>([^<]*)</date>', 1)
        end as version_dates,
        case metadata_format when 'arXiv' then {{ xml_raw('payload_xml', 'created') }} end as created_text,
        case metadata_format when 'arXiv' then {{ xml_raw('payload_xml', 'updated') }} end as updated_text,
        {{ xml_raw('payload_xml', 'doi') }} as doi_xml,
        {{ xml_raw('payload_xml', 'journal-ref') }} as journal_ref_xml,
        {{ xml_raw('payload_xml', 'comments') }} as comments_xml,
        {{ xml_raw('payload_xml', 'license') }} as license_xml
    from typed
),

fields as (
    select
        * exclude (title_xml, abstract_xml, authors_xml, categories_xml, doi_xml, journal_ref_xml, comments_xml, license_xml),
        {{ normalize_text(xml_unescape('title_xml')) }} as title,
        {{ normalize_text(xml_unescape('abstract_xml')) }} as abstract,
        {{ normalize_ws(xml_unescape('authors_xml')) }} as raw_authors,
        {{ normalize_ws('categories_xml') }} as categories_text,
        {{ normalize_ws(xml_unescape('doi_xml')) }} as doi,
        {{ normalize_ws(xml_unescape('journal_ref_xml')) }} as journal_ref,
        {{ normalize_ws(xml_unescape('comments_xml')) }} as comments,
        {{ normalize_ws(xml_unescape('license_xml')) }} as license
    from located
)

select
    raw_row_id,
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
    coalesce(string_split(categories_text, ' '), []::varchar[]) as categories,
    string_split(categories_text, ' ')[1] as primary_category,
    case metadata_format
        when 'arXivRaw' then {{ rfc822_date('version_dates[1]') }}
        -- arXiv format has no v1 date; <created> is the closest it offers.
        else try_cast(trim(created_text) as date)
    end as submitted_at,
    case metadata_format
        when 'arXivRaw' then {{ rfc822_date('version_dates[-1]') }}
        else coalesce(try_cast(trim(updated_text) as date), try_cast(trim(created_text) as date))
    end as updated_at,
    case metadata_format when 'arXivRaw' then len(version_dates) end as version_count,
    doi,
    journal_ref,
    comments,
    license
from fields
{%- endmacro %}
