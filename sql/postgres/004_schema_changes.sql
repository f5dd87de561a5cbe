-- Schema changes of public.users, journaled in the same transaction as the change itself, so
-- that the read model can follow them (see cdcpipe/pipeline/schema_changes.py).
-- Idempotent: applied by `cdcpipe up` on every start and by the Docker stack's init.
--
-- Logical decoding streams rows, not DDL. Some DDL changes what the table holds without one
-- row event: DROP and RENAME COLUMN (old values stay in Cassandra), ADD COLUMN ... DEFAULT
-- and ALTER COLUMN ... TYPE ... USING (existing rows get new values), TRUNCATE (Debezium's
-- truncate event has no key, and the compacted topic refuses keyless records). Here an event
-- trigger and a TRUNCATE trigger write one journal row per change into
-- public.cdc_schema_changes, which Debezium captures like public.users (its own topic,
-- cdc.public.cdc_schema_changes). The journal row's LSN places the change in the stream:
-- the Spark job clears dropped columns and truncated rows at exactly that position. Where
-- existing rows got values that no event carries (ADD COLUMN ... DEFAULT, RENAME COLUMN,
-- ALTER COLUMN ... TYPE ... USING), the journal row says `backfill`, and the job stops there,
-- naming `cdcpipe resync`, until a resync has re-read every row.

CREATE TABLE IF NOT EXISTS public.cdc_schema_changes (
    id          bigserial PRIMARY KEY,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    table_name  text NOT NULL,      -- 'public.users'
    kind        text NOT NULL,      -- add_column | drop_column | rename_column | alter_type | truncate | table_replaced | fence
    column_name text,               -- the column (its old name for rename_column)
    new_name    text,               -- rename_column: the new name
    column_type text,               -- add_column / alter_type: the type now
    backfill    boolean NOT NULL DEFAULT false  -- existing rows got values no row event carries
);

-- The columns as the trigger last saw them: what a RENAME or a DROP is told apart by.
CREATE TABLE IF NOT EXISTS public.cdc_source_columns (
    table_name  text NOT NULL,
    attnum      smallint NOT NULL,
    column_name text NOT NULL,
    column_type text NOT NULL,
    PRIMARY KEY (table_name, attnum)
);
INSERT INTO public.cdc_source_columns (table_name, attnum, column_name, column_type)
SELECT 'public.users', attnum, attname, format_type(atttypid, atttypmod)
FROM pg_attribute WHERE attrelid = 'public.users'::regclass AND attnum > 0 AND NOT attisdropped
ON CONFLICT DO NOTHING;

-- The table capture follows, by identity. Renamed away or dropped, public.users leaves the
-- stream without a row event, and a new table of that name is in no publication: capture
-- went on silently without it (heartbeats kept the watchdog at "moving"). The trigger below
-- journals `table_replaced` instead, and the job stops naming the steps: `cdcpipe up` (these
-- files again: the table now named public.users joins the publication, gets its triggers,
-- grants and REPLICA IDENTITY, and becomes the recorded table), then `cdcpipe resync`.
CREATE TABLE IF NOT EXISTS public.cdc_source_table (
    table_name text PRIMARY KEY,
    relid      oid NOT NULL              -- 0 once journaled as replaced, until `cdcpipe up`
);
DO $$
BEGIN
    IF to_regclass('public.users') IS NOT NULL AND (SELECT relid FROM public.cdc_source_table WHERE table_name = 'public.users')
            IS DISTINCT FROM 'public.users'::regclass::oid THEN
        -- first install, or the table was replaced: what the triggers compare with is this table now
        DELETE FROM public.cdc_source_columns WHERE table_name = 'public.users';
        INSERT INTO public.cdc_source_columns (table_name, attnum, column_name, column_type)
        SELECT 'public.users', attnum, attname, format_type(atttypid, atttypmod)
        FROM pg_attribute WHERE attrelid = 'public.users'::regclass AND attnum > 0 AND NOT attisdropped;
        INSERT INTO public.cdc_source_table (table_name, relid) VALUES ('public.users', 'public.users'::regclass)
        ON CONFLICT (table_name) DO UPDATE SET relid = EXCLUDED.relid;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = 'cdc_users' AND schemaname = 'public' AND tablename = 'users') THEN
        ALTER PUBLICATION cdc_users ADD TABLE public.users;
    END IF;
END
$$;
REVOKE ALL ON public.cdc_source_table FROM PUBLIC;

