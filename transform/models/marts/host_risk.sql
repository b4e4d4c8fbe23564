-- Live hosts ranked by TruRisk score (then open severity 5 and 4 counts), with their open and
-- SLA-breached detections.
with counts as (
    select
        host_id,
        count(*) as open_detections,
        sum(case when severity = 5 then 1 else 0 end) as open_severity_5,
        sum(case when severity = 4 then 1 else 0 end) as open_severity_4,
        sum(case when sla_status = 'breached' then 1 else 0 end) as breached
    from {{ ref('detection_sla') }}
    group by host_id
),

tags as (
    select host_id, {{ list_agg('tag_name') }} as host_tags
    from (select host_id, tag_name from {{ ref('stg_host_tags') }} order by host_id, tag_name) as sorted
    group by host_id
),

hosts as (
    select
        h.host_id,
        h.host_name,
        h.ip,
        h.os,
        h.trurisk_score,
        h.asset_criticality_score,
        coalesce(c.open_detections, 0) as open_detections,
        coalesce(c.open_severity_5, 0) as open_severity_5,
        coalesce(c.open_severity_4, 0) as open_severity_4,
        coalesce(c.breached, 0) as breached,
        tags.host_tags
    from {{ ref('stg_hosts') }} as h
    left join counts as c on c.host_id = h.host_id
    left join tags on tags.host_id = h.host_id
)

select
    row_number() over (
        order by coalesce(trurisk_score, -1) desc, open_severity_5 desc, open_severity_4 desc, host_id
    ) as risk_rank,
    *
from hosts
