"""The browser console of the local runtime: ``python -m cdcpipe.console`` or ``cdcpipe console``.

Pages: overview (services, pipeline health, consumer lag over time), topics (offsets,
settings, messages/s, a live tail of decoded change events), schemas (subjects, versions, a
diff), connector (state, trace, pause/resume/restart), Spark job (batches, offsets, dead
letters) and Cassandra (row count, one user with write times). See :mod:`.app` and
:mod:`.monitor`.
"""

from __future__ import annotations


def serve(port: int | None = None) -> None:
    """Run the console in the foreground on 127.0.0.1 until interrupted."""
    import uvicorn

    from .. import settings
    from ..runtime import credentials
    from .app import create_app

    conf = settings.load()
    port = port or conf.port("console")
    app = create_app(conf, credentials.load(conf)["console"], port=port)
    app.state.monitor.start()
    print(f"cdcpipe console on http://{conf.host}:{port} (login: admin, password from 'cdcpipe secret console')", flush=True)
    uvicorn.run(app, host=conf.host, port=port, log_level="warning", access_log=False, log_config=None)
