-- One row per detection of a live host. Detections of hosts that are gone are left out too: a
-- loader that hard-deletes a purged host (target-postgres) leaves its detections behind.
with detections as (
    select * from {{ source('qualys', 'host_detections') }}
    {{ live_rows(source('qualys', 'host_detections')) }}
)

select
    d.host_id,
    d.unique_vuln_id,
    d.qid,
    d.type as detection_type,
    d.severity,
    d.status,
    d.port,
    d.protocol,
    d.qds,
    d.qds_severity,
    coalesce(d.times_found, 0) as times_found,
    coalesce(d.times_reopened, 0) as times_reopened,
    {{ as_flag('d.is_ignored') }} as is_ignored,
    {{ as_flag('d.is_disabled') }} as is_disabled,
    {{ to_timestamp('d.first_found_datetime') }} as first_found_at,
    {{ to_timestamp('d.last_found_datetime') }} as last_found_at,
    {{ to_timestamp('d.last_fixed_datetime') }} as last_fixed_at,
    {{ to_timestamp('d.last_reopened_datetime') }} as last_reopened_at
from detections as d
inner join {{ ref('stg_hosts') }} as h on h.host_id = d.host_id
