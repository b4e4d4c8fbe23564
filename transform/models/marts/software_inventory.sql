-- CSAM software inventory: each product version, on how many assets it is installed.
select
    coalesce(publisher, '') as publisher,
    coalesce(product, '') as product,
    coalesce(version, '') as version,
    max(category) as category,
    max(lifecycle_stage) as lifecycle_stage,
    count(*) as installations,
    count(distinct asset_id) as assets
from {{ ref('stg_csam_software') }}
group by coalesce(publisher, ''), coalesce(product, ''), coalesce(version, '')
