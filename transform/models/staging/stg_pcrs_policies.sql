-- One row per live PCRS (Policy Compliance) policy.
select
    id as policy_id,
    title as policy_title,
    status as policy_status,
    {{ to_timestamp('last_evaluated_date') }} as last_evaluated_at
from {{ source('qualys', 'pcrs_policies') }}
{{ live_rows(source('qualys', 'pcrs_policies')) }}
