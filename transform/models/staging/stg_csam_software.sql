-- One row per software installation on a live CSAM asset: softwareListData.software unnested.
select
    a.asset_id,
    {{ json_element_text('sw', 'publisher') }} as publisher,
    {{ json_element_text('sw', 'product') }} as product,
    {{ json_element_text('sw', 'version') }} as version,
    {{ json_element_text('sw', 'category1') }} as category,
    {{ json_element_text('sw', 'lifecycle.stage') if target.type == 'sqlite' else "(sw.value #>> '{lifecycle,stage}')" }} as lifecycle_stage
from {{ ref('stg_csam_assets') }} as a
{{ json_array_rows('a.software_json', 'sw', key='software') }}
