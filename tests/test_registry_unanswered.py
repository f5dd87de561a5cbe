"""A registry request left unanswered is asked again (no services: a socket server that
never answers its first request, as Apicurio 3.3.3 sometimes does; see avro_reader's
docstring). The same on the real registry is in test_record_faults.py."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from cdcpipe.errors import DecodeError, ServiceUnavailable
from cdcpipe.pipeline.avro_reader import RegistryMisconfigured, SchemaCache, decode

NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nContent-Type: application/json\r\n\r\n"


class SilentFirst:
    """Accepts connections on 127.0.0.1; leaves the first ``silent`` requests unanswered
    (their connections held open) and answers every later one 404 with an empty body."""

    def __init__(self, silent: int):
        self.silent = silent
        self.requests = 0
        self._held: list[socket.socket] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}/apis/ccompat/v6"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            conn.recv(65536)
            self.requests += 1
            if self.requests <= self.silent:
                self._held.append(conn)
            else:
                conn.sendall(NOT_FOUND)
                conn.close()

    def requests_after(self, at_least: int, within: float = 5.0) -> int:
        """The request count once it reaches ``at_least`` (or after ``within`` s): the server
        thread counts a request after the client sent it, so it may trail the client."""
        deadline = time.monotonic() + within
        while self.requests < at_least and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.requests

    def close(self) -> None:
        self._server.close()
        for conn in self._held:
            conn.close()


@pytest.fixture
def server(request) -> Iterator[SilentFirst]:
    s = SilentFirst(request.param)
    yield s
    s.close()


def framed(schema_id: int) -> bytes:
    return b"\x00" + struct.pack(">I", schema_id) + b"\x02"


@pytest.mark.parametrize("server", [2], indirect=True)
def test_an_unanswered_request_is_asked_again_until_it_is_answered(server):
    with pytest.raises(RegistryMisconfigured, match="is the URL the Confluent-compatible API"):
        decode(framed(987654), SchemaCache(server.url, timeout=1.5, attempts=3))
    assert server.requests_after(3) == 3


@pytest.mark.parametrize("server", [3], indirect=True)
def test_a_registry_that_never_answers_is_the_systems_fault_after_the_last_attempt(server):
    with pytest.raises(ServiceUnavailable, match=r"did not answer fetching id 987654 \(3 attempts of 1 s\)") as caught:
        decode(framed(987654), SchemaCache(server.url, timeout=1.0, attempts=3))
    assert not isinstance(caught.value, (RegistryMisconfigured, DecodeError))
    assert server.requests_after(3) == 3


def test_a_refused_connection_is_not_asked_again():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    with pytest.raises(ServiceUnavailable, match="unreachable fetching id 987654"):
        decode(framed(987654), SchemaCache(f"http://127.0.0.1:{port}", timeout=5, attempts=3))


def test_attempts_must_be_positive():
    with pytest.raises(ValueError, match="attempts must be at least 1, not 0"):
        SchemaCache("http://127.0.0.1:1", attempts=0)
