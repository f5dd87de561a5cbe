#!/usr/bin/env python3
"""Create or update a Kafka Connect connector from a {"name": ..., "config": {...}} file.

    python3 scripts/register-connector.py connectors/users-cdc.json http://localhost:8083

PUT /connectors/<name>/config is idempotent: 201 when it creates the connector, 200 when it
updates it, so running this on every `docker compose up` also applies edits to the file
(a POST would answer 409 for an existing connector and silently keep its old config).
The name comes from the file; only its "config" object is sent. Anything but 200/201 fails
loudly with Connect's answer; a 409 (Connect answers that while its worker group
rebalances, e.g. just after start-up), a 5xx and a connection error are retried a few
times first. A 400 (the config does not validate) fails at once.

With CDCPIPE_CONNECT_PASSWORD set (the Docker stack sets it), every request carries the REST
API's login (HTTP Basic, user CDCPIPE_CONNECT_USER, default cdcpipe) from the start: Connect
answers 401 without a challenge, so urllib's auth handlers would never send it. The password
stays in the environment, never on a command line or in the output.
Standard library only: the compose one-shot runs it in a plain python image (no jq there).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

ATTEMPTS = int(os.environ.get("REGISTER_ATTEMPTS", "10"))
DELAY = float(os.environ.get("REGISTER_RETRY_DELAY", "3"))


def login_header() -> dict[str, str]:
    """The Authorization header for the REST API's login, or none without a password."""
    password = os.environ.get("CDCPIPE_CONNECT_PASSWORD")
    if not password:
        return {}
    user = os.environ.get("CDCPIPE_CONNECT_USER", "cdcpipe")
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    path, connect_url = argv
    with open(path) as f:
        connector = json.load(f)
    name, config = connector["name"], connector["config"]
    if not isinstance(config, dict) or not name:
        print(f'{path}: expected {{"name": ..., "config": {{...}}}}', file=sys.stderr)
        return 1
    url = f"{connect_url.rstrip('/')}/connectors/{urllib.parse.quote(name, safe='')}/config"
    body = json.dumps(config).encode()
    for attempt in range(1, ATTEMPTS + 1):
        request = urllib.request.Request(
            url, data=body, method="PUT", headers={"Content-Type": "application/json", "Accept": "application/json", **login_header()}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, answer = response.status, response.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            status, answer = e.code, e.read().decode(errors="replace")
        except (urllib.error.URLError, OSError) as e:
            status, answer = None, str(e)
        if status in (200, 201):
            print(f"PUT {url}: {status} ({'created' if status == 201 else 'updated'})")
            print(answer)
            return 0
        retry = status is None or status == 409 or status >= 500
        print(f"PUT {url}: {status or 'no answer'} (attempt {attempt}/{ATTEMPTS}): {answer}", file=sys.stderr)
        if not retry or attempt == ATTEMPTS:
            break
        time.sleep(DELAY)
    print(f"connector {name!r} was NOT registered", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
