"""The review pages and JSON API through FastAPI's TestClient, on a bare FastAPI() app."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from conftest import fast_hasher, seed_notes
from flagger.settings import Settings
from flagger.store import ReviewStore

PASSWORD = "correct horse battery"


@pytest.fixture
def app(tmp_path, test_flagger):
    import api.review

    st = ReviewStore(f"sqlite:///{tmp_path / 'review.db'}", password_hasher=fast_hasher())
    seed_notes(st, test_flagger)
    st.create_user("ann", PASSWORD, display_name="Ann Lee")
    st.create_user("bob", PASSWORD, display_name="Bob Roy")
    st.create_user("cai", PASSWORD, display_name="Cai Wu", hidden_categories=["cse"])
    st.create_user("dan", PASSWORD, display_name="Dan Ode", team="youth")
    a = FastAPI()
    a.state.store = st
    a.state.settings = Settings(review_cookie_secure=False, review_local_procedure="Call the MASH on 0100 000 0000.",
                                review_team_hidden_categories={"youth": ["cse", "missing"]})
    api.review.install(a)
    yield a
    st.engine.dispose()


def login(app, username) -> tuple[TestClient, str]:
    c = TestClient(app)
    page = c.get("/review/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    r = c.post("/review/login", data={"username": username, "password": PASSWORD, "csrf_token": token,
                                      "next": "/review"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    home = c.get("/review")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', home.text).group(1)
    return c, csrf


def sid_of(app, note_key, category):
    from sqlalchemy import select

    from flagger.store import Note, Suggestion

    with app.state.store.session() as s:
        return s.execute(select(Suggestion.id, Note.id).join(Note)
                         .where(Note.note_key == note_key, Suggestion.category == category)).one()


def test_review_api_login_sets_a_safe_cookie(app):
    c = TestClient(app)
    assert c.get("/review", follow_redirects=False).headers["location"] == "/review/login?next=/review"
    page = c.get("/review/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    bad = c.post("/review/login", data={"username": "ann", "password": "nope nope nope", "csrf_token": token})
    assert bad.status_code == 401 and "Wrong username or password" in bad.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', bad.text).group(1)
    no_csrf = c.post("/review/login", data={"username": "ann", "password": PASSWORD, "csrf_token": "x"})
    assert no_csrf.status_code == 403
    ok = c.post("/review/login", data={"username": "ann", "password": PASSWORD, "csrf_token": token,
                                       "next": "https://evil.example/"}, follow_redirects=False)
    assert ok.headers["location"] == "/review"  # no open redirect
    cookie = [h for h in ok.headers.get_list("set-cookie") if h.startswith("flagger_review=")][0]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
    app.state.settings = app.state.settings.model_copy(update={"review_cookie_secure": True})
    ok2 = TestClient(app, base_url="https://testserver")  # a Secure cookie only travels over https
    page = ok2.get("/review/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    r = ok2.post("/review/login", data={"username": "ann", "password": PASSWORD, "csrf_token": token},
                 follow_redirects=False)
    assert "Secure" in [h for h in r.headers.get_list("set-cookie") if h.startswith("flagger_review=")][0]


def test_review_api_every_page_says_it_never_refers(app):
    c, _ = login(app, "ann")
    sid, note_id = sid_of(app, "n-001", "missing")
    for path in ["/review/login", "/review", f"/review/notes/{note_id}", "/review/cases/C-100"]:
        r = c.get(path)
        assert r.status_code == 200, path
        assert "flagger never refers anyone" in r.text and "Call the MASH on 0100 000 0000." in r.text
        assert "Content-Security-Policy" in r.headers and r.headers["Cache-Control"] == "no-store"
        assert not re.search(r'(src|href|action)="(https?:)?//', r.text)  # nothing from a CDN or elsewhere


def test_review_api_note_page_highlights_with_labels(app):
    c, _ = login(app, "ann")
    _, note_id = sid_of(app, "n-001", "missing")
    html = c.get(f"/review/notes/{note_id}").text
    assert re.search(r'<mark class="seg ev cat-missing"[^>]*>went missing</mark><span class="tag cat-missing">'
                     r'\[missing · medium\]</span>', html)
    assert re.search(r'<mark class="seg ev cat-county_lines"[^>]*>two phones</mark>', html)
    assert "Other notes in this case" in html and "n-002" in html


@pytest.mark.parametrize("user, sees_cse", [("ann", True), ("cai", False)])
def test_review_api_category_visibility_in_json_and_pages(app, user, sees_cse):
    c, _ = login(app, user)
    q = c.get("/v1/review/queue").json()
    assert ("cse" in q["counts"]) is sees_cse
    assert any(i["category"] == "cse" for i in q["items"]) is sees_cse
    _, cse_note = sid_of(app, "n-003", "cse")
    assert c.get(f"/v1/review/notes/{cse_note}").status_code == (200 if sees_cse else 404)
    assert c.get(f"/review/notes/{cse_note}").status_code == (200 if sees_cse else 404)
    page = c.get("/review").text
    assert ("n-003" in page) is sees_cse
    _, mixed = sid_of(app, "n-002", "cse")
    body = c.get(f"/v1/review/notes/{mixed}").json()
    assert any(s["category"] == "cse" for s in body["suggestions"]) is sees_cse
    assert ("older boyfriend</mark>" in c.get(f"/review/notes/{mixed}").text) is sees_cse
    timeline = c.get("/v1/review/cases/C-100/timeline").json()
    assert any(s["category"] == "cse" for e in timeline for s in e["suggestions"]) is sees_cse


def test_review_api_team_visibility_setting(app):
    c, _ = login(app, "dan")  # team youth: may not see cse or missing
    q = c.get("/v1/review/queue").json()
    assert set(q["counts"]) == {"county_lines"}


def test_review_api_decisions_and_conflict(app):
    ann, ann_csrf = login(app, "ann")
    bob, bob_csrf = login(app, "bob")
    sid, note_id = sid_of(app, "n-001", "missing")
    # Both open the note and see version 1.
    assert ann.get(f"/v1/review/notes/{note_id}").status_code == 200
    assert bob.get(f"/review/notes/{note_id}").status_code == 200
    r = ann.post(f"/v1/review/suggestions/{sid}/decision", json={"action": "confirm", "version": 1},
                 headers={"X-CSRF-Token": ann_csrf})
    assert r.status_code == 200 and r.json()["state"] == "confirmed"
    r = bob.post(f"/v1/review/suggestions/{sid}/decision", json={"action": "reject", "reason": "negated",
                                                                 "version": 1}, headers={"X-CSRF-Token": bob_csrf})
    assert r.status_code == 409 and "already decided by Ann Lee" in r.json()["detail"]
    page = bob.post(f"/review/suggestions/{sid}/decide", data={"note_id": note_id, "action": "reject",
                                                               "reason": "negated", "version": 1,
                                                               "csrf_token": bob_csrf})
    assert page.status_code == 409 and "already decided by Ann Lee" in page.text


@pytest.mark.parametrize("body, status, match", [
    ({"action": "reject"}, 400, "reject needs a reason"),
    ({"action": "reject", "reason": "other"}, 400, "needs a comment"),
    ({"action": "recategorise", "new_category": "bullying"}, 400, "unknown category"),
    ({"action": "launch"}, 422, ""),
])
def test_review_api_bad_decisions_get_4xx(app, body, status, match):
    c, csrf = login(app, "ann")
    sid, _ = sid_of(app, "n-001", "missing")
    r = c.post(f"/v1/review/suggestions/{sid}/decision", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == status and match in r.text


def test_review_api_csrf_required_for_session_posts(app):
    c, csrf = login(app, "ann")
    sid, note_id = sid_of(app, "n-001", "missing")
    assert c.post(f"/v1/review/suggestions/{sid}/decision", json={"action": "confirm"}).status_code == 403
    r = c.post(f"/review/suggestions/{sid}/decide", data={"note_id": note_id, "action": "confirm",
                                                          "csrf_token": "forged"})
    assert r.status_code == 403


def test_review_api_keys_read_but_cannot_decide(app):
    st = app.state.store
    _, reviewer = st.create_api_key("case system", "reviewer")
    _, scanner = st.create_api_key("batch", "scanner")
    c = TestClient(app)
    assert c.get("/v1/review/queue").status_code == 401
    assert c.get("/v1/review/queue", headers={"Authorization": f"Bearer {scanner}"}).status_code == 401
    h = {"Authorization": f"Bearer {reviewer}"}
    assert c.get("/v1/review/queue", headers=h).json()["total"] == 5
    sid, note_id = sid_of(app, "n-001", "missing")
    assert c.get(f"/v1/review/notes/{note_id}", headers=h).status_code == 200
    r = c.post(f"/v1/review/suggestions/{sid}/decision", json={"action": "confirm"}, headers=h)
    assert r.status_code == 403 and "named reviewer" in r.json()["detail"]
    assert c.get("/review", headers=h, follow_redirects=False).status_code == 303  # pages need a person


def test_review_api_add_concern_offsets_checked_on_server(app):
    c, csrf = login(app, "ann")
    _, note_id = sid_of(app, "n-003", "cse")
    text = c.get(f"/v1/review/notes/{note_id}").json()["text"]
    start = text.index("last weekend")
    r = c.post(f"/v1/review/notes/{note_id}/concerns", headers={"X-CSRF-Token": csrf},
               json={"start": start, "end": start + 12, "category": "sexual_abuse", "level": "high"})
    assert r.status_code == 201 and r.json()["evidence"][0]["text"] == "last weekend"
    r = c.post(f"/v1/review/notes/{note_id}/concerns", headers={"X-CSRF-Token": csrf},
               json={"start": 10, "end": 500, "category": "neglect"})
    assert r.status_code == 400 and f"selection 10-500 is not inside the note (0-{len(text)})" in r.json()["detail"]
    page = c.post(f"/review/notes/{note_id}/concerns", data={"start": 5, "end": 2, "category": "neglect",
                                                             "csrf_token": csrf})
    assert page.status_code == 400 and "not inside the note" in page.text
    assert text not in r.json()["detail"]


def test_review_api_second_review_flow(app):
    app.state.settings = app.state.settings.model_copy(update={"review_second_review_high_reject": True})
    ann, ann_csrf = login(app, "ann")
    bob, bob_csrf = login(app, "bob")
    sid, note_id = sid_of(app, "n-001", "county_lines")
    r = ann.post(f"/v1/review/suggestions/{sid}/decision", headers={"X-CSRF-Token": ann_csrf},
                 json={"action": "reject", "reason": "not_about_child"})
    assert r.json()["state"] == "awaiting_second_review"
    assert "You rejected this" in ann.get(f"/review/notes/{note_id}").text
    r = ann.post(f"/v1/review/suggestions/{sid}/decision", headers={"X-CSRF-Token": ann_csrf},
                 json={"action": "second_review", "agree": True})
    assert r.status_code == 403
    assert "Agree: reject" in bob.get(f"/review/notes/{note_id}").text
    r = bob.post(f"/review/suggestions/{sid}/decide", data={"note_id": note_id, "action": "second_review",
                                                            "agree": "yes", "csrf_token": bob_csrf},
                 follow_redirects=False)
    assert r.status_code == 303
    assert ann.get(f"/v1/review/notes/{note_id}").json()["suggestions"][0]["state"] == "rejected"


def test_review_api_timeline_and_chronology(app):
    c, csrf = login(app, "ann")
    sid, note_id = sid_of(app, "n-001", "missing")
    c.post(f"/review/suggestions/{sid}/decide", data={"note_id": note_id, "action": "confirm", "csrf_token": csrf})
    page = c.get("/review/cases/C-100").text
    assert "<svg" in page and 'class="mark confirmed' in page and "confirmed: 1" in page
    chron = c.get(f"/v1/review/suggestions/{sid}/chronology").json()["text"]
    assert chron.startswith("06/01/2025 - Missing from home, care or education (medium)")
    assert '"went missing"' in chron and "Ann Lee" in chron
    sid2, _ = sid_of(app, "n-002", "missing")
    assert c.get(f"/v1/review/suggestions/{sid2}/chronology").status_code == 400  # not confirmed


def test_review_api_logout_and_disabled_user(app):
    c, csrf = login(app, "ann")
    assert c.get("/v1/review/queue").status_code == 200
    app.state.store.set_user_disabled("ann")
    assert c.get("/v1/review/queue").status_code == 401
    b, bcsrf = login(app, "bob")
    b.post("/review/logout", data={"csrf_token": bcsrf})
    assert b.get("/review", follow_redirects=False).status_code == 303
