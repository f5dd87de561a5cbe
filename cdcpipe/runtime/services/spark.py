"""Spark 4 from the pyspark wheel: a standalone master and one worker on 127.0.0.1.

Jobs run on ``local[N]`` by default (``CDCPIPE_SPARK_MASTER``), or on this cluster with
``--master spark://127.0.0.1:7077``. The Kafka source and Avro jars come from the jars
directory, resolved ahead of time, so no job downloads anything when it starts.

Spark's web UIs have no login of their own (``spark.acls.enable`` only judges a user some
filter has authenticated), so every UI of the stack, master, worker and the job's, runs the
project's filter (``cdcpipe/jvm/spark``): HTTP Basic, user ``cdcpipe``, password the
``spark_ui`` secret, which the filter reads from a 0600 file (:attr:`Spark.ui_credentials_file`)
so that it is never a Spark setting (those show in ``ps`` and on the UI's environment page).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import requests

from ...errors import MissingDependency
from ...pipeline.logins import Login, ui_login_conf
from ...settings import node_process, private_dir, write_private
from .. import java
from ..jars import spark_extras_jar
from .base import NotReady, Service

DAEMON_HEAP_MB = 256
#: Settings of master and worker. Applications (drivers, and the executors the worker starts
#: for them) must present the shared secret; the UIs cannot kill anything; no REST
#: submission server (an unauthenticated way to run code on the cluster).
DAEMON_CONF = {
    "spark.authenticate": "true",
    "spark.ui.killEnabled": "false",
    "spark.master.rest.enabled": "false",
}
#: The login of every Spark UI.
UI_USER = "cdcpipe"
#: Memory and cores the worker offers to executors.
WORKER_MEMORY = "2g"
WORKER_CORES = 2


def spark_home() -> Path:
    """The pyspark package directory, which is a complete SPARK_HOME (jars/, bin/)."""
    try:
        import pyspark
    except ImportError:
        raise MissingDependency("pyspark is not installed in this environment; run 'make venv'") from None
    return Path(pyspark.__file__).resolve().parent


def job_jars(jars_dir: Path) -> list[str]:
    """The jars a streaming job adds to Spark: the Kafka source, Avro support, and the project's
    classes (the UI's login filter, the checkpoint file manager)."""
    return sorted(str(p) for p in [*(jars_dir / "spark").glob("*.jar"), *(jars_dir / "spark-extras").glob("*.jar")])


class Spark(Service):
    name = "spark"
    node_kind = "spark_worker"
    port_names = ("spark_master", "spark_master_ui", "spark_worker_ui")
    start_timeout = 90.0

    @property
    def processes(self) -> tuple[str, ...]:
        return ("spark-master", *(self.node_process(node) for node in self.nodes))

    def node_process(self, node: int) -> str:
        """The workers are the nodes: ``spark-worker``, ``spark-worker-2``."""
        return node_process("spark-worker", node)

    @property
    def worker_cores(self) -> int:
        """Cores each worker offers: the machine's two, split between the workers of a cluster."""
        return max(1, WORKER_CORES // self.node_count)

    @property
    def master_url(self) -> str:
        return f"spark://{self.host}:{self.port('spark_master')}"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.port('spark_master_ui')}"

    @property
    def ui_login(self) -> Login:
        return Login(UI_USER, self.secrets["spark_ui"])

    @property
    def ui_credentials_file(self) -> Path:
        """The UIs' login (0600), read by the filter of master, worker and job."""
        return self.dir / "ui.credentials"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "SPARK_HOME": str(spark_home()),
            "SPARK_LOCAL_IP": self.host,
            # The worker builds executor command lines with Spark's launcher, which needs the
            # Scala version when SPARK_HOME is the pyspark package (no RELEASE file there).
            "SPARK_SCALA_VERSION": "2.13",
            "SPARK_LOCAL_DIRS": str(self.dir / "tmp"),
            "PYSPARK_PYTHON": sys.executable,
            # The RPC secret (spark.authenticate): daemons read it from this variable, which
            # the worker also hands to the executors it starts. Never a -D option (ps).
            "_SPARK_AUTH_SECRET": self.secrets["spark_auth"],
        }

    def _daemon(self, main: str, *args: str) -> list[str]:
        return [
            java.java_bin(),
            *java.heap(DAEMON_HEAP_MB, 128),
            *java.COMMON_FLAGS,
            *(f"-D{key}={value}" for key, value in {**DAEMON_CONF, **ui_login_conf(self.ui_credentials_file)}.items()),
            "-cp",
            java.classpath(spark_home() / "jars", spark_extras_jar(self.settings).parent),
            main,
            *args,
        ]

    def work_dir(self, node: int) -> Path:
        return self.dir / ("work" if node == 1 else f"work-{node}")

    def prepare(self) -> None:
        private_dir(self.dir)
        private_dir(self.dir / "tmp")
        for node in self.nodes:
            private_dir(self.work_dir(node))
        write_private(self.ui_credentials_file, self.ui_login.file_text())

    def launch(self) -> None:
        self.spawn(
            "spark-master",
            self._daemon(
                "org.apache.spark.deploy.master.Master",
                "--host",
                self.host,
                "--port",
                str(self.port("spark_master")),
                "--webui-port",
                str(self.port("spark_master_ui")),
            ),
            env=self.env(),
        )
        for node in self.nodes:
            self.spawn(
                self.node_process(node),
                self._daemon(
                    "org.apache.spark.deploy.worker.Worker",
                    "--host",
                    self.host,
                    "--webui-port",
                    str(self.node_port("spark_worker_ui", node)),
                    "--cores",
                    str(self.worker_cores),
                    "--memory",
                    WORKER_MEMORY,
                    "--work-dir",
                    str(self.work_dir(node)),
                    self.master_url,
                ),
                env=self.env(),
            )

    def probe(self) -> None:
        try:
            answer = requests.get(self.ui_url + "/json/", auth=self.ui_login.pair, timeout=5)
            answer.raise_for_status()
            state = answer.json()
        except (requests.RequestException, ValueError) as exc:
            raise NotReady(f"master not answering on {self.ui_url}: {exc.__class__.__name__}") from None
        if state.get("status") != "ALIVE":
            raise NotReady(f"master status {state.get('status')}")
        if int(state.get("aliveworkers", 0)) < self.node_count:
            raise NotReady(f"{state.get('aliveworkers', 0)} of {self.node_count} worker(s) registered with the master")

    def info(self) -> dict[str, Any]:
        return {
            "master_url": self.master_url,
            "ui_url": self.ui_url,
            "login": f"{UI_USER}, password: cdcpipe secret spark_ui",
            "default_job_master": self.settings.spark_master,
            "spark_home": str(spark_home()),
            "job_jars": job_jars(self.settings.jars),
        }
