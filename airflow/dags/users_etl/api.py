"""Fetching users from the randomuser.me API with timeouts and retries."""

from __future__ import annotations

import os
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

DEFAULT_API_URL = "https://randomuser.me/api/"
TIMEOUT = (5, 60)  # connect, read (5000 users are a few MB)


class ApiError(RuntimeError):
    """The API answered, but not with users."""


def default_api_url() -> str:
    return os.environ.get("RANDOMUSER_URL") or DEFAULT_API_URL


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
    api_url: str, results: int, seed: str | None = None, nat: str | None = None, page: int = 1, http: requests.Session | None = None
) -> dict[str, Any]:
    """The API's JSON answer for one page; ApiError for its error document or a bad answer."""
    params: dict[str, Any] = {"results": results, "page": page}
    if seed:
        params["seed"] = seed
    if nat:
        params["nat"] = nat
    response = (http or session()).get(api_url, params=params, timeout=TIMEOUT)
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
