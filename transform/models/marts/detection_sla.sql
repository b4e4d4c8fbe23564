-- Age of every open detection (days since first found, at the as_of moment) against its
-- severity's SLA (the sla_days_severity_N vars): within, due_soon or breached.
with aged as (
    select
        d.host_id,
        d.unique_vuln_id,
        d.qid,
        d.severity,
        d.first_found_at,
        {{ whole_days('d.first_found_at', as_of()) }} as age_days,
        {{ sla_days('d.severity') }} as sla_days,
        {{ as_of() }} as as_of
    from {{ ref('open_detections') }} as d
)

select
    host_id,
    unique_vuln_id,
    qid,
    severity,
    first_found_at,
    age_days,
    sla_days,
    sla_days - age_days as days_left,
    case
        when age_days > sla_days then 'breached'
        when sla_days - age_days <= sla_days * {{ var('sla_due_soon_fraction') }} then 'due_soon'
        else 'within'
    end as sla_status,
    as_of
from aged
