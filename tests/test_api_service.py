"""The HTTP service (api/): endpoints, roles, limits, privacy, never-refers.

A small fixed lexicon keeps these tests about the service, not about what the real
lexicons (edited by others) catch. ``build_test_app`` is reused by the other
tests/test_api_*.py modules.
"""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from api.app import create_app
from flagger.settings import Settings

LEXICONS = {
    "missing.yml": """
category: missing
version: "0.0.1"
sources: {t: "test"}
indicators:
  - id: missing.went_missing
    description: went missing
    weight: 0.8
    source: t
    phrases: [went missing, gone missing, reported missing]
""",
    "county_lines.yml": """
category: county_lines
version: "0.0.2"
sources: {t: "test"}
indicators:
  - id: county_lines.phones
    description: several phones
    weight: 0.8
    source: t
    phrases: [two phones, burner phone]
  - id: county_lines.cash
    description: unexplained cash
    weight: 0.8
    source: t
    phrases: [wad of cash]
""",
    "context.yml": """
version: 0.0.1
sources: {negex: "NegEx"}
rules:
  - {id: neg.no, literal: "no", direction: forward, max_scope: 8, source: negex, attribute: negated}
  - {id: neg.not, literal: "not", direction: forward, max_scope: 5, source: negex, attribute: negated}
""",
}

# A note whose words must never leave the request: logs, metrics, error bodies.
SECRET = "Zebedee-Quarrington told staff about the burner phone"


def write_lexicons(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in LEXICONS.items():
        (folder / name).write_text(body.lstrip(), encoding="utf-8")
    return folder


def make_flagger(folder: Path):
    from flagger.engine import Flagger

    write_lexicons(folder)
    return Flagger(lexicon_dir=str(folder), context_rules=str(folder / "context.yml"), model="none",
                   max_note_chars=1_000)


def build_test_app(flagger, db_path: Path, **settings):
    """An app on a SQLite store at ``db_path`` with one key per role.

    Returns ``(app, store, headers_by_role)``.
    """
    from flagger.store import ReviewStore

    url = f"sqlite:///{db_path}"
    store = ReviewStore(url)
    headers = {}
    for role in ("scanner", "reviewer", "admin"):
        _, token = store.create_api_key(f"test-{role}", role)
        headers[role] = {"Authorization": f"Bearer {token}"}
    s = Settings(database_url=url, **settings)
    return create_app(s, flagger=flagger, store=store), store, headers


@pytest.fixture(scope="module")
def flagger(tmp_path_factory):
    return make_flagger(tmp_path_factory.mktemp("api-lex"))


@pytest.fixture(scope="module")
def svc(flagger, tmp_path_factory):
    app, store, headers = build_test_app(flagger, tmp_path_factory.mktemp("api-db") / "review.db")
    with TestClient(app) as client:
        yield client, store, headers


def fresh(flagger, tmp_path, **settings):
    tmp_path.mkdir(parents=True, exist_ok=True)
    app, store, headers = build_test_app(flagger, tmp_path / "review.db", **settings)
    return TestClient(app), store, headers


# -- scanning -------------------------------------------------------------------------

@pytest.mark.parametrize("text,categories", [
    ("Jay went missing on Friday and came back with two phones.", ["county_lines", "missing"]),
    ("Homework done, no issues today.", []),
])
def test_api_scan_one_note(svc, flagger, text, categories):
    client, _, h = svc
    r = client.post("/v1/scan", json={"id": "n1", "text": text, "case_id": "C-1"}, headers=h["scanner"])
    assert r.status_code == 200
    body = r.json()
    assert body["queued"] is None
    [result] = body["results"]
    # Same contract and same result as the library (and so the CLI).
    assert result == json.loads(flagger.scan(text, id="n1", meta={"case_id": "C-1"}).model_dump_json())
    assert sorted(c["category"] for c in result["concerns"]) == categories
    for c in result["concerns"]:
        assert c["status"] == "suggested" and c["explanation"]["threshold"] > 0
        for e in c["evidence"]:
            assert text[e["start"]:e["end"]] == e["text"]


def test_api_scan_batch_keeps_order_and_errors_per_note(svc):
    client, _, h = svc
    notes = [
        {"id": "a", "text": "He went missing again."},
        {"id": "b", "text": ""},
        {"id": "c", "text": "x" * 1_001},  # over this flagger's max_note_chars
        {"id": "d", "text": "A wad of cash in her bag."},
        {"id": "e", "text": "   "},
    ]
    r = client.post("/v1/scan", json={"notes": notes}, headers=h["scanner"])
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["id"] for x in results] == ["a", "b", "c", "d", "e"]
    assert [x["status"] for x in results] == ["scanned", "error", "error", "scanned", "error"]
    assert results[2]["error"]["reason"] == "'text' has 1001 characters, over the limit of 1000"
    assert [c["category"] for c in results[3]["concerns"]] == ["county_lines"]


