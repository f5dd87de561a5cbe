"""The exception tree and the CLI's exit codes (no services)."""

from __future__ import annotations

import inspect
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from cdcpipe import cli, errors
from cdcpipe.clients.airflow import AirflowClient
from cdcpipe.commands import connector as connector_cmd
from cdcpipe.commands import stack as stack_cmd


def _error_classes() -> list[type[errors.CdcpipeError]]:
    return [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.CdcpipeError)]


def test_every_error_class_is_drawn_in_the_tree_with_a_listed_exit_code():
    tree = errors.__doc__
    for cls in _error_classes():
        assert f" {cls.__name__} " in tree, f"{cls.__name__} is missing from the tree in errors.py's docstring"
        if cls is not errors.StepFailed:  # exits with its cause's code
            assert cls.exit_code in errors.EXIT_CODES, cls


def test_the_cli_help_lists_every_exit_code(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for code, meaning in errors.EXIT_CODES.items():
        assert f"{code:>3}  {meaning}" in out


def test_record_faults_and_system_faults_are_apart():
    assert issubclass(errors.BadValue, errors.RecordError) and issubclass(errors.BadValue, ValueError)
    assert issubclass(errors.DecodeError, errors.RecordError)
    for system in (errors.TableUnusable, errors.RegistryMisconfigured, errors.ServiceUnavailable, errors.HttpError):
        assert not issubclass(system, errors.RecordError), system


def test_http_errors_carry_their_status():
    missing = errors.HttpError.of("Airflow", "GET", "http://x/api/v2/dags/d", 404, "not found")
    assert isinstance(missing, errors.NotFound) and missing.status == 404
    refused = errors.HttpError.of("Kafka Connect", "PUT", "http://x/connectors/c/config", 409, "rebalance")
    assert type(refused) is errors.HttpError and refused.status == 409
    assert "Kafka Connect PUT http://x/connectors/c/config answered 409: rebalance" == str(refused)


def test_a_malformed_connector_file_breaks_only_what_reads_it(tmp_path, monkeypatch, capsys):
    broken = tmp_path / "users-cdc.json"
    broken.write_text('{"name": "users-cdc", "config": ')
    monkeypatch.setattr(connector_cmd, "DEFAULT_FILE", broken)
    monkeypatch.setenv("CDCPIPE_HOME", str(tmp_path / "home"))
    # Building the parser (every command, `down` included) does not read the file ...
    assert cli.build_parser().parse_args(["down"]).func is stack_cmd.cmd_down
    # ... the command that needs the connector's name says which file is wrong, exit 2.
    assert cli.main(["connector", "--connect-url", "http://127.0.0.1:9", "status"]) == 2
    err = capsys.readouterr().err
    assert f"{broken}: not valid JSON" in err


def test_bad_settings_are_configuration_errors(monkeypatch, capsys):
    monkeypatch.setenv("CDCPIPE_PORT_KAFKA", "ninety")
    assert cli.main(["status"]) == 2
    assert "CDCPIPE_PORT_KAFKA='ninety' is not a port number" in capsys.readouterr().err


class _Airflow(BaseHTTPRequestHandler):
    """Answers like Airflow's API while the dag-processor has not parsed a DAG yet: 404 twice."""

    calls = 0

    def log_message(self, *_args):
        pass

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # /auth/token
        self.rfile.read(int(self.headers["Content-Length"]))
        self._answer(201, b'{"access_token": "t"}')

    def do_GET(self):
        type(self).calls += 1
        if type(self).calls <= 2:
            self._answer(404, b'{"detail": "The DAG with dag_id: `d` was not found"}')
        else:
            self._answer(200, b'{"dag_id": "d"}')


def test_wait_for_dag_waits_on_404_by_status(monkeypatch):
    monkeypatch.setattr("cdcpipe.clients.airflow.time.sleep", lambda _s: None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = HTTPServer(("127.0.0.1", port), _Airflow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert AirflowClient(f"http://127.0.0.1:{port}", "admin", "pw").wait_for_dag("d") == {"dag_id": "d"}
        assert _Airflow.calls == 3
    finally:
        server.shutdown()
