-- One row per (QID, CVE id): knowledge_base.cve_list unnested.
select distinct
    kb.qid,
    {{ json_element_text('cve', 'id') }} as cve_id
from {{ ref('stg_knowledge_base') }} as kb
{{ json_array_rows('kb.cve_list_json', 'cve') }}
