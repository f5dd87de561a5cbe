#!/usr/bin/env python3
"""The Docker stack's .env: written with fresh random secrets, and checked before start-up.

    python3 scripts/docker-env.py            # writes .env (mode 0600) from .env.example
    python3 scripts/docker-env.py --force    # replaces an existing .env (new secrets!)
    python3 scripts/docker-env.py --add-missing   # keeps .env, appends what a newer version needs
    python3 scripts/docker-env.py --check [--env-file .env]

--check is what the compose service `preflight` runs (on its environment) before anything
else starts: every secret must be set, longer than 12 characters, and not a known
placeholder, so a copied .env.example or a hand-typed "change-me" never reaches a
database. Standard library only: it runs on the host and in a plain python image.

Replacing the secrets of a stack that has already started is not enough on its own:
PostgreSQL keeps the passwords of its first start (postgres-setup re-applies the role
passwords on every up, but POSTGRES_PASSWORD itself only takes effect on an empty volume),
and Airflow cannot decrypt what it stored with an old Fernet key.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import secrets
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / ".env.example"
MIN_LENGTH = 12


def _password() -> str:
    # URL-safe: AIRFLOW_DB_PASSWORD and CDCPIPE_DB_PASSWORD end up inside connection URLs.
    return secrets.token_urlsafe(24)


def _fernet_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def _cluster_id() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")


# Every secret docker-compose.yml takes; tests/test_compose.py checks each is required
# there (${VAR:?...}) and refused here when it holds .env.example's value.
SECRETS = {
    "POSTGRES_PASSWORD": _password,
    "CDCPIPE_DB_PASSWORD": _password,
    "DEBEZIUM_PASSWORD": _password,
    "AIRFLOW_DB_PASSWORD": _password,
    "AIRFLOW_ADMIN_PASSWORD": _password,
    "AIRFLOW_SECRET": _password,
    "AIRFLOW_FERNET_KEY": _fernet_key,
    "SPARK_AUTH_SECRET": _password,
    "SPARK_UI_PASSWORD": _password,
    "CASSANDRA_ADMIN_PASSWORD": _password,
    "CASSANDRA_JOB_PASSWORD": _password,
    "CASSANDRA_READER_PASSWORD": _password,
    "CDCPIPE_KAFKA_PASSWORD": _password,
    "CDCPIPE_REGISTRY_PASSWORD": _password,
    "CDCPIPE_CONNECT_PASSWORD": _password,
    "CDCPIPE_CONTROL_CENTER_PASSWORD": _password,
}
# Required and generated, but not secret: KRaft's cluster id.
GENERATED = {**SECRETS, "KAFKA_CLUSTER_ID": _cluster_id}

# Values that were ever shipped or are typed by habit. Compared case-insensitively;
# anything starting with "change-me"/"changeme" is refused as well.
PLACEHOLDERS = {
    "",
    "admin",
    "airflow",
    "cassandra",
    "cdcpipe",
    "debezium",
    "postgres",
    "spark",
    "password",
    "passw0rd",
    "secret",
    "changeit",
    "example",
    "placeholder",
    "test",
    "xxx",
    "your-secret-here",
    "change-me-to-a-long-random-string",
    # The Fernet key an earlier .env.example carried: public, so worthless as a key.
    "tnnw3f0zfknvsp0ajhv8iqn2dt7o0ac8dvj3oypucki=",
}
# Used inside postgresql:// URLs (Airflow's connections), where '@', ':' or '/' break parsing,
# or inside a JAAS line's quotes, a users file and a Java properties file (the CDCPIPE_*
# logins), where a quote, a backslash, a colon or a comma would change what is read.
URL_SAFE = {
    "AIRFLOW_DB_PASSWORD",
    "CDCPIPE_DB_PASSWORD",
    "CDCPIPE_KAFKA_PASSWORD",
    "CDCPIPE_REGISTRY_PASSWORD",
    "CDCPIPE_CONNECT_PASSWORD",
    "CDCPIPE_CONTROL_CENTER_PASSWORD",
}
_URL_SAFE_RE = re.compile(r"^[A-Za-z0-9._~-]+$")
_B64URL_RE = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")


def problems(env: dict[str, str]) -> list[str]:
    """What is wrong with these values, one sentence each; empty when the stack may start."""
    found = []
    for name in SECRETS:
        value = env.get(name, "")
        lowered = value.strip().lower()
        if not value:
            found.append(f"{name} is not set")
        elif lowered in PLACEHOLDERS or lowered.startswith(("change-me", "changeme", "change_me")):
            found.append(f"{name} is a placeholder ({value!r})")
        elif len(value) < MIN_LENGTH:
            found.append(f"{name} is shorter than {MIN_LENGTH} characters")
        elif name in URL_SAFE and not _URL_SAFE_RE.match(value):
            found.append(f"{name} may only hold A-Z a-z 0-9 . _ ~ - (it goes into a connection URL or a login file)")
    fernet = env.get("AIRFLOW_FERNET_KEY", "")
    if fernet and not any(p.startswith("AIRFLOW_FERNET_KEY") for p in found):
        try:
            ok = _B64URL_RE.match(fernet) and len(base64.urlsafe_b64decode(fernet)) == 32
        except ValueError:
            ok = False
        if not ok:
            found.append("AIRFLOW_FERNET_KEY is not url-safe base64 of 32 bytes")
    cluster_id = env.get("KAFKA_CLUSTER_ID", "")
    if not re.match(r"^[A-Za-z0-9_-]{22}$", cluster_id):
        found.append("KAFKA_CLUSTER_ID is not 22 characters of base64url (16 bytes)")
    return found


def read_env_file(path: Path) -> dict[str, str]:
    """NAME=value lines as docker compose reads them (comments and blanks skipped, quotes stripped)."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name.strip()] = value
    return values


