-- One row per KnowledgeBase QID, with its CVSS base scores taken out of the nested objects.
select
    qid,
    title,
    severity_level,
    vuln_type,
    category,
    {{ as_flag('patchable') }} as patchable,
    cast({{ json_text('cvss', ['base']) }} as {{ dbt.type_float() }}) as cvss_base,
    cast({{ json_text('cvss_v3', ['base']) }} as {{ dbt.type_float() }}) as cvss_v3_base,
    {{ to_timestamp('published_datetime') }} as published_at,
    cve_list as cve_list_json
from {{ source('qualys', 'knowledge_base') }}
{{ live_rows(source('qualys', 'knowledge_base')) }}