-- Only the triggers write these (as their owner), and `cdcpipe resync` its fences through
-- public.cdc_journal_fence (below); Debezium reads the journal for its snapshot.
REVOKE ALL ON public.cdc_schema_changes, public.cdc_source_columns FROM PUBLIC;
REVOKE ALL ON SEQUENCE public.cdc_schema_changes_id_seq FROM PUBLIC;
GRANT SELECT ON public.cdc_schema_changes TO debezium;

-- Whether a column's type change keeps every value as it was (and as Debezium streams it):
-- integers to wider integers, text to text of a greater or no limit, numeric to a greater
-- precision at the same scale or to unconstrained numeric. Anything else can rewrite values
-- (a precision cut rounds, timestamptz(0) truncates, a cast changes text), and no row event
-- carries the new values.
CREATE OR REPLACE FUNCTION public.cdc_type_change_keeps_values(old_type text, new_type text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog AS $$
DECLARE
    o text[];
    n text[];
BEGIN
    IF old_type = new_type OR (old_type, new_type) IN (('smallint', 'integer'), ('smallint', 'bigint'), ('integer', 'bigint')) THEN
        RETURN true;
    END IF;
    IF old_type ~ '^(text|character varying(\(\d+\))?)$' AND new_type IN ('text', 'character varying') THEN
        RETURN true;
    END IF;
    o := regexp_match(old_type, '^character varying\((\d+)\)$');
    n := regexp_match(new_type, '^character varying\((\d+)\)$');
    IF o IS NOT NULL AND n IS NOT NULL THEN
        RETURN n[1]::int >= o[1]::int;
    END IF;
    o := regexp_match(old_type, '^numeric\((\d+),(\d+)\)$');
    n := regexp_match(new_type, '^numeric\((\d+),(\d+)\)$');
    IF o IS NOT NULL AND n IS NOT NULL THEN
        RETURN o[2] = n[2] AND n[1]::int >= o[1]::int;
    END IF;
    RETURN o IS NOT NULL AND new_type = 'numeric';
END
$$;
REVOKE ALL ON FUNCTION public.cdc_type_change_keeps_values(text, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION public.cdc_journal_schema_change() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    tbl       constant text := 'public.users';
    rel       regclass := to_regclass(tbl);
    known     record;
    cur       record;
BEGIN
    IF rel IS NULL OR NOT EXISTS (
        SELECT 1 FROM pg_event_trigger_ddl_commands() c WHERE c.classid = 'pg_class'::regclass AND c.objid = rel
    ) OR (SELECT relid FROM public.cdc_source_table WHERE table_name = tbl) IS DISTINCT FROM rel::oid THEN
        RETURN;  -- not the captured table (a replacement waits for `cdcpipe up`, which records it)
    END IF;
    FOR known IN SELECT * FROM public.cdc_source_columns WHERE table_name = tbl ORDER BY attnum LOOP
        SELECT attname, attisdropped, format_type(atttypid, atttypmod) AS typ INTO cur
        FROM pg_attribute WHERE attrelid = rel AND attnum = known.attnum;
        IF NOT FOUND OR cur.attisdropped THEN
            INSERT INTO public.cdc_schema_changes (table_name, kind, column_name)
            VALUES (tbl, 'drop_column', known.column_name);
        ELSIF cur.attname <> known.column_name THEN
            -- the new name's values reach no row event until the row changes
            INSERT INTO public.cdc_schema_changes (table_name, kind, column_name, new_name, column_type, backfill)
            VALUES (tbl, 'rename_column', known.column_name, cur.attname, cur.typ, EXISTS (SELECT 1 FROM public.users));
        ELSIF cur.typ <> known.column_type THEN
            -- The rewrite may have changed every value without a row event. It counts as keeping
            -- them only for a widening that cannot change a value, in a plain ALTER TABLE with no
            -- USING (PostgreSQL does not say what a USING did; DDL run from a function or a DO
            -- block shows another statement here). Anything else stops the job naming resync.
            INSERT INTO public.cdc_schema_changes (table_name, kind, column_name, column_type, backfill)
            VALUES (tbl, 'alter_type', known.column_name, cur.typ,
                    NOT (public.cdc_type_change_keeps_values(known.column_type, cur.typ)
                         AND current_query() ~* '^\s*alter\s+table\M' AND current_query() !~* '\musing\M')
                    AND EXISTS (SELECT 1 FROM public.users));
        END IF;
    END LOOP;
    FOR cur IN
        SELECT a.attnum, a.attname, format_type(a.atttypid, a.atttypmod) AS typ,
               (a.atthasmissing OR a.atthasdef OR a.attgenerated <> '') AS filled
        FROM pg_attribute a
        WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped
          AND NOT EXISTS (SELECT 1 FROM public.cdc_source_columns k WHERE k.table_name = tbl AND k.attnum = a.attnum)
        ORDER BY a.attnum
    LOOP
        -- with a DEFAULT (or GENERATED), existing rows hold a value no row event carries
        INSERT INTO public.cdc_schema_changes (table_name, kind, column_name, column_type, backfill)
        VALUES (tbl, 'add_column', cur.attname, cur.typ, cur.filled AND EXISTS (SELECT 1 FROM public.users));
    END LOOP;
    DELETE FROM public.cdc_source_columns WHERE table_name = tbl;
    INSERT INTO public.cdc_source_columns (table_name, attnum, column_name, column_type)
    SELECT tbl, attnum, attname, format_type(atttypid, atttypmod)
    FROM pg_attribute WHERE attrelid = rel AND attnum > 0 AND NOT attisdropped;
END
$$;
REVOKE ALL ON FUNCTION public.cdc_journal_schema_change() FROM PUBLIC;

DROP EVENT TRIGGER IF EXISTS cdc_journal_schema_change;
CREATE EVENT TRIGGER cdc_journal_schema_change ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE')
    EXECUTE FUNCTION public.cdc_journal_schema_change();

CREATE OR REPLACE FUNCTION public.cdc_journal_table_replaced() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    known oid := (SELECT relid FROM public.cdc_source_table WHERE table_name = 'public.users');
BEGIN
    IF known IS NULL OR known = 0 OR known = coalesce(to_regclass('public.users')::oid, 0) THEN
        RETURN;  -- still the captured table, or already journaled
    END IF;
    IF TG_EVENT = 'sql_drop' AND NOT EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects() WHERE objid = known) THEN
        RETURN;
    END IF;
    -- renamed away, moved to another schema, or dropped: once, until `cdcpipe up` records the new one
    INSERT INTO public.cdc_schema_changes (table_name, kind, backfill) VALUES ('public.users', 'table_replaced', true);
    UPDATE public.cdc_source_table SET relid = 0 WHERE table_name = 'public.users';
END
$$;
REVOKE ALL ON FUNCTION public.cdc_journal_table_replaced() FROM PUBLIC;

DROP EVENT TRIGGER IF EXISTS cdc_journal_table_renamed;
CREATE EVENT TRIGGER cdc_journal_table_renamed ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE')
    EXECUTE FUNCTION public.cdc_journal_table_replaced();
DROP EVENT TRIGGER IF EXISTS cdc_journal_table_dropped;
CREATE EVENT TRIGGER cdc_journal_table_dropped ON sql_drop
    EXECUTE FUNCTION public.cdc_journal_table_replaced();

CREATE OR REPLACE FUNCTION public.cdc_journal_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    INSERT INTO public.cdc_schema_changes (table_name, kind) VALUES (TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, 'truncate');
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION public.cdc_journal_truncate() FROM PUBLIC;

DROP TRIGGER IF EXISTS users_journal_truncate ON public.users;
CREATE TRIGGER users_journal_truncate
    AFTER TRUNCATE ON public.users
    FOR EACH STATEMENT EXECUTE FUNCTION public.cdc_journal_truncate();

-- A fence: `cdcpipe resync` writes one and waits until Debezium has published it before it
-- opens its epoch at the topics' end offsets. Debezium publishes in commit order, so every
-- journal row committed before the resync began is then below the epoch's start. Without it, a
-- DDL run just before the resync (the step a stop names) could reach Kafka after the offsets
-- were read, count as newer than the resync, and stop the job again (found in CI: the job
-- stopped at its own ALTER ... TYPE while the resync waited). The job ignores fences.
CREATE OR REPLACE FUNCTION public.cdc_journal_fence(fence text) RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    INSERT INTO public.cdc_schema_changes (table_name, kind, column_name) VALUES ('public.users', 'fence', left(fence, 64)) RETURNING id
$$;
REVOKE ALL ON FUNCTION public.cdc_journal_fence(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.cdc_journal_fence(text) TO cdc_signaller;

-- The journal joins the publication, and Debezium's table.include.list (its own topic).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = 'cdc_users' AND schemaname = 'public' AND tablename = 'cdc_schema_changes') THEN
        ALTER PUBLICATION cdc_users ADD TABLE public.cdc_schema_changes;
    END IF;
END
$$;
