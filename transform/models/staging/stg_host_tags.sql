-- One row per (live host, tag): hosts.tags unnested, for filtering and grouping by tag.
select distinct
    h.host_id,
    cast({{ json_element_text('tag', 'tag_id') }} as integer) as tag_id,
    {{ json_element_text('tag', 'name') }} as tag_name
from {{ ref('stg_hosts') }} as h
{{ json_array_rows('h.tags_json', 'tag') }}
