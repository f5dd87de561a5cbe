"""Spark's Python worker daemon (``pyspark.daemon``), importing from installed packages.

Spark puts ``$SPARK_HOME/python/lib/pyspark.zip``, py4j's zip and the spark-core jar ahead
of site-packages on the executors' ``sys.path``. Before every task the worker calls
``importlib.invalidate_caches()``, and on Python 3.11 each zip importer then re-reads its
whole archive directory: profiled with py-spy on ``cdcpipe bench``, 12% of the workers' CPU.
Where pyspark and py4j are installed as packages (the local runtime's virtualenv), this
daemon drops the archives from ``sys.path`` first; where they only exist as the archives (the
official Spark image), it changes nothing. The job selects it with
``spark.python.daemon.module=cdcpipe.pipeline.spark_daemon``.
"""

from __future__ import annotations

import sys
from importlib.machinery import PathFinder

ARCHIVES = (".zip", ".jar", ".egg")


def installed_path(path: list[str]) -> list[str] | None:
    """``path`` without archives, if pyspark and py4j can still be imported from it."""
    kept = [entry for entry in path if not entry.endswith(ARCHIVES)]
    if len(kept) == len(path):
        return None
    if all(PathFinder.find_spec(name, kept) is not None for name in ("pyspark", "py4j")):
        return kept
    return None


def main() -> None:
    kept = installed_path(sys.path)
    if kept is not None:
        dropped = tuple(entry for entry in sys.path if entry not in kept)
        sys.path[:] = kept
        for entry in list(sys.path_importer_cache):
            if entry.startswith(dropped):
                del sys.path_importer_cache[entry]
    from pyspark.daemon import manager

    manager()


if __name__ == "__main__":
    main()
