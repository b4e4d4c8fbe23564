-- One row per posture: a control's result (Passed, Failed, Error) on a host for a policy.
-- Postures get no tombstones when their host leaves the policy (their key is the posture id);
-- the membership does, so postures of a membership marked deleted are left out.
{%- set memberships = source('qualys', 'pcrs_policy_host_ids') %}
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
from {{ source('qualys', 'pcrs_posture_info') }} as p
{{ live_rows(source('qualys', 'pcrs_posture_info')) }}
{%- if has_deletes(memberships) %}
    and not exists (
        select 1 from {{ memberships }} as m
        where m.policy_id = p.policy_id
            and m.host_id = p.host_id
            and m._sdc_deleted_at is not null
    )
{%- endif %}
