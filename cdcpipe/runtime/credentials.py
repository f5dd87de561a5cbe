"""Passwords of the local runtime, generated once per state directory.

They live in ``<home>/secrets.json`` (mode 0600) and nowhere in the repository, so no
password is hard-coded and ``down --purge`` forgets them with the data they protect.
"""

from __future__ import annotations

import json
import os
import secrets

from ..settings import Settings, secure_home

#: Accounts of the local runtime -> what each is for; each gets a random password on first use.
ACCOUNTS: dict[str, str] = {
    "postgres": "PostgreSQL superuser, used only to provision",
    "cdcpipe": "owner of the users database: Airflow's users_db connection, tests, checks",
    "debezium": "the replication role Debezium connects as (REPLICATION + SELECT only)",
    "airflow": "owner of Airflow's metadata database",
    "registry": "owner of Apicurio Registry's storage database",
    "airflow_admin": "Airflow UI / REST API login",
    "airflow_jwt": "Airflow's JWT signing secret, shared by its processes",
    "spark_auth": "Spark RPC shared secret (spark.authenticate) of master, worker and jobs",
    "spark_ui": "the Spark web UIs' login (user cdcpipe): master, worker and the job's",
    "console": "the browser console's login (user admin)",
    "randomuser": "the local randomuser stand-in's API key (Authorization: Bearer), sent by the ingest DAGs",
    "connect": "Kafka Connect's REST API login (user cdcpipe)",
    "cassandra_jmx": "Cassandra's JMX login (user cdcpipe; nodetool -u cdcpipe -pwf)",
    "kafka": "Kafka's login (SASL/PLAIN, user cdcpipe) for every client and the broker itself",
    "registry_api": "the schema registry's API login (user cdcpipe)",
    "cassandra_admin": "Cassandra superuser role cdcpipe: CLI, migrations, resync, verify, cqlsh",
    "cassandra_job": "Cassandra role cdcpipe_job: the Spark job (reads and writes keyspace cdc)",
    "cassandra_reader": "Cassandra role cdcpipe_reader: the console (reads keyspace cdc)",
    "cassandra_keystore": "password of Cassandra's internode keystore and truststore (storage port TLS)",
}


def load(settings: Settings) -> dict[str, str]:
    """Return the account -> password map, creating missing entries."""
    path = settings.secrets_file
    current: dict[str, str] = {}
    if path.exists():
        current = json.loads(path.read_text())
        if path.stat().st_mode & 0o077:  # written by hand, or copied with a loose umask
            path.chmod(0o600)
    missing = [name for name in ACCOUNTS if name not in current]
    if missing:
        for name in missing:
            current[name] = secrets.token_urlsafe(18)
        secure_home(settings)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(current, fh, indent=2)
        os.replace(tmp, path)
    return current
