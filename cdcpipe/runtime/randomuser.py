"""A local stand-in for the randomuser.me API (https://randomuser.me/documentation), v1.4.

It answers ``GET /api/`` (and ``/api/1.4/``) with the real response shapes: ``results`` and
``info``; postcodes as integers or strings depending on nationality; coordinates as strings;
``id.value`` sometimes null; ``{"error": ...}`` for bad requests. Parameters: ``results``
(1-5000), ``seed``, ``page``, ``nat``, ``gender``, ``inc``/``exc``, ``noinfo``, ``format``
(json only). The same seed and page give the same users.

The real API wants no key; this one can (``make_server(api_key=...)``; ``cdcpipe randomuser
serve`` always does): every request without ``Authorization: Bearer <key>`` is answered 401,
so no other local account can read its users or queue faults. The ingest DAGs send the key
from ``RANDOMUSER_API_KEY`` to ``RANDOMUSER_API_KEY_ORIGIN`` only (``users_etl/api.py``).

For tests, ``POST /__faults`` (not part of the real API) queues failures for the next
requests: ``{"status": [500, 503]}`` answers those statuses first; ``{"error": 1}`` answers
the API's error document once; ``{"drop_field": "email"}`` removes a field from one user of
the next answer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import threading
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

VERSION = "1.4"
MAX_RESULTS = 5000
ERROR_MESSAGE = "Uh oh, something has gone wrong. Please tweet us @randomapi about the issue. Thank you."
FIELDS = ("gender", "name", "location", "email", "login", "registered", "dob", "phone", "cell", "id", "picture", "nat")

# nat -> (first names by gender, last names, cities/states, country, postcode style, id name, phone pattern)
NATS: dict[str, dict[str, Any]] = {
    "AU": {
        "male": ["Jack", "Noah", "Liam"],
        "female": ["Chloe", "Mia", "Zoe"],
        "last": ["Smith", "Wilson", "Taylor"],
        "places": [("Mackay", "New South Wales"), ("Darwin", "Northern Territory")],
        "country": "Australia",
        "postcode": "int4",
        "id": "TFN",
        "phone": "0#-####-####",
    },
    "BR": {
        "male": ["João", "Otávio", "Caetano"],
        "female": ["Lívia", "Luíza", "Ângela"],
        "last": ["Araújo", "Gonçalves", "Peixoto"],
        "places": [("São Luís", "Maranhão"), ("Itaboraí", "Goiás")],
        "country": "Brazil",
        "postcode": "int5",
        "id": "CPF",
        "phone": "(##) ####-####",
    },
    "CA": {
        "male": ["Liam", "Logan", "Félix"],
        "female": ["Léa", "Charlotte", "Maëlle"],
        "last": ["Roy", "Gagnon", "Côté"],
        "places": [("Trout Lake", "Québec"), ("Delta", "British Columbia")],
        "country": "Canada",
        "postcode": "ca",
        "id": "SIN",
        "phone": "Q##-###-####",
    },
    "DE": {
        "male": ["Jürgen", "Lutz", "Bernd"],
        "female": ["Jördis", "Ilse", "Käthe"],
        "last": ["Müller", "Schäfer", "Groß"],
        "places": [("Görlitz", "Sachsen"), ("Köln", "Nordrhein-Westfalen")],
        "country": "Germany",
        "postcode": "int5",
        "id": "SVNR",
        "phone": "0###-#######",
    },
    "FR": {
        "male": ["Noé", "Élouan", "Maël"],
        "female": ["Anaïs", "Océane", "Zoé"],
        "last": ["Lefèvre", "Mercier", "D'Amour"],
        "places": [("Saint-Étienne", "Loire"), ("Orléans", "Loiret")],
        "country": "France",
        "postcode": "int5",
        "id": "INSEE",
        "phone": "0#-##-##-##-##",
    },
    "GB": {
        "male": ["Oliver", "Harry", "Dylan"],
        "female": ["Amelia", "Isla", "Ella"],
        "last": ["O'Connor", "Jones", "Evans"],
        "places": [("Stoke-on-Trent", "Staffordshire"), ("Wells", "Somerset")],
        "country": "United Kingdom",
        "postcode": "gb",
        "id": "NINO",
        "phone": "0####-######",
    },
    "IE": {
        "male": ["Seán", "Dónal", "Cian"],
        "female": ["Saoirse", "Aoife", "Niamh"],
        "last": ["Ó Briain", "Murphy", "O'Sullivan"],
        "places": [("Kilcoole", "Waterford"), ("Tralee", "Kerry")],
        "country": "Ireland",
        "postcode": "ie",
        "id": "PPS",
        "phone": "0#-###-####",
    },
    "IN": {
        "male": ["Arjun", "Vihaan", "Ishaan"],
        "female": ["Ananya", "Diya", "Saanvi"],
        "last": ["Sharma", "Iyer", "Reddy"],
        "places": [("Jalandhar", "Punjab"), ("Nashik", "Maharashtra")],
        "country": "India",
        "postcode": "int6",
        "id": "UIDAI",
        "phone": "#########",
    },
    "NL": {
        "male": ["Daan", "Sem", "Bram"],
        "female": ["Tess", "Fleur", "Noë"],
        "last": ["de Vries", "van den Berg", "Bakker"],
        "places": [("'s-Hertogenbosch", "Noord-Brabant"), ("IJmuiden", "Noord-Holland")],
        "country": "Netherlands",
        "postcode": "nl",
        "id": "BSN",
        "phone": "(0###) ######",
    },
    "US": {
        "male": ["Brandon", "Wyatt", "Ray"],
        "female": ["Jessica", "Kylie", "Dolores"],
        "last": ["Reyes", "Hughes", "Lawson"],
        "places": [("Fort Worth", "Idaho"), ("Toledo", "Arkansas")],
        "country": "United States",
        "postcode": "int5",
        "id": "SSN",
        "phone": "(###) ###-####",
    },
    "UA": {
        "male": ["Bogdan", "Yaroslav", "Ostap"],
        "female": ["Oksana", "Zlata", "Yevgeniya"],
        "last": ["Kravchenko", "Bondarenko", "Shevchuk"],
        "places": [("Vinnicja", "Vinnicka"), ("Lviv", "Lvivska")],
        "country": "Ukraine",
        "postcode": "int5",
        "id": "",
        "phone": "(0##) ###-####",
    },
}
STREETS = ["New Road", "Rue de L'Abbé-Grégoire", "Königsweg", "Main St", "O'Connell Street", "Avenida Brasil"]
TITLES = {"male": ["Mr"], "female": ["Ms", "Mrs", "Miss"]}
TIMEZONES = [
    ("-12:00", "Eniwetok, Kwajalein"),
    ("-5:00", "Eastern Time (US & Canada), Bogota, Lima"),
    ("0:00", "Western Europe Time, London, Lisbon, Casablanca"),
    ("+1:00", "Brussels, Copenhagen, Madrid, Paris"),
    ("+5:30", "Bombay, Calcutta, Madras, New Delhi"),
    ("+9:30", "Adelaide, Darwin"),
]


class BadRequest(ValueError):
    pass


def _digits(rng: random.Random, pattern: str) -> str:
    return "".join(str(rng.randint(0, 9)) if c == "#" else (rng.choice("ABCEGHJKLMNPRSTVXY") if c == "Q" else c) for c in pattern)


def _postcode(rng: random.Random, style: str) -> int | str:
    if style.startswith("int"):
        width = int(style[3:])
        return rng.randint(10 ** (width - 1), 10**width - 1)
    letter = lambda: rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ")  # noqa: E731
    if style == "gb":
        return f"{letter()}{letter()}{rng.randint(1, 9)} {rng.randint(1, 9)}{letter()}{letter()}"
    if style == "ca":
        return f"{letter()}{rng.randint(0, 9)}{letter()} {rng.randint(0, 9)}{letter()}{rng.randint(0, 9)}"
    if style == "ie":
        return f"{letter()}{rng.randint(10, 99)} {letter()}{rng.randint(100, 999)}"
    if style == "nl":
        return f"{rng.randint(1000, 9999)} {letter()}{letter()}"
    raise AssertionError(style)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def make_user(rng: random.Random, nat: str, gender: str | None, now: datetime) -> dict[str, Any]:
    spec = NATS[nat]
    gender = gender or rng.choice(["male", "female"])
    first, last = rng.choice(spec[gender]), rng.choice(spec["last"])
    city, state = rng.choice(spec["places"])
    offset, description = rng.choice(TIMEZONES)
    dob = now - timedelta(days=rng.randint(18 * 365, 78 * 365), seconds=rng.randint(0, 86399), milliseconds=rng.randint(0, 999))
    registered = now - timedelta(days=rng.randint(30, 22 * 365), seconds=rng.randint(0, 86399), milliseconds=rng.randint(0, 999))
    password = rng.choice(["hunter2", "trustno1", "letmein", "p@ssw0rd", "jordan23"])
    salt = "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(8))
    salted = (password + salt).encode()
    kind = "women" if gender == "female" else "men"
    portrait = rng.randint(0, 99)
    user_id = uuid.UUID(int=rng.getrandbits(128), version=4)
    return {
        "gender": gender,
        "name": {"title": rng.choice(TITLES[gender]), "first": first, "last": last},
        "location": {
            "street": {"number": rng.randint(1, 9999), "name": rng.choice(STREETS)},
            "city": city,
            "state": state,
            "country": spec["country"],
            "postcode": _postcode(rng, spec["postcode"]),
            "coordinates": {"latitude": f"{rng.uniform(-90, 90):.4f}", "longitude": f"{rng.uniform(-180, 180):.4f}"},
            "timezone": {"offset": offset, "description": description},
        },
        "email": f"{first}.{last}@example.com".lower().replace(" ", "").replace("'", ""),
        "login": {
            "uuid": str(user_id),
            "username": (
                f"{rng.choice(['happy', 'silver', 'purple', 'tiny', 'lazy'])}{rng.choice(['cat', 'fish', 'owl', 'duck'])}"
                f"{rng.randint(100, 999)}"
            ),
            "password": password,
            "salt": salt,
            "md5": hashlib.md5(salted).hexdigest(),
            "sha1": hashlib.sha1(salted).hexdigest(),
            "sha256": hashlib.sha256(salted).hexdigest(),
        },
        "dob": {"date": _iso(dob), "age": (now - dob).days // 365},
        "registered": {"date": _iso(registered), "age": (now - registered).days // 365},
        "phone": _digits(rng, spec["phone"]),
        "cell": _digits(rng, spec["phone"]),
        "id": {"name": spec["id"], "value": None if not spec["id"] or rng.random() < 0.1 else _digits(rng, "###-##-####")},
        "picture": {
            "large": f"https://randomuser.me/api/portraits/{kind}/{portrait}.jpg",
            "medium": f"https://randomuser.me/api/portraits/med/{kind}/{portrait}.jpg",
            "thumbnail": f"https://randomuser.me/api/portraits/thumb/{kind}/{portrait}.jpg",
        },
        "nat": nat,
    }


def _fields(raw: str | None) -> set[str]:
    return {f.strip().lower() for f in (raw or "").split(",") if f.strip()}


def generate(query: dict[str, str], now: datetime | None = None) -> dict[str, Any]:
    """The API's answer for query parameters (raises BadRequest for the error document)."""
    try:
        results = int(query.get("results") or 1)
        page = int(query.get("page") or 1)
    except ValueError:
        raise BadRequest("results and page must be integers") from None
    results = min(max(results, 1), MAX_RESULTS)
    page = max(page, 1)
    fmt = (query.get("format") or "json").lower()
    if fmt not in ("json", "pretty", "prettyjson"):
        raise BadRequest(f"format {fmt} is not served by the local stand-in")
    nats = [n.strip().upper() for n in (query.get("nat") or "").split(",") if n.strip()] or sorted(NATS)
    unknown = [n for n in nats if n not in NATS]
    if unknown:
        nats = [n for n in nats if n in NATS] or sorted(NATS)  # the API ignores unknown nats
    gender = (query.get("gender") or "").lower() or None
    if gender not in (None, "male", "female"):
        gender = None
    seed = query.get("seed") or uuid.uuid4().hex[:16]
    rng = random.Random(f"{seed}:{page}:{','.join(nats)}:{gender}")
    anchor = now or datetime(2026, 1, 1, tzinfo=UTC)
    users = [make_user(rng, rng.choice(nats), gender, anchor) for _ in range(results)]
    inc, exc = _fields(query.get("inc")), _fields(query.get("exc"))
    if inc:
        users = [{k: v for k, v in u.items() if k in inc} for u in users]
    if exc:
        users = [{k: v for k, v in u.items() if k not in exc} for u in users]
    body: dict[str, Any] = {"results": users}
    if "noinfo" not in query:
        body["info"] = {"seed": seed, "results": results, "page": page, "version": VERSION}
    return body


