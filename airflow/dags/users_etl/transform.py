"""Validation of randomuser.me users and their mapping to public.users rows.

A user with a missing or ill-typed field fails the whole batch with a message naming the
user (its position and login.uuid) and the field, so nothing of that batch is written.
Text is kept exactly as the API sent it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

#: public.users columns the DAG writes (created_at/updated_at belong to the database).
COLUMNS = (
    "id",
    "username",
    "email",
    "title",
    "first_name",
    "last_name",
    "gender",
    "dob",
    "registered_at",
    "phone",
    "cell",
    "street_number",
    "street_name",
    "city",
    "state",
    "country",
    "postcode",
    "latitude",
    "longitude",
    "timezone_offset",
    "timezone_description",
    "nationality",
    "picture_large",
    "picture_medium",
    "picture_thumbnail",
)


class ValidationError(ValueError):
    """A user the API sent does not have the shape the table needs."""


def _get(user: dict[str, Any], path: str, where: str) -> Any:
    node: Any = user
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ValidationError(f"{where}: field '{path}' is missing")
        node = node[part]
    return node


def _text(user, path, where, nullable=False) -> str | None:
    value = _get(user, path, where)
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{where}: field '{path}' must be text, got {type(value).__name__} {value!r}")
    return value


def _timestamp(user, path, where) -> str:
    value = _text(user, path, where)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(f"{where}: field '{path}' is not an ISO 8601 timestamp: {value!r}") from None
    if parsed.tzinfo is None:
        raise ValidationError(f"{where}: field '{path}' has no time zone: {value!r}")
    return value


def _coordinate(user, path, where, limit: float) -> float:
    value = _get(user, path, where)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValidationError(f"{where}: field '{path}' must be a number or numeric text, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValidationError(f"{where}: field '{path}' is not numeric: {value!r}") from None
    if not -limit <= number <= limit:
        raise ValidationError(f"{where}: field '{path}' = {number} is outside ±{limit}")
    return number


def to_row(user: dict[str, Any], index: int) -> dict[str, Any]:
    """One API user -> one public.users row (JSON-serialisable)."""
    if not isinstance(user, dict):
        raise ValidationError(f"user #{index}: expected an object, got {type(user).__name__}")
    login_uuid = user.get("login", {}).get("uuid") if isinstance(user.get("login"), dict) else None
    where = f"user #{index} ({login_uuid or 'no login.uuid'})"
    raw_id = _text(user, "login.uuid", where)
    try:
        user_id = str(uuid.UUID(raw_id))
    except ValueError:
        raise ValidationError(f"{where}: field 'login.uuid' is not a UUID: {raw_id!r}") from None
    number = _get(user, "location.street.number", where)
    if isinstance(number, bool) or not isinstance(number, int) or not -(2**31) <= number < 2**31:
        raise ValidationError(f"{where}: field 'location.street.number' must be a 32-bit integer, got {number!r}")
    postcode = _get(user, "location.postcode", where)
    if isinstance(postcode, bool) or not isinstance(postcode, (str, int)):
        raise ValidationError(f"{where}: field 'location.postcode' must be text or an integer, got {postcode!r}")
    return {
        "id": user_id,
        "username": _text(user, "login.username", where),
        "email": _text(user, "email", where),
        "title": _text(user, "name.title", where),
        "first_name": _text(user, "name.first", where),
        "last_name": _text(user, "name.last", where),
        "gender": _text(user, "gender", where),
        "dob": _timestamp(user, "dob.date", where),
        "registered_at": _timestamp(user, "registered.date", where),
        "phone": _text(user, "phone", where),
        "cell": _text(user, "cell", where),
        "street_number": number,
        "street_name": _text(user, "location.street.name", where),
        "city": _text(user, "location.city", where),
        "state": _text(user, "location.state", where),
        "country": _text(user, "location.country", where),
        "postcode": str(postcode),
        "latitude": _coordinate(user, "location.coordinates.latitude", where, 90.0),
        "longitude": _coordinate(user, "location.coordinates.longitude", where, 180.0),
        "timezone_offset": _text(user, "location.timezone.offset", where),
        "timezone_description": _text(user, "location.timezone.description", where),
        "nationality": _text(user, "nat", where),
        "picture_large": _text(user, "picture.large", where),
        "picture_medium": _text(user, "picture.medium", where),
        "picture_thumbnail": _text(user, "picture.thumbnail", where),
    }


def to_rows(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Every user of an API answer as rows; the first invalid user fails the batch."""
    users = payload.get("results")
    if not isinstance(users, list):
        raise ValidationError("the answer has no 'results' list")
    rows = [to_row(user, i) for i, user in enumerate(users)]
    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        if row["id"] in seen:
            raise ValidationError(f"user #{i} ({row['id']}): login.uuid repeats user #{seen[row['id']]}")
        seen[row["id"]] = i
    return rows
