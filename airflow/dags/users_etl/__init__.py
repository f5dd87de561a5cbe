"""Library code of the ingest DAGs (not a DAG file: see .airflowignore).

fetch (randomuser.me API) -> validate and transform (public.users rows) -> upsert (PostgreSQL).
"""
