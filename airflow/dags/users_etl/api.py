"""Fetching users from the randomuser.me API with timeouts and retries.

The public API wants no key. An API that does (the local runtime's stand-in) is described by
the Airflow connection ``randomuser_api``: its host is the API's origin, its password the key.
The key is sent, as ``Authorization: Bearer``, only to that origin, so a run pointed at
another ``api_url`` never hands it to a third party; Airflow masks it in task logs, as it does
every connection's password.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

DEFAULT_API_URL = "https://randomuser.me/api/"
#: The Airflow connection that holds an API's origin (host) and key (password), if any.
CONN_ID = "randomuser_api"
TIMEOUT = (5, 60)  # connect, read (5000 users are a few MB)


class ApiError(RuntimeError):
    """The API answered, but not with users."""


def default_api_url() -> str:
    return os.environ.get("RANDOMUSER_URL") or DEFAULT_API_URL


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def api_key_for(api_url: str) -> str | None:
    """The key of connection ``randomuser_api`` when ``api_url`` is on its origin; None when
    there is no such connection (the public API) or the URL is elsewhere."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(CONN_ID)
    except AirflowNotFoundException:
        return None
    if not conn.host or not conn.password:
        return None
    host = conn.host if "://" in conn.host else f"{conn.schema or 'http'}://{conn.host}"
    origin = host if conn.port is None or urlsplit(host).port is not None else f"{host}:{conn.port}"
    return conn.password if _origin(origin) == _origin(api_url) else None


def session(retries: int = 4, backoff: float = 0.5) -> requests.Session:
    """Retries with exponential backoff on connection errors, 429 and 5xx."""
    retry = Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        backoff_factor=backoff,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=frozenset({"GET"}),
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    s = requests.Session()
    s.mount("http://", HTTPAdapter(max_retries=retry))
    s.mount("https://", HTTPAdapter(max_retries=retry))
    return s


def fetch_users(
    api_url: str,
    results: int,
    seed: str | None = None,
    nat: str | None = None,
    page: int = 1,
    http: requests.Session | None = None,
    api_key: str | None = None,
) -> dict[str, Any]:
    """The API's JSON answer for one page; ApiError for its error document or a bad answer.
    ``api_key`` goes in an ``Authorization: Bearer`` header (see :func:`api_key_for`)."""
    params: dict[str, Any] = {"results": results, "page": page}
    if seed:
        params["seed"] = seed
    if nat:
        params["nat"] = nat
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    response = (http or session()).get(api_url, params=params, headers=headers, timeout=TIMEOUT)
    if response.status_code != 200:
        raise ApiError(f"{api_url} answered HTTP {response.status_code} after retries: {response.text[:300]}")
    try:
        body = response.json()
    except ValueError:
        raise ApiError(f"{api_url} answered non-JSON: {response.text[:300]!r}") from None
    if isinstance(body, dict) and "error" in body:
        raise ApiError(f"{api_url} answered with an error: {body['error']}")
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise ApiError(f"{api_url} answered without a results list")
    return body
