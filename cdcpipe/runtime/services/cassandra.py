"""Cassandra 5.0, single node, from cassandra-all and its Maven dependencies.

The binary tarball of 5.0 is not on Maven Central, so this module writes what the tarball's
conf/ and bin/ scripts would provide: cassandra.yaml, logback.xml and the JVM options of
conf/jvm-server.options + conf/jvm17-server.options.

JMX (``CDCPIPE_PORT_CASSANDRA_JMX``, 7199) wants a login: user ``cdcpipe``, password the
``cassandra_jmx`` secret, in a 0600 password file. Without one, any local account could use
MBeans that load code, which then runs as the account that runs the stack (issue 24). Nothing
in the runtime uses JMX; it is kept for ``nodetool`` (``-u cdcpipe -pwf <state>/cassandra/conf/
jmx.password``).

CQL wants a login too (``PasswordAuthenticator``, ``CassandraAuthorizer``), one role per use:

* ``cdcpipe``, superuser: the CLI, migrations, resync, verify, the tests, ``cdcpipe cqlsh``;
* ``cdcpipe_job``: the Spark job; SELECT, MODIFY and ALTER (new columns) on keyspace ``cdc``,
  granted on the keyspace so they survive ``resync --rebuild`` re-creating ``cdc.users``;
* ``cdcpipe_reader``: the console; SELECT on keyspace ``cdc``.

The storage port (internode messaging, 7000) has no password in Cassandra, and any process
that reaches it and knows the cluster's name could join the ring and have data streamed to it.
So it speaks TLS only and wants the peer's certificate (``require_client_auth``): a key pair
made on the first ``up`` with the JDK's ``keytool`` into a 0600 PKCS12 keystore, the same
certificate alone in the truststore, both under ``<state>/cassandra/conf/``, their password
the ``cassandra_keystore`` secret (never on keytool's command line: ``-storepass:env``). A peer
without that key is refused at the handshake.

Their passwords are secrets (``cassandra_admin``, ``cassandra_job``, ``cassandra_reader``),
and each is also written to a 0600 credentials file in cqlsh's format under
``<state>/cassandra/conf/``, which the job and ``cqlsh --credentials`` read. On a node's first
start Cassandra creates the well-known superuser ``cassandra``/``cassandra``;
:meth:`Cassandra.after_ready` logs in with it once to create ``cdcpipe`` and then drops it,
seconds after the node first answers and before any row is written.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ...errors import ConfigError, MissingDependency, ServiceFailed
from ...pipeline.cassandra_session import CLUSTER_CONSISTENCY, refused_login
from ...pipeline.logins import Login
from ...settings import private_dir, write_private
from .. import java, migrations
from .base import NotReady, Service

HEAP_MB = 1024
#: Each node's heap on the cluster topology (three nodes share the machine).
CLUSTER_HEAP_MB = 768
#: The one JMX user (``nodetool -u``); its password is the ``cassandra_jmx`` secret.
JMX_USER = "cdcpipe"
#: CQL roles: use -> (role, secret). See the module docstring.
ROLES = {
    "admin": ("cdcpipe", "cassandra_admin"),
    "job": ("cdcpipe_job", "cassandra_job"),
    "reader": ("cdcpipe_reader", "cassandra_reader"),
}
#: What each non-superuser role may do on keyspace cdc.
GRANTS = {"job": ("SELECT", "MODIFY", "ALTER"), "reader": ("SELECT",)}
#: The data centre SimpleSnitch puts every node in (NetworkTopologyStrategy names it).
DATA_CENTER = "datacenter1"
#: The superuser Cassandra creates on a new node's first start; dropped by after_ready.
DEFAULT_LOGIN = Login("cassandra", "cassandra")

#: conf/jvm17-server.options of Cassandra 5.0: module access Cassandra needs on Java 17.
JVM17_OPTIONS = """
-XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1 -XX:G1HeapRegionSize=16m
-XX:G1RSetUpdatingPauseTimePercent=5 -XX:InitiatingHeapOccupancyPercent=70
-Djdk.attach.allowAttachSelf=true
--add-exports java.base/jdk.internal.misc=ALL-UNNAMED
--add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
--add-exports java.management/com.sun.jmx.remote.security=ALL-UNNAMED
--add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
--add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
--add-exports java.sql/java.sql=ALL-UNNAMED
--add-exports java.base/java.lang.ref=ALL-UNNAMED
--add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
--add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
--add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
--add-opens java.base/java.lang.module=ALL-UNNAMED
--add-opens java.base/jdk.internal.loader=ALL-UNNAMED
--add-opens java.base/jdk.internal.ref=ALL-UNNAMED
--add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
--add-opens java.base/jdk.internal.math=ALL-UNNAMED
--add-opens java.base/jdk.internal.module=ALL-UNNAMED
--add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
--add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
--add-opens java.base/sun.nio.ch=ALL-UNNAMED
--add-opens java.base/java.io=ALL-UNNAMED
--add-opens java.base/java.lang.reflect=ALL-UNNAMED
--add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
--add-opens java.base/java.lang=ALL-UNNAMED
--add-opens java.base/java.util=ALL-UNNAMED
--add-opens java.base/java.nio=ALL-UNNAMED
--add-opens java.base/java.nio.charset=ALL-UNNAMED
-Dio.netty.tryReflectionSetAccessible=true
-Dio.netty.allocator.useCacheForAllThreads=true
-Dio.netty.allocator.maxOrder=11
""".split()

LOGBACK = """<configuration scan="false">
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="STDOUT"/></root>
</configuration>
"""


def initial_token(node: int, nodes: int) -> int:
    """Node ``node``'s one token (Murmur3): the ring split evenly, node 1 at 0."""
    token = (node - 1) * (2**64 // nodes)
    return token - 2**64 if token >= 2**63 else token


class Cassandra(Service):
    name = "cassandra"
    node_kind = "cassandra"
    port_names = ("cassandra", "cassandra_storage", "cassandra_jmx")
    start_timeout = 180.0

    @property
    def heap_mb(self) -> int:
        return HEAP_MB if self.node_count == 1 else CLUSTER_HEAP_MB

    @property
    def contact_points(self) -> str:
        """What the driver is given (``pipeline.cassandra_session.contact_points``): the one
        address, or every node's ``address:port`` on a cluster."""
        if self.node_count == 1:
            return self.host
        return ",".join(f"{self.host}:{self.node_port(None, node)}" for node in self.nodes)

    @property
    def consistency(self) -> str | None:
        """Reads and writes of the CLI and the job: LOCAL_QUORUM on a cluster (RF 3), else the driver's."""
        return CLUSTER_CONSISTENCY if self.node_count > 1 else None

    def _yaml(self, node: int = 1) -> dict[str, Any]:
        data = self.node_dir(node) / "data"
        clustered = self.node_count > 1
        seeds = ",".join(f"{self.host}:{self.node_port('cassandra_storage', n)}" for n in self.nodes)
        return {
            "cluster_name": "cdcpipe",
            "num_tokens": 1,
            "initial_token": initial_token(node, self.node_count),
            # A new cluster's nodes start together, each with its token: none streams data in.
            "auto_bootstrap": not clustered,
            "partitioner": "org.apache.cassandra.dht.Murmur3Partitioner",
            # One data centre, "datacenter1": what NetworkTopologyStrategy and LOCAL_QUORUM name.
            "endpoint_snitch": "SimpleSnitch",
            "seed_provider": [
                {
                    # Every node is a seed: the nodes of a new cluster start at once, and a
                    # node that is not a seed gives up when no seed answers its first gossip.
                    "class_name": "org.apache.cassandra.locator.SimpleSeedProvider",
                    "parameters": [{"seeds": seeds}],
                }
            ],
            "listen_address": self.host,
            "rpc_address": self.host,
            "storage_port": self.node_port("cassandra_storage", node),
            "native_transport_port": self.node_port(None, node),
            # Durable before acknowledged: the Spark job commits a Kafka offset once Cassandra
            # has acknowledged the writes it covers, so an acknowledged write must survive a
            # crash. 'periodic' (the default) syncs every 10 s and acknowledges before: a
            # kill -9 right after a committed batch lost those rows for good (seen). 'group'
            # (10 ms window) held every mutation thread for the window: ~1,500 rows/s at most,
            # the job fell behind 2,000 changes/s. 'batch' syncs as soon as writes wait (an
            # fsync is ~1.5 ms here), and 64 write threads let many wait for one sync (figures:
            # docs/benchmarks.md).
            "commitlog_sync": "batch",
            "commitlog_segment_size": "32MiB",
            "commitlog_total_space": "512MiB",
            "data_file_directories": [str(data / "data")],
            "commitlog_directory": str(data / "commitlog"),
            "saved_caches_directory": str(data / "saved_caches"),
            "hints_directory": str(data / "hints"),
            "cdc_raw_directory": str(data / "cdc_raw"),
            # Internode TLS with the peer's certificate required (see the module docstring).
            "server_encryption_options": {
                "internode_encryption": "all",
                "optional": False,
                "store_type": "PKCS12",
                "keystore": str(self.keystore),
                "keystore_password": self.secrets["cassandra_keystore"],
                "truststore": str(self.truststore),
                "truststore_password": self.secrets["cassandra_keystore"],
                "require_client_auth": True,
            },
            "authenticator": "PasswordAuthenticator",
            "authorizer": "CassandraAuthorizer",
            "role_manager": "CassandraRoleManager",
            "storage_compatibility_mode": "NONE",
            # Sized for a 2-core machine that runs the whole stack.
            "concurrent_reads": 8,
            "concurrent_writes": 64,
            "concurrent_counter_writes": 4,
            "concurrent_compactors": 1,
            # Trie memtables off heap (what Cassandra 5.0's cassandra_latest.yaml selects):
            # measured ~10-20% less Cassandra CPU per row than the skip list on the bench.
            "memtable": {
                "configurations": {
                    "skiplist": {"class_name": "SkipListMemtable"},
                    "trie": {"class_name": "TrieMemtable"},
                    "default": {"inherits": "trie"},
                }
            },
            "memtable_allocation_type": "offheap_objects",
            "memtable_heap_space": "128MiB" if not clustered else "64MiB",
            "memtable_offheap_space": "512MiB" if not clustered else "256MiB",
            "memtable_flush_writers": 1,
            "key_cache_size": "16MiB",
            "counter_cache_size": "0MiB",
            "prepared_statements_cache_size": "16MiB",
            # A read model with deletes keeps a tombstone per deleted row for gc_grace_seconds
            # (10 days: the ordering rule needs them, see cdcpipe/pipeline/changes.py). `cdcpipe verify`
            # scans the whole table; with the default failure threshold (100,000 tombstones
            # per read) it failed with READ_TOO_MANY_TOMBSTONES after ~100k deletes (seen).
            "tombstone_warn_threshold": 100000,
            "tombstone_failure_threshold": 5000000,
            "auto_snapshot": False,
            "snapshot_before_compaction": False,
            # On a cluster a node that was down gets the writes it missed from its peers'
            # hints (kept up to 3 hours) when it comes back; repair covers longer outages.
            # One node has no peer to keep hints for it.
            "hinted_handoff_enabled": clustered,
            # A scan of the whole table (verify) waits on two replicas on a cluster, on cores
            # the other nodes share: the default 10 s timed out under load (seen).
            "range_request_timeout": "10000ms" if not clustered else "30000ms",
            # With a node down, a write at LOCAL_QUORUM needs both live replicas; on shared cores
            # the remote one missed the default 2 s now and then, and the batch's task was run
            # again (seen: stalls of 15-20 s after a node loss).
            "write_request_timeout": "2000ms" if not clustered else "5000ms",
            "max_hint_window": "3h",
            # The Spark job writes UNLOGGED batches of up to 32 KiB (one row per partition).
            "batch_size_warn_threshold": "64KiB",
            "batch_size_fail_threshold": "128KiB",
            "unlogged_batch_across_partitions_warn_threshold": 100,
        }

    def prepare(self) -> None:
        private_dir(self.dir)
        private_dir(self.dir / "conf")
        self._write_keystores()  # node 1's conf/; every node of a cluster uses the same pair
        for node in self.nodes:
            conf = private_dir(self.node_dir(node) / "conf")
            private_dir(self.node_dir(node) / "data")
            # JSON is valid YAML: no YAML writer needed. 0600: it holds the keystore's password.
            write_private(conf / "cassandra.yaml", json.dumps(self._yaml(node), indent=2))
            (conf / "logback.xml").write_text(LOGBACK)
        (self.dir / "conf" / "logback-tools.xml").write_text(LOGBACK.replace('root level="INFO"', 'root level="WARN"'))
        # The JDK's format, "<user> <password>" (it refuses a file others can read); nodetool's
        # -pwf reads the same file.
        write_private(self.jmx_password_file, f"{JMX_USER} {self.secrets['cassandra_jmx']}\n")
        self._write_credentials()

    def login(self, use: str = "admin") -> Login:
        """The CQL login for ``use`` (admin, job or reader)."""
        role, secret = ROLES[use]
        return Login(role, self.secrets[secret])

    def credentials_file(self, use: str = "admin"):
        """The 0600 credentials file (cqlsh's format) of ``use``'s login."""
        return self.dir / "conf" / f"{ROLES[use][0]}.credentials"

    def _write_credentials(self) -> None:
        private_dir(self.dir / "conf")
        for use in ROLES:
            write_private(self.credentials_file(use), self.login(use).file_text())

    @property
    def keystore(self):
        """The node's TLS key pair for the storage port (PKCS12, 0600)."""
        return self.dir / "conf" / "internode.keystore.p12"

    @property
    def truststore(self):
        """The certificate a peer must present on the storage port (PKCS12, 0600)."""
        return self.dir / "conf" / "internode.truststore.p12"

    def _write_keystores(self) -> None:
        """Make the internode key pair and truststore once (kept across restarts)."""
        if self.keystore.exists() and self.truststore.exists():
            return
        keytool = Path(java.java_bin()).resolve().parent / "keytool"
        tool = str(keytool) if keytool.exists() else shutil.which("keytool")
        if tool is None:
            raise MissingDependency("keytool (part of every JDK and JRE) is needed once to make Cassandra's internode keys")
        env = {**os.environ, "CDCPIPE_KEYSTORE_PASSWORD": self.secrets["cassandra_keystore"]}
        password = ["-storepass:env", "CDCPIPE_KEYSTORE_PASSWORD"]
        work = self.dir / "conf" / "keys.tmp"
        shutil.rmtree(work, ignore_errors=True)
        private_dir(work)
        steps = [
            ["-genkeypair", "-alias", "node", "-keyalg", "EC", "-groupname", "secp256r1", "-validity", "36500",
             "-dname", "CN=cdcpipe cassandra internode", "-keystore", str(work / "keystore"), "-storetype", "PKCS12",
             *password, "-keypass:env", "CDCPIPE_KEYSTORE_PASSWORD"],
            ["-exportcert", "-alias", "node", "-keystore", str(work / "keystore"), "-storetype", "PKCS12", *password,
             "-file", str(work / "node.crt")],
            ["-importcert", "-noprompt", "-alias", "node", "-file", str(work / "node.crt"), "-keystore",
             str(work / "truststore"), "-storetype", "PKCS12", *password],
        ]  # fmt: skip
        for step in steps:
            done = subprocess.run([tool, *step], capture_output=True, text=True, env=env, timeout=120)
            if done.returncode != 0:
                raise ServiceFailed(self.name, f"keytool {step[0]} failed: {(done.stdout + done.stderr).strip()[-500:]}")
        for made, target in ((work / "keystore", self.keystore), (work / "truststore", self.truststore)):
            made.chmod(0o600)
            os.replace(made, target)
        shutil.rmtree(work, ignore_errors=True)

    @property
    def jmx_password_file(self):
        return self.dir / "conf" / "jmx.password"

    def _jamm(self) -> str:
        found = glob.glob(str(self.settings.jars / "cassandra" / "jamm-*.jar"))
        if not found:
            raise MissingDependency(f"jamm agent jar not found in {self.settings.jars / 'cassandra'}; run 'make jars'")
        return found[0]

    def launch(self, nodes: Iterable[int] | None = None) -> None:
        """Start every node that is not running, or those of ``nodes``."""
        for node in self.nodes if nodes is None else nodes:
            self.spawn(self.node_process(node), self._argv(node), env={**os.environ, "MALLOC_ARENA_MAX": "4"})

    def _argv(self, node: int) -> list[str]:
        conf = self.node_dir(node) / "conf"
        return [
            java.java_bin(),
            f"-Xms{self.heap_mb}m",
            f"-Xmx{self.heap_mb}m",
            "-Xss256k",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=300",
            "-XX:+ExitOnOutOfMemoryError",
            "-XX:+UseThreadPriorities",
            "-XX:+PerfDisableSharedMem",
            "-XX:ParallelGCThreads=2",
            "-XX:ConcGCThreads=1",
            "-Djava.net.preferIPv4Stack=true",
            *JVM17_OPTIONS,
            f"-javaagent:{self._jamm()}",
            f"-Dcassandra.config=file://{conf / 'cassandra.yaml'}",
            f"-Dcassandra.storagedir={self.node_dir(node) / 'data'}",
            f"-Dcassandra.logdir={self.settings.logs_dir}",
            f"-Dlogback.configurationFile={conf / 'logback.xml'}",
            "-Dcassandra-foreground=yes",
            f"-Dcassandra.jmx.local.port={self.node_port('cassandra_jmx', node)}",
            "-Dcom.sun.management.jmxremote.authenticate=true",
            f"-Dcom.sun.management.jmxremote.password.file={self.jmx_password_file}",
            "-Dcassandra.skip_wait_for_gossip_to_settle=0",
            # Create the default superuser at once (not 10 s after start), for after_ready.
            "-Dcassandra.superuser_setup_delay_ms=0",
            "-Dcassandra.libjemalloc=-",
            "-Dcassandra.available_processors=2",
            # bcrypt's work factor for role passwords: its least (4), not 10. Every login
            # checks one hash; at 10 a new session (two logins) cost the node about 0.2 s of
            # CPU, and the console's status sampler opens one every 5 s: bcrypt was 42 % of
            # Cassandra's JFR samples under 2,000 changes/s (docs/benchmarks.md). The work factor slows the
            # guessing of a stolen hash; these passwords are 24 random characters, 144 bits (secrets.json),
            # which no work factor is needed to keep from being guessed.
            "-Dcassandra.auth_bcrypt_gensalt_log2_rounds=4",
            "-cp",
            f"{conf}:{java.classpath(self.settings.jars / 'cassandra')}",
            "org.apache.cassandra.service.CassandraDaemon",
        ]

    def nodetool_argv(self, *args: str, login: bool = True, node: int = 1) -> list[str]:
        """``nodetool <args>`` against ``node``, logged in unless ``login`` is False; its
        history goes to the service's directory, not the home directory."""
        argv = [
            java.java_bin(),
            *JVM17_OPTIONS,
            f"-Duser.home={self.dir}",
            f"-Dlogback.configurationFile={self.dir / 'conf' / 'logback-tools.xml'}",
            "-cp",
            java.classpath(self.settings.jars / "cassandra"),
        ]
        argv += ["org.apache.cassandra.tools.NodeTool", "-h", self.host, "-p", str(self.node_port("cassandra_jmx", node))]
        if login:
            argv += ["-u", JMX_USER, "-pwf", str(self.jmx_password_file)]
        return [*argv, *args]

    def session(self, keyspace: str | None = None, use: str = "admin", consistency: str | None = None):
        """A long-lived cassandra-driver session logged in for ``use`` (admin, job, reader);
        the caller shuts the cluster down (``session.cluster.shutdown()``). For a short use,
        :meth:`connected`."""
        from ...pipeline.cassandra_session import connect

        return connect(self.contact_points, self.port(), keyspace, login=self.login(use), consistency=consistency or self.consistency)

    def connected(self, keyspace: str | None = None, use: str = "admin", consistency: str | None = None):
        """``with cassandra.connected() as session:`` — the cluster is shut down on leaving."""
        from ...pipeline.cassandra_session import session

        return session(self.contact_points, self.port(), keyspace, login=self.login(use), consistency=consistency or self.consistency)

    def probe(self) -> None:
        from cassandra import DriverException
        from cassandra.cluster import NoHostAvailable

        from ...pipeline.cassandra_session import session

        for login in (self.login(), DEFAULT_LOGIN):  # the default superuser: a new node (after_ready)
            try:
                with session(self.contact_points, self.port(), login=login) as opened:
                    opened.execute("SELECT release_version FROM system.local", timeout=10).one()
                    if self.node_count > 1:
                        self._probe_nodes(opened)
                return
            except NoHostAvailable as exc:
                if refused_login(exc) is None:
                    raise NotReady(f"CQL not answering on {self.host}:{self.port()}: {exc.errors or exc}") from None
            except DriverException as exc:
                raise NotReady(f"CQL query failed: {exc}") from None
        raise NotReady(f"CQL answers on {self.host}:{self.port()} but refuses role {self.login().username}'s login")

    def _probe_nodes(self, opened) -> None:
        """Every node of the cluster is up and answers a query of its own (NotReady if not)."""
        from cassandra.cluster import NoHostAvailable

        hosts = {host.endpoint.port: host for host in opened.cluster.metadata.all_hosts()}
        for node in self.nodes:
            port = self.node_port(None, node)
            host = hosts.get(port)
            if host is None or not host.is_up:
                raise NotReady(f"node {self.node_process(node)} ({self.host}:{port}) not up in the ring yet")
            # The session opens its pool to each host in the background: a query aimed at a
            # host whose pool is not open yet fails with "marked down or removed".
            for attempt in range(20):
                try:
                    opened.execute("SELECT release_version FROM system.local", timeout=10, host=host).one()
                    break
                except NoHostAvailable:
                    if attempt == 19:
                        raise NotReady(f"node {self.node_process(node)} ({self.host}:{port}) has no connection open") from None
                    time.sleep(0.25)

    def _replicate(self, session) -> None:
        """On a cluster: the keyspaces that must survive the loss of a node get a replica on
        every node (RF 3, NetworkTopologyStrategy). system_auth first: a role written while it
        had one replica would live on one node only, whose loss would refuse every login."""
        if self.node_count == 1:
            return
        replication = f"{{'class': 'NetworkTopologyStrategy', '{DATA_CENTER}': {self.node_count}}}"
        for keyspace in ("system_auth", "system_distributed", "system_traces"):
            session.execute(f"ALTER KEYSPACE {keyspace} WITH replication = {replication}", timeout=60)
        session.execute(f"CREATE KEYSPACE IF NOT EXISTS cdc WITH replication = {replication}", timeout=60)
        session.execute(f"ALTER KEYSPACE cdc WITH replication = {replication}", timeout=60)

    def after_ready(self) -> None:
        """The roles, keyspaces, tables and grants. A node that answered the probe can still
        time out, lose its quorum or fail every pool a moment later (three nodes starting on two
        cores): those are NotReady, so ``up`` tries again; a refused login is a ConfigError."""
        from cassandra import CoordinationFailure, OperationTimedOut, ReadTimeout, Unauthorized, Unavailable, WriteTimeout
        from cassandra.cluster import NoHostAvailable

        try:
            self._set_up()
        except NoHostAvailable as exc:
            raise NotReady(f"set-up could not reach a node: {exc.errors or exc}") from None
        except (OperationTimedOut, ReadTimeout, WriteTimeout, Unavailable, CoordinationFailure, Unauthorized) as exc:
            raise NotReady(f"set-up failed, to be tried again: {exc.__class__.__name__}: {str(exc)[:300]}") from None

    def _set_up(self) -> None:
        self._take_over()
        self._write_credentials()
        with self.connected() as session:
            self._replicate(session)
            migrations.apply_cassandra(session)
            for use, permissions in GRANTS.items():
                login = self.login(use)
                session.execute(f"CREATE ROLE IF NOT EXISTS {login.username} WITH LOGIN = true AND PASSWORD = %s", (login.password,))
                session.execute(f"ALTER ROLE {login.username} WITH LOGIN = true AND PASSWORD = %s", (login.password,))
                held = session.execute(
                    "SELECT permissions FROM system_auth.role_permissions WHERE role = %s AND resource = 'data/cdc'", (login.username,)
                ).one()
                for permission in permissions:  # only what is missing: a second GRANT is a warning in the server's log
                    if permission not in (held.permissions if held else ()):
                        session.execute(f"GRANT {permission} ON KEYSPACE cdc TO {login.username}")

    def _take_over(self) -> None:
        """Make sure role ``cdcpipe`` exists and the default superuser does not (a new node
        has only the default one). ConfigError if neither login is accepted."""
        from cassandra.cluster import NoHostAvailable

        from ...pipeline.cassandra_session import session

        admin = self.login()
        try:
            with self.connected() as opened:
                opened.execute("DROP ROLE IF EXISTS cassandra")
            return
        except NoHostAvailable as exc:
            if refused_login(exc) is None:
                raise
        try:
            with session(self.contact_points, self.port(), login=DEFAULT_LOGIN, consistency=self.consistency) as opened:
                self._as_default_superuser(opened, admin)
        except NoHostAvailable as exc:
            if refused_login(exc) is None:
                raise
            raise ConfigError(
                f"Cassandra refuses role {admin.username}'s login, and the default superuser's: its password is not "
                f"the 'cassandra_admin' secret of {self.settings.secrets_file}. Step: restore that file, or "
                "'cdcpipe down --purge' to start over with no data"
            ) from None
        with self.connected() as opened:
            opened.execute("DROP ROLE IF EXISTS cassandra")

    def _as_default_superuser(self, opened, admin: Login, timeout: float = 90.0) -> None:
        """Replicate (before the role is written: see _replicate), then create the admin role.

        On a cluster the default superuser's own row was written while system_auth had one
        replica. Once system_auth has one per node, a node reads that row at QUORUM from two of
        them, and until a repair those may both lack it: the node then denies the superuser
        its status ("User cassandra has no ALTER permission on <keyspace system_distributed>",
        seen in CI when the ALTERs outlasted the 2 s roles cache). So a refusal here is tried
        again (every statement is idempotent), after a read of that row at ALL, whose read
        repair copies it to every replica once a check lets it through."""
        from cassandra import ConsistencyLevel, Unauthorized
        from cassandra.query import SimpleStatement

        repair = SimpleStatement("SELECT role FROM system_auth.roles WHERE role = %s", consistency_level=ConsistencyLevel.ALL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._replicate(opened)
                opened.execute(
                    f"CREATE ROLE IF NOT EXISTS {admin.username} WITH SUPERUSER = true AND LOGIN = true AND PASSWORD = %s",
                    (admin.password,),
                )
                return
            except Unauthorized:
                if time.monotonic() > deadline:
                    raise
            time.sleep(1)
            try:
                opened.execute(repair, (DEFAULT_LOGIN.username,), timeout=30)
            except Exception:  # noqa: BLE001 - refused or a replica busy: the next round tries again
                pass

    def info(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port(),
            **({"contact_points": self.contact_points, "consistency": self.consistency} if self.node_count > 1 else {}),
            "keyspace": "cdc",
            "cqlsh": f"cqlsh --credentials {self.credentials_file()} {self.host} {self.port()}",
        }
