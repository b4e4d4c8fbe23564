-- Time to remediate (first found -> last fixed, in days) of fixed vulnerabilities, per severity
-- and month of the fix: count, mean, median and longest.
with fixed as (
    select
        coalesce(d.severity, kb.severity_level) as severity,
        {{ year_month('d.last_fixed_at') }} as fixed_month,
        {{ days_between('d.first_found_at', 'd.last_fixed_at') }} as days_to_fix
    from {{ ref('stg_host_detections') }} as d
    left join {{ ref('stg_knowledge_base') }} as kb on kb.qid = d.qid
    where d.status = 'Fixed'
      and d.detection_type in ('Confirmed', 'Potential')
      and d.last_fixed_at is not null
      and d.first_found_at is not null
),

ranked as (
    select
        severity,
        fixed_month,
        days_to_fix,
        row_number() over (partition by severity, fixed_month order by days_to_fix) as position,
        count(*) over (partition by severity, fixed_month) as fixed_count
    from fixed
)

select
    severity,
    fixed_month,
    max(fixed_count) as fixed_count,
    {{ round1('avg(days_to_fix)') }} as mean_days,
    {{ round1('avg(case when position in ((fixed_count + 1) / 2, (fixed_count + 2) / 2) then days_to_fix end)') }} as median_days,
    {{ round1('max(days_to_fix)') }} as max_days
from ranked
group by severity, fixed_month
