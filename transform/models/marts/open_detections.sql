-- Every open vulnerability (Confirmed or Potential; New, Active or Re-Opened; not ignored, not of a
-- disabled QID) with what the KnowledgeBase says about it and which host has it.
with open_detections as (
    select * from {{ ref('stg_host_detections') }}
    where status in ('New', 'Active', 'Re-Opened')
      and detection_type in ('Confirmed', 'Potential')
      and is_ignored = 0
      and is_disabled = 0
),

cves as (
    select qid, {{ list_agg('cve_id') }} as cve_ids
    from (select qid, cve_id from {{ ref('stg_kb_cves') }} order by qid, cve_id) as sorted
    group by qid
),

tags as (
    select host_id, {{ list_agg('tag_name') }} as host_tags
    from (select host_id, tag_name from {{ ref('stg_host_tags') }} order by host_id, tag_name) as sorted
    group by host_id
)

select
    d.host_id,
    d.unique_vuln_id,
    d.qid,
    kb.title,
    coalesce(d.severity, kb.severity_level) as severity,
    d.detection_type,
    d.status,
    d.qds,
    cves.cve_ids,
    kb.cvss_base,
    kb.cvss_v3_base,
    kb.patchable,
    h.host_name,
    h.ip,
    h.os,
    tags.host_tags,
    d.first_found_at,
    d.last_found_at,
    d.times_reopened
from open_detections as d
inner join {{ ref('stg_hosts') }} as h on h.host_id = d.host_id
left join {{ ref('stg_knowledge_base') }} as kb on kb.qid = d.qid
left join cves on cves.qid = d.qid
left join tags on tags.host_id = d.host_id
