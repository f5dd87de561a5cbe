"""The benchmarks: the job alone (:mod:`.job`), N changes from PostgreSQL (:mod:`.end_to_end`),
latency (:mod:`.latency`), the soak (:mod:`.soak`), with the change mix and the sink's ceiling
they share. ``cdcpipe bench`` runs them; figures go in docs/benchmarks.md.
"""
