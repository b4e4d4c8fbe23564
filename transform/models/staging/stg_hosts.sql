-- One row per live host of the VM Host List.
select
    id as host_id,
    asset_id,
    ip,
    coalesce(nullif(dns, ''), nullif(netbios, ''), ip, cast(id as {{ dbt.type_string() }})) as host_name,
    dns,
    netbios,
    os,
    tracking_method,
    trurisk_score,
    asset_criticality_score,
    asset_risk_score,
    {{ to_timestamp('last_vm_scanned_date') }} as last_scanned_at,
    tags as tags_json
from {{ source('qualys', 'hosts') }}
{{ live_rows(source('qualys', 'hosts')) }}
