-- Open detections and SLA breaches per severity and host tag. A host with several tags counts
-- under each; hosts without tags under '(no tag)'.
with tagged as (
    select
        coalesce(t.tag_name, '(no tag)') as tag_name,
        s.severity,
        s.sla_status
    from {{ ref('detection_sla') }} as s
    left join {{ ref('stg_host_tags') }} as t on t.host_id = s.host_id
)

select
    tag_name,
    severity,
    count(*) as open_detections,
    sum(case when sla_status = 'breached' then 1 else 0 end) as breached,
    sum(case when sla_status = 'due_soon' then 1 else 0 end) as due_soon,
    {{ ratio("sum(case when sla_status = 'breached' then 1 else 0 end)", 'count(*)') }} as breach_rate
from tagged
group by tag_name, severity
