"""A self-contained HTML vulnerability report from tap-qualys' dbt marts."""
