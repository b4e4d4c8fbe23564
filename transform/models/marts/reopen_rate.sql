-- Share of vulnerability detections (any status) that Qualys re-opened at least once, per severity.
select
    coalesce(d.severity, kb.severity_level) as severity,
    count(*) as detections,
    sum(case when d.times_reopened > 0 then 1 else 0 end) as reopened,
    {{ ratio('sum(case when d.times_reopened > 0 then 1 else 0 end)', 'count(*)') }} as reopen_rate
from {{ ref('stg_host_detections') }} as d
left join {{ ref('stg_knowledge_base') }} as kb on kb.qid = d.qid
where d.detection_type in ('Confirmed', 'Potential')
group by coalesce(d.severity, kb.severity_level)
