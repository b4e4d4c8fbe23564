-- One row per posture: a control's result (Passed, Failed, Error) on a host for a policy.
select
    id as posture_id,
    policy_id,
    policy_title,
    control_id,
    control_statement,
    host_id,
    status,
    {{ json_text('criticality', ['label']) }} as criticality,
    {{ to_timestamp('last_evaluated_date') }} as last_evaluated_at
from {{ source('qualys', 'pcrs_posture_info') }}
{{ live_rows(source('qualys', 'pcrs_posture_info')) }}
