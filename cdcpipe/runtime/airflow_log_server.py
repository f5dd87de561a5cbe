"""Airflow's worker log server, bound to 127.0.0.1 (``python -m cdcpipe.runtime.airflow_log_server``).

The scheduler of Airflow 3.3 starts its own log server (``airflow.utils.serve_logs``) for the
LocalExecutor's task logs, on ``[logging] worker_log_server_port`` and on every interface:
``uvicorn.run(..., host="")``, with no setting for the address. The local runtime runs the
scheduler with ``--skip-serve-logs`` and this process instead: the same ASGI app (requests
need a JWT signed with the api secret key), on the runtime's host and the port in
``AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT``.
"""

from __future__ import annotations

import os


def main() -> None:
    import uvicorn

    from cdcpipe.settings import HOST

    uvicorn.run(
        "airflow.utils.serve_logs.log_server:get_app",
        host=HOST,
        port=int(os.environ["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"]),
        log_level="warning",
        log_config=None,
        access_log=False,
    )


def loopback_hostname() -> str:
    """Airflow's ``[core] hostname_callable``: the address the api-server fetches logs from."""
    from cdcpipe.settings import HOST

    return HOST


if __name__ == "__main__":
    main()
