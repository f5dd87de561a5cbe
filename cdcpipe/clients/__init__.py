"""Clients of the services' own APIs (Connect's REST API, Airflow's REST API, Kafka topics).

They know nothing of the local runtime: they take URLs, logins and client configurations.
The runtime's services hand out clients logged in for it (``Connect.client()``,
``Airflow.client()``, ``Kafka.client_config()``).
"""
