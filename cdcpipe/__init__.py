"""cdcpipe: PostgreSQL -> Debezium -> Kafka (Avro) -> Spark -> Cassandra, and its local runtime."""

__version__ = "0.1.0"