def test_api_scan_large_batch_in_a_thread_gives_the_same_results(svc, monkeypatch):
    """Small requests are scanned on the event loop, large ones in a worker thread;
    both give the same results (api/service.py, INLINE_SCAN_CHARS)."""
    import api.service as service

    client, _, h = svc
    notes = [{"id": f"n{i}", "text": t} for i, t in enumerate(
        ["He went missing again with two phones.", "", "Mum says there is no food in the house.",
         "Nothing of note today."])]
    inline = client.post("/v1/scan", json={"notes": notes}, headers=h["scanner"]).json()
    monkeypatch.setattr(service, "INLINE_SCAN_CHARS", 0)
    threaded = client.post("/v1/scan", json={"notes": notes}, headers=h["scanner"]).json()
    assert inline == threaded
    assert [r["id"] for r in threaded["results"]] == ["n0", "n1", "n2", "n3"]
    assert any(r["concerns"] for r in threaded["results"])


def test_api_scan_negated_hit_is_suppressed_with_rule_in_explanation(svc):
    client, _, h = svc
    r = client.post("/v1/scan", json={"id": "n", "text": "There were no two phones found."}, headers=h["scanner"])
    result = r.json()["results"][0]
    assert result["concerns"] == []
    [hit] = result["suppressed"]
    assert hit["suppressed"] and hit["context"][0]["rule"] == "neg.no"


def test_api_scan_queue_is_idempotent(flagger, tmp_path):
    client, store, h = fresh(flagger, tmp_path)
    body = {"queue": True, "notes": [{"id": "q1", "text": "She went missing with two phones."},
                                     {"id": "q2", "text": "Nothing of note."},
                                     {"id": "q3", "text": ""}]}
    with client:
        first = client.post("/v1/scan", json=body, headers=h["scanner"]).json()["queued"]
        again = client.post("/v1/scan", json=body, headers=h["scanner"]).json()["queued"]
        changed = client.post("/v1/scan", json={"id": "q1", "text": "She went missing again.", "queue": True},
                              headers=h["scanner"]).json()["queued"]
    assert [(q["index"], q["id"], len(q["suggestion_ids"])) for q in first] == [(0, "q1", 2)]
    assert again == first  # same note id and text: nothing new
    assert changed[0]["suggestion_ids"] and set(changed[0]["suggestion_ids"]).isdisjoint(first[0]["suggestion_ids"])
    from sqlalchemy import func, select

    from flagger.store import Note, Suggestion

    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Note)) == 2
        assert s.scalar(select(func.count()).select_from(Suggestion)) == 3
        assert {n.source for n in s.scalars(select(Note))} == {"api"}


# -- roles ----------------------------------------------------------------------------

