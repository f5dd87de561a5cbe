"""Settings come from the environment, with clear errors for bad values."""

import pytest

from cdcpipe import settings
from cdcpipe.errors import ConfigError


def test_defaults_and_overrides(tmp_path):
    conf = settings.load({"CDCPIPE_HOME": str(tmp_path / "state"), "CDCPIPE_PORT_KAFKA": "19092"})
    assert conf.home == tmp_path / "state"
    assert conf.port("kafka") == 19092
    assert conf.port("postgres") == settings.DEFAULT_PORTS["postgres"]
    assert conf.log_file("kafka") == tmp_path / "state" / "logs" / "kafka.log"


@pytest.mark.parametrize("raw, words", [("abc", "not a port number"), ("70000", "outside 1-65535")])
def test_bad_port_is_named(raw, words):
    with pytest.raises(ConfigError, match=f"CDCPIPE_PORT_CONNECT={raw}.*{words}|CDCPIPE_PORT_CONNECT.*{words}"):
        settings.load({"CDCPIPE_PORT_CONNECT": raw})
