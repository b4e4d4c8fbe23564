-- PCRS pass rate per policy: postures (control x host results) passed / all postures.
select
    p.policy_id,
    coalesce(pol.policy_title, max(p.policy_title)) as policy_title,
    count(distinct p.host_id) as hosts,
    count(distinct p.control_id) as controls,
    count(*) as postures,
    sum(case when p.status = 'Passed' then 1 else 0 end) as passed,
    sum(case when p.status = 'Failed' then 1 else 0 end) as failed,
    sum(case when p.status = 'Error' then 1 else 0 end) as errors,
    {{ ratio("sum(case when p.status = 'Passed' then 1 else 0 end)", 'count(*)') }} as pass_rate
from {{ ref('stg_pcrs_postures') }} as p
left join {{ ref('stg_pcrs_policies') }} as pol on pol.policy_id = p.policy_id
group by p.policy_id, pol.policy_title
