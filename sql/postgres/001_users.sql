-- The users table: the data contract shared by the ingest DAG, the Spark job and Cassandra.
-- Idempotent: applied by `cdcpipe up` on every start and by the Docker stack's init.

CREATE TABLE IF NOT EXISTS public.users (
    id                   uuid PRIMARY KEY,          -- randomuser's login.uuid
    username             text,
    email                text,
    title                text,
    first_name           text,
    last_name            text,
    gender               text,
    dob                  timestamptz,
    registered_at        timestamptz,
    phone                text,
    cell                 text,
    street_number        integer,
    street_name          text,
    city                 text,
    state                text,
    country              text,
    postcode             text,                      -- the API sends strings and integers
    latitude             double precision,
    longitude            double precision,
    timezone_offset      text,
    timezone_description text,
    nationality          text,
    picture_large        text,
    picture_medium       text,
    picture_thumbnail    text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

-- updated_at is maintained by the database, whoever writes the row. An update that changes
-- nothing leaves it alone (004_schema_changes.sql rewrites a row to itself so that Debezium
-- learns the table's new columns).
CREATE OR REPLACE FUNCTION public.users_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW::text IS DISTINCT FROM OLD::text THEN  -- as text: some types (point) have no equality
        NEW.updated_at := clock_timestamp();
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS users_touch_updated_at ON public.users;
CREATE TRIGGER users_touch_updated_at
    BEFORE UPDATE ON public.users
    FOR EACH ROW EXECUTE FUNCTION public.users_touch_updated_at();

-- REPLICA IDENTITY FULL: update and delete events then carry the complete before image
-- (every column, not only the key). The Spark job does not need it to stay correct (it keys
-- on id and orders by LSN), but users watching the topic see what a change replaced, and a
-- primary-key update is visible as the delete of the old id. The cost is more WAL per update
-- on a table whose rows are small.
ALTER TABLE public.users REPLICA IDENTITY FULL;

-- Writers (the ingest DAG's users_db connection) get DML on the table through this role,
-- which each runtime grants to its application login.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'users_writer') THEN
        CREATE ROLE users_writer NOLOGIN;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO users_writer;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.users TO users_writer;
