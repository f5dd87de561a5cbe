"""docker-compose.yml, checked without a Docker engine: it parses, every image is pinned,
long-running services have healthchecks, referenced paths and variables exist, published
ports do not collide, and Connect's Debezium matches the local runtime's manifest."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from cdcpipe.jars import manifest_version
from cdcpipe.settings import REPO

COMPOSE = REPO / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _dockerfile(build) -> Path:
    if isinstance(build, str):
        return REPO / build / "Dockerfile"
    return REPO / build.get("context", ".") / build.get("dockerfile", "Dockerfile")


def _pinned(image: str) -> bool:
    name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
    return bool(tag) and tag != "latest" and not tag.startswith("latest-")


def test_every_image_is_pinned(compose):
    for name, svc in compose["services"].items():
        if "image" in svc:
            assert _pinned(svc["image"]), f"{name}: image {svc['image']} is not pinned"
        if "build" in svc:
            dockerfile = _dockerfile(svc["build"])
            bases = re.findall(r"^FROM\s+(\S+)", dockerfile.read_text(), re.M)
            assert bases and all(_pinned(b) for b in bases), f"{dockerfile}: unpinned base {bases}"


def test_long_running_services_have_healthchecks(compose):
    one_shots = {n for n, s in compose["services"].items() if s.get("restart") == "no"}
    assert {"postgres-setup", "connector-init", "cassandra-init", "airflow-init"} <= one_shots
    for name, svc in compose["services"].items():
        if name not in one_shots:
            assert "healthcheck" in svc, f"{name} has no healthcheck"
            assert "mem_limit" in svc, f"{name} has no memory limit"


def test_dependencies_use_conditions(compose):
    for name, svc in compose["services"].items():
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on without conditions"
        for dep, spec in deps.items():
            assert dep in compose["services"], f"{name} depends on unknown {dep}"
            assert spec["condition"] in ("service_healthy", "service_completed_successfully"), (name, dep)


def test_referenced_paths_exist(compose):
    for name, svc in compose["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name}: {source} does not exist"
        if "build" in svc:
            assert _dockerfile(svc["build"]).exists(), f"{name}: no Dockerfile"
    for dockerfile in (REPO / "connectors" / "Dockerfile", REPO / "spark_jobs" / "Dockerfile"):
        for src in re.findall(r"^COPY\s+(.+)\s+\S+$", dockerfile.read_text(), re.M):
            for path in src.split():
                assert (REPO / path).exists(), f"{dockerfile}: COPY {path} does not exist"


def test_pipeline_files_are_mounted_not_copied(compose):
    mounts = {v.split(":")[0] for s in compose["services"].values() for v in s.get("volumes", [])}
    assert {"./airflow/dags", "./connectors", "./sql/postgres", "./sql/cassandra", "./spark_jobs"} <= mounts


def test_every_variable_is_in_env_example():
    used = set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)", COMPOSE.read_text()))
    example = REPO / ".env.example"
    defined = {line.split("=", 1)[0] for line in example.read_text().splitlines() if "=" in line and not line.startswith("#")}
    assert used and used <= defined, f"missing from .env.example: {sorted(used - defined)}"


def test_published_ports_do_not_collide(compose):
    published = [p.split(":")[0] for s in compose["services"].values() for p in s.get("ports", [])]
    assert len(published) == len(set(published)), published
    assert {"8080", "9021", "8083", "8081", "8090", "9042", "5432"} <= set(published)


def test_debezium_version_matches_the_local_manifest():
    dockerfile = (REPO / "connectors" / "Dockerfile").read_text()
    assert re.search(r"ARG DEBEZIUM_VERSION=(\S+)", dockerfile).group(1) == manifest_version("debezium.version")
    spark = (REPO / "spark_jobs" / "Dockerfile").read_text()
    assert re.search(r"ARG SPARK_VERSION=(\S+)", spark).group(1) == manifest_version("spark.version")
    assert f"apache/spark:{manifest_version('spark.version')}-" in spark
