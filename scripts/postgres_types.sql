-- Column types a Postgres user expects, in the schema tap_qualys, for what target-postgres 0.8
-- cannot create itself:
-- * date-time columns come as `timestamp without time zone`; the values are UTC (the tap sends
--   UTC, the README's role has timezone UTC), so they become timestamptz;
-- * lists loaded before the job qualys-to-postgres stored them as jsonb (by `meltano run
--   tap-qualys target-postgres`) are Postgres arrays (jsonb[], text[]); they become one jsonb
--   value each, which the job's loads then need.
-- Later loads keep both types. It changes only what is still of the old type, so run it again
-- after a run that added tables or columns.
DO $$
DECLARE
    col record;
BEGIN
    FOR col IN
        SELECT table_name, column_name, data_type FROM information_schema.columns
        WHERE table_schema = 'tap_qualys'
          AND data_type IN ('timestamp without time zone', 'ARRAY')
    LOOP
        EXECUTE format(
            CASE col.data_type
                WHEN 'ARRAY' THEN 'ALTER TABLE tap_qualys.%I ALTER COLUMN %I TYPE jsonb USING to_jsonb(%I)'
                ELSE 'ALTER TABLE tap_qualys.%I ALTER COLUMN %I TYPE timestamptz USING %I AT TIME ZONE ''UTC'''
            END,
            col.table_name, col.column_name, col.column_name
        );
    END LOOP;
END
$$;
