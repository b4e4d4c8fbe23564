-- One row per (policy, host) the policy applies to.
select
    policy_id,
    host_id
from {{ source('qualys', 'pcrs_policy_host_ids') }}
{{ live_rows(source('qualys', 'pcrs_policy_host_ids')) }}