def render(template: str) -> str:
    """.env.example with every generated variable given a fresh value; comments and the rest kept."""
    lines, seen = [], set()
    for line in template.splitlines():
        name = line.partition("=")[0].strip()
        if "=" in line and not line.lstrip().startswith("#") and name in GENERATED:
            line = f"{name}={GENERATED[name]()}"
            seen.add(name)
        lines.append(line)
    for name in GENERATED:
        if name not in seen:
            lines.append(f"{name}={GENERATED[name]()}")
    return "\n".join(lines) + "\n"


def missing_lines(existing: dict[str, str]) -> list[str]:
    """NAME=fresh value for each generated variable ``existing`` lacks or leaves empty: what a
    newer docker-compose.yml asks of an .env written by an older version."""
    return [f"{name}={make()}" for name, make in GENERATED.items() if not existing.get(name)]


def add_missing(path: Path) -> list[str]:
    """Append :func:`missing_lines` to ``path`` (kept 0600); the names added. The values already
    there stay: replacing them would lock the stack out of its own volumes (PostgreSQL's
    superuser, Airflow's Fernet key, Cassandra's admin role)."""
    lines = missing_lines(read_env_file(path))
    text = path.read_text()
    if lines:
        added = ("" if text.endswith("\n") or not text else "\n") + "# added by docker-env.py --add-missing\n" + "\n".join(lines) + "\n"
        write(path, text + added, force=True)
    return [line.partition("=")[0] for line in lines]


def write(path: Path, text: str, force: bool) -> None:
    if not force:
        # O_EXCL: refuse atomically if .env appeared meanwhile; 0600 from the first byte.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    else:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".env.")  # mkstemp creates 0600
    with os.fdopen(fd, "w") as out:
        out.write(text)
    if force:
        os.replace(tmp, path)
    os.chmod(path, 0o600)  # an umask can only remove bits, but be explicit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=REPO / ".env", help="where to write (default: .env)")
    parser.add_argument("--template", type=Path, default=EXAMPLE, help="default: .env.example")
    parser.add_argument("--force", action="store_true", help="replace an existing file")
    parser.add_argument(
        "--add-missing", action="store_true", help="keep an existing file and append fresh values for what it lacks (after an upgrade)"
    )
    parser.add_argument("--check", action="store_true", help="check values instead of writing them (from --env-file, else the environment)")
    parser.add_argument("--env-file", type=Path, help="with --check: read values from this file")
    args = parser.parse_args(argv)

    if args.check:
        env = read_env_file(args.env_file) if args.env_file else dict(os.environ)
        found = problems(env)
        if found:
            print("preflight: refusing to start the stack:", file=sys.stderr)
            for problem in found:
                print(f"  - {problem}", file=sys.stderr)
            print(
                "write fresh secrets with `python3 scripts/docker-env.py` (--add-missing adds what an existing .env lacks; "
                "--force replaces .env), then `docker compose up -d` again",
                file=sys.stderr,
            )
            return 1
        print("preflight: secrets look usable")
        return 0

    if args.add_missing and args.output.exists():
        added = add_missing(args.output)
        print(f"{args.output}: added {', '.join(added)}" if added else f"{args.output} lacks nothing")
        return 0
    if args.output.exists() and not args.force:
        lacking = [line.partition("=")[0] for line in missing_lines(read_env_file(args.output))]
        print(
            f"{args.output} exists; not overwriting it (--force replaces it, and every secret in it)"
            + (f"; it lacks {', '.join(lacking)}: --add-missing appends them and keeps the rest" if lacking else ""),
            file=sys.stderr,
        )
        return 1
    try:
        write(args.output, render(args.template.read_text()), args.force)
    except FileExistsError:
        print(f"{args.output} exists; not overwriting it", file=sys.stderr)
        return 1
    print(f"wrote {args.output} (mode 0600) with fresh secrets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
