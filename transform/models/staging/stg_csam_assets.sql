-- One row per live CSAM asset.
select
    asset_id,
    host_id,
    asset_name,
    address,
    asset_type,
    {{ json_text('operating_system', ['osName']) }} as os_name,
    risk_score,
    cast({{ json_text('criticality', ['score']) }} as integer) as criticality_score,
    software_list_data as software_json
from {{ source('qualys', 'csam_assets') }}
{{ live_rows(source('qualys', 'csam_assets')) }}