SCAN = ("post", "/v1/scan", {"id": "r", "text": "went missing"})
ROLE_TABLE = [
    # (method, path, json, role, expected status)
    (*SCAN, None, 401),
    (*SCAN, "scanner", 200),
    (*SCAN, "reviewer", 403),
    (*SCAN, "admin", 200),
    ("get", "/v1/categories", None, None, 401),
    ("get", "/v1/categories", None, "scanner", 200),
    ("get", "/v1/lexicons", None, "reviewer", 200),
    ("get", "/v1/models", None, "admin", 200),
    ("get", "/v1/keys", None, "scanner", 403),
    ("get", "/v1/keys", None, "reviewer", 403),
    ("get", "/v1/keys", None, "admin", 200),
    ("post", "/v1/keys", {"name": "x", "role": "scanner"}, "scanner", 403),
    ("get", "/healthz", None, None, 200),
    ("get", "/readyz", None, None, 200),
    ("get", "/metrics", None, None, 200),
]


@pytest.mark.parametrize("method,path,body,role,status", ROLE_TABLE)
def test_api_roles(svc, method, path, body, role, status):
    client, _, h = svc
    r = client.request(method.upper(), path, json=body, headers=h[role] if role else {})
    assert r.status_code == status, r.text
    if status == 401:
        assert r.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("auth", [
    "Bearer flg_nope_nope", "Bearer not-a-key", "Basic dXNlcjpwYXNz", "Bearer ", "flg_x_y",
])
def test_api_bad_credentials_401(svc, auth):
    client, _, _ = svc
    r = client.get("/v1/categories", headers={"Authorization": auth})
    assert r.status_code == 401 and "www-authenticate" in r.headers


def test_api_keys_admin_create_use_revoke(svc):
    client, _, h = svc
    created = client.post("/v1/keys", json={"name": "cms-east", "role": "scanner"}, headers=h["admin"])
    assert created.status_code == 201
    token, key_id = created.json()["token"], created.json()["key_id"]
    mine = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/categories", headers=mine).status_code == 200
    listed = client.get("/v1/keys", headers=h["admin"]).json()["keys"]
    assert key_id in [k["key_id"] for k in listed]
    assert all("token" not in k and "secret_hash" not in k for k in listed)
    assert client.delete(f"/v1/keys/{key_id}", headers=h["admin"]).json()["revoked_at"]
    # Revoked here, so this worker's cache forgets it at once.
    assert client.get("/v1/categories", headers=mine).status_code == 401
    assert client.delete("/v1/keys/nosuchkey", headers=h["admin"]).status_code == 404


def test_api_revocation_elsewhere_takes_effect_without_cache(flagger, tmp_path):
    client, store, h = fresh(flagger, tmp_path, api_key_cache_seconds=0)
    with client:
        assert client.get("/v1/models", headers=h["scanner"]).status_code == 200
        key_id = next(k.key_id for k in store.list_api_keys() if k.role == "scanner")
        store.revoke_api_key(key_id)
        assert client.get("/v1/models", headers=h["scanner"]).status_code == 401


# -- limits ---------------------------------------------------------------------------