class _Faults:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: list[int] = []
        self.errors = 0
        self.drop_field: str | None = None
        self.requests = 0


def make_handler(faults: _Faults, api_key: str | None = None):
    expected = f"Bearer {api_key}".encode() if api_key else None

    class Handler(BaseHTTPRequestHandler):
        server_version = "randomuser-standin/1.4"

        def log_message(self, fmt, *args):  # quiet; the access log is not interesting
            pass

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body, ensure_ascii=False).encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _refused(self) -> bool:
            """Answer 401 (and say so) unless the request carries the key, if there is one."""
            if expected is None or hmac.compare_digest((self.headers.get("Authorization") or "").strip().encode(), expected):
                return False
            if int(self.headers.get("Content-Length") or 0):
                self.close_connection = True  # the body stays unread
            self._send(
                401,
                {"error": "this randomuser stand-in wants its API key (Authorization: Bearer ...)"},
                {"WWW-Authenticate": 'Bearer realm="cdcpipe randomuser"'},
            )
            return True

        def do_GET(self):  # noqa: N802
            if self._refused():
                return
            url = urlparse(self.path)
            if url.path.rstrip("/") not in ("/api", f"/api/{VERSION}"):
                return self._send(404, {"error": f"not found: {url.path}"})
            query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            with faults.lock:
                faults.requests += 1
                status = faults.statuses.pop(0) if faults.statuses else None
                error = faults.errors > 0
                faults.errors -= 1 if error else 0
                drop, faults.drop_field = faults.drop_field, None
            if status:
                return self._send(status, {"error": f"injected HTTP {status}"})
            if error:
                return self._send(200, {"error": ERROR_MESSAGE})
            try:
                body = generate(query)
            except BadRequest:
                return self._send(200, {"error": ERROR_MESSAGE})
            if drop and body["results"]:
                body["results"][len(body["results"]) // 2].pop(drop, None)
            self._send(200, body)

        def do_POST(self):  # noqa: N802
            if self._refused():
                return
            if self.path != "/__faults":
                return self._send(404, {"error": "not found"})
            payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            with faults.lock:
                faults.statuses.extend(int(s) for s in payload.get("status", []))
                faults.errors += int(payload.get("error", 0))
                faults.drop_field = payload.get("drop_field", faults.drop_field)
                requests = faults.requests
            self._send(200, {"queued": True, "requests_so_far": requests})

    return Handler


def make_server(host: str = "127.0.0.1", port: int = 8089, api_key: str | None = None) -> ThreadingHTTPServer:
    """The stand-in on ``host:port``; with ``api_key``, it refuses every request without it."""
    server = ThreadingHTTPServer((host, port), make_handler(_Faults(), api_key))
    server.daemon_threads = True
    return server
