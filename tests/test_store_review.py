"""The review store on a real database: a SQLite file and a throwaway PostgreSQL (conftest)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import inspect, select, text

from conftest import REVIEW_NOTES, seed_notes
from flagger.errors import ConflictError, NotFoundError, PermissionDenied, StoreError
from flagger.review import AddConcernIn, DecisionIn
from flagger.store import AuditEvent, Decision, Note, ReviewStore, Suggestion, Viewer

PASSWORD = "correct horse battery"
NOTE_WORDS = ["went missing", "two phones", "large amount of cash", "older boyfriend", "taken to a hotel",
              "gone missing", "Jay", "Kim"]


@pytest.fixture
def seeded(store, test_flagger):
    ids = seed_notes(store, test_flagger)
    store.create_user("ann", PASSWORD, display_name="Ann Lee")
    store.create_user("bob", PASSWORD, display_name="Bob Roy")
    store.create_user("cai", PASSWORD, display_name="Cai Wu", hidden_categories=["cse"])
    return ids


def _sid(store, note_key, category):
    with store.session() as s:
        return s.scalar(select(Suggestion.id).join(Note).where(Note.note_key == note_key,
                                                                Suggestion.category == category))


def _audit_rows(store):
    with store.session() as s:
        return list(s.scalars(select(AuditEvent).order_by(AuditEvent.id)))


def test_store_migrates_up_from_empty(store_url):
    st = ReviewStore(store_url)
    insp = inspect(st.engine)
    assert {"notes", "suggestions", "decisions", "audit_events", "users", "api_keys",
            "review_sessions"} <= set(insp.get_table_names())
    with st.engine.connect() as c:
        assert c.execute(text("select version_num from alembic_version")).scalar() == "0002"
    ReviewStore(store_url).engine.dispose()  # migrating again is a no-op
    st.engine.dispose()


def test_store_enqueue_is_idempotent(store, test_flagger):
    first = seed_notes(store, test_flagger)
    again = seed_notes(store, test_flagger)
    assert first == again
    assert [len(first[n[0]]) for n in REVIEW_NOTES] == [2, 2, 1, 0]  # the negated note queues nothing
    with store.session() as s:
        assert s.scalar(select(Note.id).where(Note.note_key == "n-004")) is None
        assert len(s.scalars(select(Suggestion)).all()) == 5


def test_store_queue_orders_and_counts(store, seeded):
    v = store.viewer_for_user("ann")
    page = store.queue(v)
    assert page.counts == {"county_lines": 1, "cse": 2, "missing": 2}
    levels = [i.level for i in page.items]
    assert levels == sorted(levels, key=lambda l: {"high": 0, "medium": 1, "low": 2}[l])
    # Among equal levels, newest first.
    high = [i for i in page.items if i.level == "high"]
    assert [i.note_key for i in high] == ["n-003", "n-001"]
    assert [i.note_key for i in store.queue(v, case_id="C-100", category="missing").items] == ["n-002", "n-001"]
    assert {i.team for i in store.queue(v, team="west").items} == {"west"}
    assert store.queue(v, level="low").items == []


@pytest.mark.parametrize("user, sees_cse", [("ann", True), ("cai", False)])
def test_store_category_visibility_in_queries(store, seeded, user, sees_cse):
    v = store.viewer_for_user(user)
    cats = {i.category for i in store.queue(v).items}
    assert ("cse" in cats) is sees_cse
    assert ("cse" in store.queue(v).counts) is sees_cse
    cse_only_note = store.queue(store.viewer_for_user("ann"), case_id="C-200").items[0].note_id
    if sees_cse:
        assert store.note_view(cse_only_note, v).suggestions[0].category == "cse"
    else:
        with pytest.raises(NotFoundError):
            store.note_view(cse_only_note, v)
        with pytest.raises(NotFoundError):
            store.decide(_sid(store, "n-003", "cse"), v, DecisionIn(action="confirm"))
        mixed = store.note_view(store.queue(v, case_id="C-100").items[0].note_id, v)
        assert all(sg.category != "cse" for sg in mixed.suggestions)
        for entry in store.case_timeline("C-100", v):
            assert all(sg.category != "cse" for sg in entry.suggestions)


def test_store_decisions_record_who_what_and_versions(store, seeded):
    ann = store.viewer_for_user("ann")
    sid = _sid(store, "n-001", "missing")
    out = store.decide(sid, ann, DecisionIn(action="reject", reason="historical", comment="was last year"))
    assert out.state == "rejected" and out.version == 2 and out.decided_by == "Ann Lee"
    d = out.decisions[-1]
    assert (d.action, d.reason, d.comment, d.by_username) == ("reject", "historical", "was last year", "ann")
    assert d.versions_seen["lexicons"] and d.versions_seen["version"] == 1
    with pytest.raises(ConflictError, match="already decided by Ann Lee"):
        store.decide(sid, store.viewer_for_user("bob"), DecisionIn(action="confirm"))
    sid2 = _sid(store, "n-001", "county_lines")
    out2 = store.decide(sid2, ann, DecisionIn(action="recategorise", new_category="trafficking", new_level="medium"))
    assert (out2.state, out2.category, out2.effective_category, out2.effective_level) == \
        ("recategorised", "county_lines", "trafficking", "medium")


def test_store_stale_version_is_refused(store, seeded):
    sid = _sid(store, "n-002", "missing")
    store.decide(sid, store.viewer_for_user("ann"), DecisionIn(action="confirm", version=1))
    with pytest.raises(ConflictError, match="already decided by Ann Lee"):
        store.decide(sid, store.viewer_for_user("bob"), DecisionIn(action="reject", reason="negated", version=1))


def test_store_api_keys_may_read_but_not_decide(store, seeded):
    key_id, token = store.create_api_key("case system", "reviewer")
    v = Viewer.for_key(store.verify_api_key(token))
    assert store.queue(v).total == 5
    with pytest.raises(PermissionDenied, match="named reviewer"):
        store.decide(_sid(store, "n-001", "missing"), v, DecisionIn(action="confirm"))


@pytest.mark.parametrize("round_", range(3))
def test_store_concurrent_decisions_exactly_one_wins(store, seeded, round_):
    """Two reviewers in two threads, each with their own session, decide the same item at once."""
    sid = _sid(store, "n-003", "cse")
    viewers = [store.viewer_for_user("ann"), store.viewer_for_user("bob")]
    decisions = [DecisionIn(action="confirm"), DecisionIn(action="reject", reason="not_a_concern")]
    barrier = threading.Barrier(2)
    results: list[object] = [None, None]

    def work(i):
        barrier.wait()
        try:
            results[i] = store.decide(sid, viewers[i], decisions[i])
        except Exception as exc:  # collected and checked below
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    wins = [r for r in results if not isinstance(r, Exception)]
    losses = [r for r in results if isinstance(r, Exception)]
    assert len(wins) == 1 and len(losses) == 1, results
    assert isinstance(losses[0], ConflictError)
    assert wins[0].decided_by in str(losses[0])
    with store.session() as s:
        assert len(s.scalars(select(Decision).where(Decision.suggestion_id == sid)).all()) == 1
        assert s.get(Suggestion, sid).version == 2


def test_store_second_review_needs_a_different_reviewer(store, seeded):
    sid = _sid(store, "n-001", "county_lines")  # high level
    ann, bob = store.viewer_for_user("ann"), store.viewer_for_user("bob")
    out = store.decide(sid, ann, DecisionIn(action="reject", reason="not_about_child"),
                       second_review_high_reject=True)
    assert out.state == "awaiting_second_review"
    assert sid in [i.suggestion_id for i in store.queue(bob).items]  # still in the queue
    with pytest.raises(PermissionDenied, match="different reviewer"):
        store.decide(sid, ann, DecisionIn(action="second_review", agree=True), second_review_high_reject=True)
    with pytest.raises(ConflictError, match="second reviewer"):
        store.decide(sid, bob, DecisionIn(action="confirm"), second_review_high_reject=True)
    done = store.decide(sid, bob, DecisionIn(action="second_review", agree=True), second_review_high_reject=True)
    assert done.state == "rejected" and [d.by_username for d in done.decisions] == ["ann", "bob"]


def test_store_add_concern_checks_offsets(store, seeded):
    ann = store.viewer_for_user("ann")
    note_id = store.queue(ann, case_id="C-200").items[0].note_id
    text_ = store.note_view(note_id, ann).text
    start = text_.index("last weekend")
    out = store.add_concern(note_id, ann, AddConcernIn(start=start, end=start + 12, category="sexual_abuse",
                                                       level="high", comment="specific assault"))
    assert (out.origin, out.state, out.evidence[0]["text"]) == ("reviewer", "confirmed", "last weekend")
    again = store.add_concern(note_id, ann, AddConcernIn(start=0, end=3, category="sexual_abuse"))
    assert again.id == out.id and len(again.evidence) == 2
    for bad in [(0, len(text_) + 1), (5, 5), (9, 2)]:
        with pytest.raises(StoreError, match="not inside the note"):
            store.add_concern(note_id, ann, AddConcernIn(start=bad[0], end=bad[1], category="neglect"))
    with pytest.raises(PermissionDenied):
        store.add_concern(note_id, store.viewer_for_user("cai"), AddConcernIn(start=0, end=3, category="cse"))


def test_store_purge_keeps_decisions_and_removes_every_fragment_of_text(store, seeded):
    ann = store.viewer_for_user("ann")
    for key, cat in [("n-001", "missing"), ("n-001", "county_lines"), ("n-003", "cse")]:
        store.decide(_sid(store, key, cat), ann, DecisionIn(action="confirm"))
    assert store.purge(timedelta(days=90)) == []  # decided today: not old enough
    assert sorted(store.purge(timedelta(0), dry_run=True)) == sorted(store.purge(timedelta(0)))
    with store.session() as s:
        notes = {n.note_key: n for n in s.scalars(select(Note))}
        assert notes["n-001"].text is None and notes["n-003"].text is None
        assert notes["n-002"].text is not None  # still pending: kept
        n1 = notes["n-001"]
        stored = repr(n1.result) + repr([(sg.evidence, sg.why) for sg in n1.suggestions])
        for w in NOTE_WORDS:
            assert w not in stored
        assert len(s.scalars(select(Decision)).all()) == 3
        assert {sg.state for sg in n1.suggestions} == {"confirmed"}
        assert n1.suggestions[0].evidence[0]["end"] > 0  # offsets kept
    purges = [e for e in _audit_rows(store) if e.action == "purge_text"]
    assert len(purges) == 2
    view = store.note_view(notes["n-001"].id, ann)
    assert view.text is None and view.text_purged_at is not None
    assert all(r["id"] != "n-001" for r in store.export_decisions())


def test_store_audits_views_and_decisions_without_note_text(store, seeded):
    ann = store.viewer_for_user("ann")
    note_id = store.queue(ann, case_id="C-200").items[0].note_id
    store.note_view(note_id, ann)
    store.decide(_sid(store, "n-003", "cse"), ann, DecisionIn(action="reject", reason="other",
                                                              comment="private reviewer remark"))
    store.add_concern(note_id, ann, AddConcernIn(start=0, end=3, category="neglect"))
    store.case_timeline("C-200", ann)
    rows = _audit_rows(store)
    actions = [(e.actor, e.action) for e in rows if e.actor == ann.actor]
    assert actions == [("user:1", "view_note"), ("user:1", "decide"), ("user:1", "add_concern"),
                       ("user:1", "view_case")]
    everything = repr([(e.action, e.details) for e in rows])
    for w in NOTE_WORDS + ["private reviewer remark", "Mum"]:
        assert w not in everything
    exported = list(store.audit_events(user="ann", case_id="C-200"))
    assert [e["action"] for e in exported] == ["view_note", "decide", "add_concern", "view_case"]
    assert list(store.audit_events(user="bob")) == []


def test_store_export_decisions_in_corpus_format(store, seeded):
    ann = store.viewer_for_user("ann")
    store.decide(_sid(store, "n-001", "missing"), ann, DecisionIn(action="reject", reason="negated"))
    store.decide(_sid(store, "n-001", "county_lines"), ann, DecisionIn(action="confirm"))
    store.decide(_sid(store, "n-003", "cse"), ann, DecisionIn(action="reject", reason="not_a_concern"))
    store.decide(_sid(store, "n-002", "cse"), ann, DecisionIn(action="confirm"))  # n-002 missing still open
    recs = {r["id"]: r for r in store.export_decisions()}
    assert set(recs) == {"n-001", "n-003"}
    assert recs["n-001"]["labels"] == ["county_lines"]
    assert recs["n-001"]["evidence"] == {"county_lines": ["two phones", "large amount of cash"]}
    for label, subs in recs["n-001"]["evidence"].items():
        assert all(s in recs["n-001"]["text"] for s in subs)
    assert recs["n-003"]["labels"] == [] and recs["n-003"]["evidence"] == {}
    stats = store.indicator_stats()
    assert stats["missing.went_missing"] == {"confirmed": 0, "rejected": 1, "negated": 1}
    assert stats["county_lines.phones"]["confirmed"] == 1


def test_store_users_passwords_and_sessions(store):
    uid = store.create_user("dee", PASSWORD, display_name="Dee")
    with store.session() as s:
        from flagger.store import User
        h = s.get(User, uid).password_hash
    assert h.startswith("$argon2id$") and PASSWORD not in h
    assert store.authenticate("dee", PASSWORD).id == uid
    assert store.authenticate("dee", "wrong password!") is None
    assert store.authenticate("nobody", PASSWORD) is None
    token, csrf = store.create_session(uid)
    viewer, csrf2 = store.session_viewer(token)
    assert viewer.user_id == uid and csrf == csrf2
    store.set_user_disabled("dee")
    assert store.session_viewer(token) is None
    assert store.authenticate("dee", PASSWORD) is None
    for bad, match in [(("dee", PASSWORD), "already exists"), (("x y", PASSWORD), "username"),
                       (("eve", "short"), "at least 10")]:
        with pytest.raises(StoreError, match=match):
            store.create_user(*bad)
    with pytest.raises(StoreError, match="unknown categories"):
        store.create_user("fay", PASSWORD, hidden_categories=["bullying"])
