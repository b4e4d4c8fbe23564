-- PCRS pass rate per control of each policy: which controls fail most.
select
    policy_id,
    control_id,
    max(control_statement) as control_statement,
    max(criticality) as criticality,
    count(distinct host_id) as hosts,
    count(*) as postures,
    sum(case when status = 'Passed' then 1 else 0 end) as passed,
    sum(case when status = 'Failed' then 1 else 0 end) as failed,
    sum(case when status = 'Error' then 1 else 0 end) as errors,
    {{ ratio("sum(case when status = 'Passed' then 1 else 0 end)", 'count(*)') }} as pass_rate
from {{ ref('stg_pcrs_postures') }}
group by policy_id, control_id