def test_api_413_from_content_length(flagger, tmp_path):
    client, _, h = fresh(flagger, tmp_path, api_max_body_bytes=2_000)
    body = json.dumps({"id": "big", "text": "went missing " * 300}).encode()
    with client:
        r = client.post("/v1/scan", content=body, headers={**h["scanner"], "Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json()["detail"] == "request body is over the limit of 2000 bytes"


def test_api_413_while_streaming_without_content_length(flagger, tmp_path):
    client, _, h = fresh(flagger, tmp_path, api_max_body_bytes=2_000)
    chunks = [b'{"id": "big", "text": "', *([b"went missing " * 20] * 20), b'"}']
    with client:
        r = client.post("/v1/scan", content=iter(chunks), headers={**h["scanner"], "Content-Type": "application/json"})
    assert r.status_code == 413
    assert "2000 bytes" in r.json()["detail"]


def test_api_413_batch_too_large(flagger, tmp_path):
    client, _, h = fresh(flagger, tmp_path, api_max_batch=2)
    notes = [{"id": str(i), "text": "went missing"} for i in range(3)]
    with client:
        r = client.post("/v1/scan", json={"notes": notes}, headers=h["scanner"])
    assert r.status_code == 413
    assert r.json()["detail"] == "batch has 3 notes, over the limit of 2"


def test_api_429_with_retry_after(flagger, tmp_path):
    client, _, h = fresh(flagger, tmp_path, rate_limit_burst=2, rate_limit_per_minute=1)
    with client:
        codes = [client.get("/v1/categories", headers=h["scanner"]).status_code for _ in range(3)]
        # Buckets are per key: another key is not throttled.
        other = client.get("/v1/categories", headers=h["reviewer"]).status_code
        r = client.get("/v1/categories", headers=h["scanner"])
    assert codes == [200, 200, 429] and other == 200
    assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60


@pytest.mark.parametrize("body,loc", [
    ({"id": "a"}, ["body", "text"]),
    ({"id": "", "text": "went missing"}, ["body", "id"]),
    ({"notes": []}, ["body", "notes"]),
    ({"notes": [{"id": "a", "text": SECRET, "colour": SECRET}]}, ["body", "notes", 0, "colour"]),
    ({"id": "a", "text": 12345}, ["body", "text"]),
    ({"id": "a", "text": "ok", "queue": SECRET}, ["body", "queue"]),
    ([SECRET], ["body"]),
])
def test_api_422_field_errors_without_input(svc, body, loc):
    client, _, h = svc
    r = client.post("/v1/scan", json=body, headers=h["scanner"])
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert loc in [d["loc"] for d in detail], detail
    assert all(set(d) == {"loc", "msg", "type"} for d in detail)
    assert SECRET not in r.text and "12345" not in r.text


@pytest.mark.parametrize("content,ctype", [
    (b"{not json", "application/json"),
    (b"\xff\xfe\x00garbage", "application/json"),
    (SECRET.encode(), "text/plain"),
    (b"", "application/json"),
])
def test_api_malformed_body_is_4xx_not_500(svc, content, ctype):
    client, _, h = svc
    r = client.post("/v1/scan", content=content, headers={**h["scanner"], "Content-Type": ctype})
    assert 400 <= r.status_code < 500
    assert SECRET not in r.text


# -- privacy --------------------------------------------------------------------------

def test_api_no_note_text_in_logs_or_metrics(svc, caplog):
    client, _, h = svc
    caplog.set_level(logging.DEBUG)
    client.post("/v1/scan", json={"id": "priv-1", "text": SECRET, "queue": True}, headers=h["scanner"])
    client.post("/v1/scan", json={"notes": [{"id": "priv-2", "text": SECRET, "bogus": SECRET}]}, headers=h["scanner"])
    client.post("/v1/scan", json={"id": "priv-3", "text": SECRET}, headers={"Authorization": "Bearer flg_a_b"})
    metrics = client.get("/metrics").text
    for where in (caplog.text, metrics):
        assert SECRET not in where and "Zebedee" not in where and "burner" not in where
    assert "priv-1" not in metrics
    access = [json.loads(r.getMessage()) for r in caplog.records if r.name == "flagger.access"]
    scans = [a for a in access if a["endpoint"] == "/v1/scan"]
    assert [a["status"] for a in scans] == [200, 422, 401]
    assert scans[0]["notes"] == 1 and scans[0]["concerns"] == 1 and scans[0]["key_id"]
    assert set(scans[0]) <= {"event", "request_id", "method", "endpoint", "status", "latency_ms", "key_id",
                             "notes", "concerns", "errors", "queued"}
    assert 'flagger_concerns_suggested_total{category="county_lines",level=' in metrics


class _Exploding:
    """A Flagger whose scan fails with the note text in its message (a worst case)."""

    def __init__(self, real):
        self.versions, self.lexicons = real.versions, real.lexicons

    def scan_many(self, records):
        raise RuntimeError(f"cannot scan {records[0]['text']}")


def test_api_500_hides_exception_message(flagger, tmp_path, caplog):
    from flagger.store import ReviewStore

    store = ReviewStore(f"sqlite:///{tmp_path / 'r.db'}")
    _, token = store.create_api_key("t", "scanner")
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'r.db'}"), flagger=_Exploding(flagger), store=store)
    caplog.set_level(logging.DEBUG)
    with TestClient(app) as client:
        r = client.post("/v1/scan", json={"id": "x", "text": SECRET}, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 500 and "request id" in r.json()["detail"]
    assert SECRET not in r.text and SECRET not in caplog.text
    assert "unhandled RuntimeError" in caplog.text


def test_api_request_id_is_echoed_or_made(svc):
    client, _, _ = svc
    assert client.get("/healthz", headers={"X-Request-ID": "cms-123"}).headers["x-request-id"] == "cms-123"
    assert len(client.get("/healthz", headers={"X-Request-ID": "bad id!"}).headers["x-request-id"]) == 32


# -- never auto-refers: no outbound calls ----------------------------------------------

def _is_loopback(address) -> bool:
    if isinstance(address, tuple) and address:
        host = str(address[0])
        return host in ("localhost", "::1") or host.startswith("127.")
    return isinstance(address, (str, bytes))  # AF_UNIX paths are local


def test_api_makes_no_outbound_calls(flagger, tmp_path, monkeypatch):
    """With every non-loopback connection refused, start-up, scan, queue and every read
    route give the same answers: the service has no outbound calls to make."""
    notes = {"queue": True, "notes": [{"id": "o1", "text": "He went missing with two phones."},
                                      {"id": "o2", "text": "Nothing of note."}]}

    def run(db: Path):
        app, _, h = build_test_app(flagger, db)
        with TestClient(app) as client:
            out = [client.post("/v1/scan", json=notes, headers=h["scanner"]).json()]
            for path in ("/v1/categories", "/v1/lexicons", "/v1/models", "/readyz"):
                out.append(client.get(path, headers=h["scanner"]).json())
        return out

    baseline = run(tmp_path / "a.db")
    attempts = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_create = socket.create_connection

    def guard(address):
        if not _is_loopback(address):
            attempts.append(address)
            raise OSError(f"outbound connection attempted to {address!r}")

    def connect(self, address):
        guard(address)
        return real_connect(self, address)

    def connect_ex(self, address):
        guard(address)
        return real_connect_ex(self, address)

    def create_connection(address, *a, **kw):
        guard(address)
        return real_create(address, *a, **kw)

    def sendto(self, *a):
        guard(a[-1])
        raise OSError("no datagrams")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket.socket, "sendto", sendto)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    guarded = run(tmp_path / "b.db")
    assert attempts == []
    assert guarded == baseline


# -- docs, CORS, settings ---------------------------------------------------------------

def test_api_openapi_documents_routes_examples_and_explanation(svc):
    from api.contracts import EXAMPLE_ERROR_RESULT, EXAMPLE_NOTE, EXAMPLE_RESULT, ScanResponse

    client, _, _ = svc
    spec = client.get("/openapi.json").json()
    for path in ("/v1/scan", "/v1/categories", "/v1/lexicons", "/v1/models", "/healthz", "/readyz", "/metrics"):
        assert path in spec["paths"]
    scan = spec["paths"]["/v1/scan"]["post"]
    assert set(scan["requestBody"]["content"]["application/json"]["examples"]) == {"one", "batch"}
    assert {"401", "403", "413", "422", "429"} <= set(scan["responses"])
    assert "Explanation" in spec["components"]["schemas"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    # The examples are real: they validate against the contract, offsets included.
    ScanResponse.model_validate({"results": [EXAMPLE_RESULT, EXAMPLE_ERROR_RESULT]})
    for ev in EXAMPLE_RESULT["concerns"][0]["evidence"] + EXAMPLE_RESULT["suppressed"]:
        assert EXAMPLE_NOTE["text"][ev["start"]:ev["end"]] == ev["text"]


def test_api_models_says_none_honestly_and_reads_manifest(svc, tmp_path):
    from api.service import read_models

    client, _, h = svc
    body = client.get("/v1/models", headers=h["scanner"]).json()
    assert body["active"] == "none" and body["note"].startswith("none")
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"models": [{"name": "tfidf", "version": "2025.1", "sha256": "ab", "metrics": {"macro_f1": 0.71}}]}))
    [m] = read_models(tmp_path)
    assert (m.name, m.version, m.metrics, m.details) == ("tfidf", "2025.1", {"macro_f1": 0.71}, {"sha256": "ab"})
    (tmp_path / "manifest.json").write_text("{broken")
    assert read_models(tmp_path) == []


