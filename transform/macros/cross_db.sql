{#- The few SQL differences between SQLite (the embedded default) and PostgreSQL, in one place.
    SQLite keeps nested values as JSON text and timestamps as ISO 8601 text; target-postgres keeps
    them as jsonb and timestamps. Every model goes through these macros for them. -#}

{%- macro is_sqlite() -%}{{ return(target.type == 'sqlite') }}{%- endmacro -%}

{#- A timestamp column as a UTC timestamp without time zone (SQLite: 'YYYY-MM-DD HH:MM:SS' text).
    On Postgres the column may be timestamptz (scripts/postgres_types.sql), timestamp or text: each
    goes through timestamptz, so the session's TimeZone cannot shift it. -#}
{%- macro to_timestamp(column) -%}
  {%- if is_sqlite() -%} datetime({{ column }})
  {%- else -%} (cast({{ column }} as timestamptz) at time zone 'UTC')
  {%- endif -%}
{%- endmacro -%}

{%- macro timestamp_literal(text) -%}
  {%- if is_sqlite() -%} datetime('{{ text }}')
  {%- else -%} cast('{{ text }}' as timestamptz) at time zone 'UTC'
  {%- endif -%}
{%- endmacro -%}

{#- Seconds from start to end, exactly (julianday() differences are floats: a whole number of
    days could floor to one less). -#}
{%- macro seconds_between(start, end) -%}
  {%- if is_sqlite() -%} (cast(strftime('%s', {{ end }}) as integer) - cast(strftime('%s', {{ start }}) as integer))
  {%- else -%} extract(epoch from ({{ end }} - {{ start }}))
  {%- endif -%}
{%- endmacro -%}

{#- Days from start to end, fractional. -#}
{%- macro days_between(start, end) -%}
  {%- if is_sqlite() -%} ({{ seconds_between(start, end) }} / 86400.0)
  {%- else -%} (extract(epoch from ({{ end }} - {{ start }})) / 86400.0)
  {%- endif -%}
{%- endmacro -%}

{#- 'YYYY-MM' of a timestamp. -#}
{%- macro year_month(ts) -%}
  {%- if is_sqlite() -%} strftime('%Y-%m', {{ ts }})
  {%- else -%} to_char({{ ts }}, 'YYYY-MM')
  {%- endif -%}
{%- endmacro -%}

{#- The text at a path of keys inside a JSON value, e.g. json_text('cvss_v3', ['base']). -#}
{%- macro json_text(column, path) -%}
  {%- if is_sqlite() -%} json_extract({{ column }}, '$.{{ path | join(".") }}')
  {%- else -%} (cast({{ column }} as jsonb) #>> '{ {{- path | join(",") -}} }')
  {%- endif -%}
{%- endmacro -%}

{#- A FROM-clause item with one row per element of a JSON array (no row for null or a non-array):
    `from t {{ json_array_rows('t.tags', 'tag') }}`, then json_element_text('tag', 'name'). The
    optional key takes the array from inside an object (CSAM's {"software": [...]}). -#}
{%- macro json_array_rows(column, alias, key=none) -%}
  {%- if is_sqlite() -%}
    {%- set array = column if key is none else "json_extract(" ~ column ~ ", '$." ~ key ~ "')" -%}
    , json_each(case when json_type({{ array }}) = 'array' then {{ array }} else '[]' end) as {{ alias }}
  {%- else -%}
    {%- set array = "cast(" ~ column ~ " as jsonb)" if key is none else "(cast(" ~ column ~ " as jsonb) -> '" ~ key ~ "')" -%}
    cross join lateral jsonb_array_elements(
      case when jsonb_typeof({{ array }}) = 'array' then {{ array }} else '[]'::jsonb end
    ) as {{ alias }}(value)
  {%- endif -%}
{%- endmacro -%}

{%- macro json_element_text(alias, key) -%}
  {%- if is_sqlite() -%} json_extract({{ alias }}.value, '$.{{ key }}')
  {%- else -%} ({{ alias }}.value ->> '{{ key }}')
  {%- endif -%}
{%- endmacro -%}

{#- Booleans: SQLite stores 0/1, Postgres true/false; both become 0/1 integers (easy to sum). -#}
{%- macro as_flag(column) -%}
  {%- if is_sqlite() -%} cast(coalesce({{ column }}, 0) as integer)
  {%- else -%} (case when cast({{ column }} as boolean) then 1 else 0 end)
  {%- endif -%}
{%- endmacro -%}

{#- Comma-separated list of the distinct values of an expression within a group, sorted. SQLite's
    group_concat has no ORDER BY before 3.44: callers feed it sorted rows. -#}
{%- macro list_agg(expression) -%}
  {%- if is_sqlite() -%} group_concat(distinct {{ expression }})
  {%- else -%} string_agg(distinct {{ expression }}, ',' order by {{ expression }})
  {%- endif -%}
{%- endmacro -%}

{#- `where` clause keeping live rows: the deletes contract's soft-deleted rows carry
    _sdc_deleted_at, and tables loaded before that column existed (or by loaders that hard-delete)
    have no such column, so the filter is there only where the column is. -#}
{%- macro has_deletes(relation) -%}
  {%- set ns = namespace(has_column=false) -%}
  {%- if execute -%}
    {%- for column in adapter.get_columns_in_relation(relation) -%}
      {%- if column.name | lower == '_sdc_deleted_at' -%}{%- set ns.has_column = true -%}{%- endif -%}
    {%- endfor -%}
  {%- endif -%}
  {{ return(ns.has_column) }}
{%- endmacro -%}

{%- macro live_rows(relation) -%}
  {%- if has_deletes(relation) -%} where _sdc_deleted_at is null {%- else -%} where 1 = 1 {%- endif -%}
{%- endmacro -%}

{#- The moment ages are measured at: the `as_of` var, else the newest detection evidence. -#}
{%- macro as_of() -%}
  {%- if var('as_of') -%} {{ timestamp_literal(var('as_of')) }}
  {%- else -%} (select max(last_found_at) from {{ ref('stg_host_detections') }})
  {%- endif -%}
{%- endmacro -%}

{#- SLA days of a Qualys severity (1-5) from the sla_days_severity_N vars. -#}
{%- macro sla_days(severity) -%}
  case {{ severity }}
    {%- for level in [5, 4, 3, 2, 1] %}
    when {{ level }} then {{ var('sla_days_severity_' ~ level) }}
    {%- endfor %}
  end
{%- endmacro -%}

{#- Whole days from start to end (floor): what "N days old" means. -#}
{%- macro whole_days(start, end) -%}
  {%- if is_sqlite() -%} cast(floor({{ seconds_between(start, end) }} / 86400.0) as integer)
  {%- else -%} cast(floor(extract(epoch from ({{ end }} - {{ start }})) / 86400.0) as integer)
  {%- endif -%}
{%- endmacro -%}

{#- A share in [0, 1], rounded to 4 places; null when there is nothing to divide by. -#}
{%- macro ratio(part, whole) -%}
  round(cast(1.0 * {{ part }} / nullif({{ whole }}, 0) as {{ 'real' if is_sqlite() else 'numeric' }}), 4)
{%- endmacro -%}

{%- macro round1(expression) -%}
  round(cast({{ expression }} as {{ 'real' if is_sqlite() else 'numeric' }}), 1)
{%- endmacro -%}
