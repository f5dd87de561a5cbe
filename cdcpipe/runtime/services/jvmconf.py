"""Small writers for the configuration files the JVM services read."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def properties(values: Mapping[str, Any]) -> str:
    """A Java .properties file (values as str; paths and numbers welcome)."""
    lines = ["# Written by cdcpipe on every 'up'; edit the code, not this file."]
    for key, value in values.items():
        text = str(value).replace("\\", "\\\\")
        lines.append(f"{key}={text}")
    return "\n".join(lines) + "\n"


def log4j2_config(level: str = "INFO") -> str:
    """log4j2: everything to stdout, which the supervisor writes to the service's log file."""
    return (
        "status = warn\n"
        "appender.out.type = Console\n"
        "appender.out.name = out\n"
        "appender.out.target = SYSTEM_OUT\n"
        "appender.out.layout.type = PatternLayout\n"
        "appender.out.layout.pattern = [%d{ISO8601}] %p %m (%c{1})%n\n"
        f"rootLogger.level = {level}\n"
        "rootLogger.appenderRef.out.ref = out\n"
        # Quieter defaults for the chattiest loggers.
        "logger.reflections.name = org.reflections\n"
        "logger.reflections.level = error\n"
        "logger.jetty.name = org.eclipse.jetty\n"
        "logger.jetty.level = warn\n"
    )
