-- What Debezium needs, and no more.

-- The publication names the captured tables explicitly; the connector does not create it
-- (publication.autocreate.mode = disabled), so capture can't silently widen.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'cdc_users') THEN
        CREATE PUBLICATION cdc_users FOR TABLE public.users;
    END IF;
END
$$;

-- The replication role: may stream WAL and read the published table (for the initial
-- snapshot), nothing else. It has no password here; each runtime sets one
-- (`cdcpipe up` from its generated secrets, the Docker stack from .env).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'debezium') THEN
        CREATE ROLE debezium WITH LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE;
    END IF;
END
$$;
GRANT CONNECT ON DATABASE users TO debezium;
GRANT USAGE ON SCHEMA public TO debezium;
REVOKE ALL ON public.users FROM debezium;
GRANT SELECT ON public.users TO debezium;

-- Heartbeats: Debezium upserts one row here every heartbeat.interval.ms. The table is in the
-- publication (but not captured into a topic), so even when public.users is idle the slot
-- receives a change, the connector acknowledges its LSN, and PostgreSQL can recycle WAL.
-- The replication role may write this table and public.cdc_signal (003_resync.sql), no other.
CREATE TABLE IF NOT EXISTS public.cdc_heartbeat (
    id      integer PRIMARY KEY,
    beat_at timestamptz NOT NULL
);
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = 'cdc_users' AND schemaname = 'public' AND tablename = 'cdc_heartbeat') THEN
        ALTER PUBLICATION cdc_users ADD TABLE public.cdc_heartbeat;
    END IF;
END
$$;
GRANT SELECT, INSERT, UPDATE ON public.cdc_heartbeat TO debezium;

-- How far the slot's WAL sender has read: pg_stat_replication.sent_lsn, which PostgreSQL shows
-- only to superusers and pg_read_all_stats. The capture watchdog (cdcpipe/runtime/liveness.py)
-- counts a slot standing still against the connector only once the sender has sent past the
-- confirmed position: after a restart the sender first re-reads WAL from the slot's restart_lsn
-- up to that position and sends nothing. This shows that one LSN and nothing else; each runtime
-- grants EXECUTE to the watchdog's login (cdcpipe).
CREATE OR REPLACE FUNCTION public.cdc_slot_sent_lsn(slot name) RETURNS pg_lsn
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
    SELECT r.sent_lsn FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid
    WHERE s.slot_name = slot
$$;
REVOKE ALL ON FUNCTION public.cdc_slot_sent_lsn(name) FROM PUBLIC;
