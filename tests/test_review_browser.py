"""The review workspace in real headless Chromium against a real uvicorn server.

Scenario: sign in, work the queue with the keyboard, confirm one concern, reject one with
a reason, add a missed concern by selecting text, then see it all in the case timeline
and the audit export. Screenshots go to test-artifacts/ (gitignored).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from conftest import fast_hasher, seed_notes

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
PASSWORD = "correct horse battery"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason=f"{CHROMIUM} not installed (apt-get install -y chromium; scripts/test.sh does it)"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory, test_flagger):
    import uvicorn
    from fastapi import FastAPI

    import api.review
    from flagger.settings import Settings
    from flagger.store import ReviewStore

    db = tmp_path_factory.mktemp("browser") / "review.db"
    url = f"sqlite:///{db}"
    st = ReviewStore(url, password_hasher=fast_hasher())
    seed_notes(st, test_flagger)
    st.create_user("ann", PASSWORD, display_name="Ann Lee")
    app = FastAPI()
    app.state.store = st
    app.state.settings = Settings(review_local_procedure="If a child is in immediate danger call 999; "
                                                         "contact the MASH on 0100 000 0000.")
    api.review.install(app)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    deadline = time.time() + 20
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield {"base": f"http://127.0.0.1:{port}", "url": url, "store": st}
    srv.should_exit = True
    th.join(10)
    st.engine.dispose()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                    "--disable-component-update"])
        yield b
        b.close()


def _login(page, base):
    page.goto(f"{base}/review")
    assert "/review/login" in page.url
    page.fill("#username", "ann")
    page.fill("#password", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/review")


def _select_words(page, words: str):
    """Drag the mouse across ``words`` in the note, as a person selecting them would."""
    box = page.evaluate(
        """(words) => {
          const root = document.getElementById('notetext');
          const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
          let n;
          while ((n = walker.nextNode())) {
            const i = n.data.indexOf(words);
            if (i >= 0 && n.parentElement.hasAttribute('data-start')) {
              const r = document.createRange(); r.setStart(n, i); r.setEnd(n, i + words.length);
              const b = r.getBoundingClientRect();
              return {x0: b.left, x1: b.right, y: b.top + b.height / 2};
            }
          }
          return null;
        }""", words)
    assert box, f"{words!r} not found in the note"
    page.mouse.move(box["x0"] + 1, box["y"])
    page.mouse.down()
    page.mouse.move(box["x1"] - 1, box["y"], steps=8)
    page.mouse.up()


def test_review_browser_keyboard_workflow(server, browser):
    from click.testing import CliRunner

    from flagger.cli import main

    base = server["base"]
    ARTIFACTS.mkdir(exist_ok=True)
    ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = ctx.new_page()
    outbound = []
    page.on("request", lambda r: outbound.append(r.url) if not r.url.startswith(base) else None)
    _login(page, base)
    assert page.locator("text=flagger never refers anyone").count() == 1
    assert page.locator("text=contact the MASH on 0100 000 0000").count() == 1
    page.screenshot(path=str(ARTIFACTS / "review-queue.png"), full_page=True)

    # Queue, keyboard only: j selects the first row (highest level, newest: n-003), Enter opens it.
    page.keyboard.press("j")
    assert page.evaluate("document.activeElement.textContent") == "n-003"
    page.keyboard.press("j")
    page.keyboard.press("k")
    assert page.evaluate("document.activeElement.textContent") == "n-003"
    page.keyboard.press("Enter")
    page.wait_for_url("**/review/notes/*")
    assert page.locator("mark.ev", has_text="taken to a hotel").count() == 1
    assert page.locator(".tag", has_text="[cse · high]").count() >= 1  # a text label, not colour alone

    # Help overlay.
    page.keyboard.press("?")
    assert page.locator("#help").is_visible()
    page.keyboard.press("Escape")
    assert not page.locator("#help").is_visible()

    # c confirms the selected concern.
    page.keyboard.press("c")
    page.wait_for_selector("[role=status].ok:has-text('Confirmed: Child sexual exploitation')", timeout=5000)

    # j on the last concern goes to the next note in the queue (n-001); r goes to the reason list.
    page.keyboard.press("j")
    page.wait_for_selector("h1:has-text('Note n-001')")
    page.screenshot(path=str(ARTIFACTS / "review-note.png"), full_page=True)
    page.keyboard.press("r")
    assert page.evaluate("document.activeElement.name") == "reason"
    page.locator(":focus").select_option("not_about_child")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Reject suggestion"
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Rejected: County lines")

    # A concern the flagger missed: select the words with the mouse and add it.
    _select_words(page, "on Friday")
    start = int(page.input_value("#add-start"))
    end = int(page.input_value("#add-end"))
    assert "Friday" in page.text_content("#sel-preview")
    page.select_option("#add-category", "emotional_abuse")
    page.fill("#add-comment", "came home frightened")
    page.click("text=Add concern")
    page.wait_for_selector("text=Added a emotional_abuse concern")
    note_id = int(page.url.split("/notes/")[1].split("?")[0])
    note = next(e for e in server["store"].case_timeline("C-100", _ann(server)) if e.note_id == note_id)
    added = next(s for s in note.suggestions if s.origin == "reviewer")
    text = server["store"].note_view(note_id, _ann(server), audit=False).text
    assert (added.evidence[0]["start"], added.evidence[0]["end"]) == (start, end)
    assert text[start:end].strip().startswith("on Frid") and added.evidence[0]["text"] == text[start:end]

    # The case timeline shows all three decisions.
    page.goto(f"{base}/review/cases/C-100")
    assert page.locator("svg.timeline").count() == 1
    assert page.locator("svg .mark.rejected").count() == 1
    assert page.locator("svg .mark.confirmed").count() >= 1
    rows = page.locator("table.timeline-list tbody tr").all_inner_texts()
    assert any("rejected" in r and "county_lines" in r for r in rows)
    assert any("emotional_abuse" in r and "added by reviewer" in r for r in rows)
    page.screenshot(path=str(ARTIFACTS / "review-case.png"), full_page=True)
    assert outbound == [], f"the page contacted {outbound}"
    ctx.close()

    # ... and in the audit export.
    out = ARTIFACTS / "audit-export.jsonl"
    res = CliRunner().invoke(main, ["audit", "export", "--user", "ann", "--db", server["url"], "-o", str(out)])
    assert res.exit_code == 0, res.output
    events = [json.loads(line) for line in out.read_text().splitlines()]
    actions = [e["action"] for e in events]
    for a in ["login", "view_note", "decide", "add_concern", "view_case"]:
        assert a in actions
    decided = [e["details"]["decision"] for e in events if e["action"] == "decide"]
    assert decided == ["confirm", "reject"]
    assert "on Friday" not in out.read_text() and "came home frightened" not in out.read_text()


def _ann(server):
    return server["store"].viewer_for_user("ann")


def test_review_browser_decision_controls_are_accessible(server, browser):
    """Tab through a note view: every decision control gets focus, has a name and a visible outline."""
    base = server["base"]
    ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = ctx.new_page()
    _login(page, base)
    note_id = server["store"].queue(_ann(server), case_id="C-100", category="cse").items[0].note_id
    page.goto(f"{base}/review/notes/{note_id}")
    seen = {}
    for _ in range(120):
        page.keyboard.press("Tab")
        info = page.evaluate(
            """() => {
              const el = document.activeElement;
              const cs = getComputedStyle(el);
              let name = el.getAttribute('aria-label') || '';
              if (!name && el.labels && el.labels.length) name = el.labels[0].textContent;
              if (!name) name = el.textContent;
              return {key: (el.closest('form') ? el.closest('form').getAttribute('action') : '') + '|' +
                           el.tagName + '|' + (el.name || '') + '|' + (el.value || '') ,
                      name: (name || '').trim(), tag: el.tagName, decide: !!el.closest('[data-decide-form]'),
                      outline: cs.outlineStyle, width: parseFloat(cs.outlineWidth)};
            }""")
        if info["key"] in seen:
            if info["tag"] == "BODY":
                break
            continue
        seen[info["key"]] = info
    decide = [i for i in seen.values() if i["decide"]]
    kinds = {(i["tag"], i["key"].split("|")[2]) for i in decide}
    for expected in [("TEXTAREA", "comment"), ("BUTTON", "action"), ("SELECT", "reason"),
                     ("SELECT", "new_category"), ("SELECT", "new_level")]:
        assert expected in kinds, f"{expected} never got focus: {sorted(kinds)}"
    assert len([i for i in decide if i["tag"] == "BUTTON"]) >= 3 * 2  # confirm, reject, change per concern
    for i in decide:
        assert i["name"], f"{i['key']} has no accessible name"
        assert i["outline"] != "none" and i["width"] >= 2, f"{i['key']} has no visible focus outline"
    add = [i for i in seen.values() if "/concerns" in i["key"]]
    assert {i["key"].split("|")[2] for i in add} >= {"start", "end", "category", "level", "comment"}
    assert all(i["name"] for i in add)
    ctx.close()
