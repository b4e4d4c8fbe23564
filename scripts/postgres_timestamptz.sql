-- target-postgres 0.8 creates date-time columns as `timestamp without time zone`. The values are
-- UTC (the tap sends UTC; the recipe sets the role's timezone to UTC), so this turns every such
-- column of the schema tap_qualys into timestamptz. Later loads keep the new type. Run it again
-- after a run that created new tables or columns; it changes only what is still `timestamp`.
DO $$
DECLARE
    col record;
BEGIN
    FOR col IN
        SELECT table_name, column_name FROM information_schema.columns
        WHERE table_schema = 'tap_qualys' AND data_type = 'timestamp without time zone'
    LOOP
        EXECUTE format(
            'ALTER TABLE tap_qualys.%I ALTER COLUMN %I TYPE timestamptz USING %I AT TIME ZONE ''UTC''',
            col.table_name, col.column_name, col.column_name
        );
    END LOOP;
END
$$;