def test_api_lexicons_and_categories(svc):
    client, _, h = svc
    lex = client.get("/v1/lexicons", headers=h["scanner"]).json()
    assert [(f["category"], f["version"], f["indicators"]) for f in lex["files"]] == [
        ("county_lines", "0.0.2", 2), ("missing", "0.0.1", 1)]
    cats = client.get("/v1/categories", headers=h["scanner"]).json()["categories"]
    assert len(cats) == 12 and all(c["definition"] and c["sources"] for c in cats)


def test_api_cors_off_by_default_and_on_by_setting(flagger, tmp_path):
    pre = {"Origin": "https://cms.example", "Access-Control-Request-Method": "POST"}
    client, _, _ = fresh(flagger, tmp_path)
    with client:
        assert "access-control-allow-origin" not in client.options("/v1/scan", headers=pre).headers
    client, _, _ = fresh(flagger, tmp_path / "b", cors_origins=["https://cms.example"])
    with client:
        r = client.options("/v1/scan", headers=pre)
    assert r.headers["access-control-allow-origin"] == "https://cms.example"


@pytest.mark.parametrize("values,message", [
    ({"workers": 0}, "greater than or equal to 1"),
    ({"api_max_batch": 0}, "greater than 0"),
    ({"api_max_body_bytes": 0}, "greater than 0"),
    ({"rate_limit_per_minute": 0}, "greater than 0"),
    ({"port": 70000}, "less than or equal to 65535"),
    ({"cors_origins": ["*"], "cors_allow_credentials": True}, "cannot be used with cors_allow_credentials"),
    ({"cors_origins": ["cms.example"]}, "must start with http"),
])
def test_api_settings_refuse_unsafe_values(values, message):
    with pytest.raises(ValidationError, match=message):
        Settings(**values)


def test_api_settings_from_env_and_config_file(tmp_path, monkeypatch):
    from flagger.settings import get_settings

    cfg = tmp_path / "flagger.env"
    cfg.write_text("FLAGGER_WORKERS=3\nFLAGGER_API_MAX_BATCH=7\n")
    monkeypatch.setenv("FLAGGER_CONFIG", str(cfg))
    monkeypatch.setenv("FLAGGER_API_MAX_BATCH", "9")  # env beats the file
    monkeypatch.setenv("FLAGGER_CORS_ORIGINS", '["https://a.example"]')
    get_settings.cache_clear()
    try:
        s = get_settings()
        assert (s.workers, s.api_max_batch, s.cors_origins) == (3, 9, ["https://a.example"])
    finally:
        get_settings.cache_clear()


def test_api_readyz_503_until_loaded(flagger, tmp_path):
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}"), flagger=flagger,
                     store=None)
    client = TestClient(app)  # no lifespan: the store was never opened
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["store"] is False
    with TestClient(app) as c:  # lifespan opens the store
        assert c.get("/readyz").json()["status"] == "ready"
