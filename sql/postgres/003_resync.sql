-- Re-synchronisation (`cdcpipe resync`): the signal table of Debezium's incremental snapshots.
-- Idempotent: applied by `cdcpipe up` on every start and by the Docker stack's init.
--
-- `cdcpipe resync` (as the table's owner, cdcpipe) inserts an `execute-snapshot` row; Debezium
-- reads it from the WAL (so the table is in the publication) and snapshots public.users in
-- chunks while streaming goes on. Per chunk Debezium writes a window marker here and deletes it
-- again (incremental.snapshot.watermarking.strategy=insert_delete, so the table stays small):
-- the replication role may therefore INSERT and DELETE here, and nowhere else. Nobody else may
-- write it: a signal is an instruction to the connector.
CREATE TABLE IF NOT EXISTS public.cdc_signal (
    id   varchar(64) PRIMARY KEY,
    type varchar(32) NOT NULL,
    data varchar(2048)
);
REVOKE ALL ON public.cdc_signal FROM PUBLIC;
GRANT SELECT, INSERT, DELETE ON public.cdc_signal TO debezium;
-- Who may signal: the application owner that runs `cdcpipe resync`, through this role (each
-- runtime grants it to its login, like users_writer).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cdc_signaller') THEN
        CREATE ROLE cdc_signaller NOLOGIN;
    END IF;
END
$$;
GRANT SELECT, INSERT ON public.cdc_signal TO cdc_signaller;

-- The signal table joins the publication (added, never SET: a SET on every start would drop
-- the other tables from it for a moment). TRUNCATE is published (the default `publish` list)
-- but the connector skips it (Debezium's default skipped.operations=t): its event has no key,
-- and the compacted topic refuses keyless records (the task FAILs: "Compacted topic cannot
-- accept message without key"). 004_schema_changes.sql journals TRUNCATE instead.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = 'cdc_users' AND schemaname = 'public' AND tablename = 'cdc_signal') THEN
        ALTER PUBLICATION cdc_users ADD TABLE public.cdc_signal;
    END IF;
END
$$;
