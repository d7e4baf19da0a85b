// flagger review pages: keyboard shortcuts, selection offsets for missed concerns, help overlay.
// No network calls of its own: forms post to this server only.
(function () {
  "use strict";
  var help = document.getElementById("help");
  var lastFocus = null;

  function typing(el) {
    if (!el) return false;
    var t = el.tagName;
    return t === "INPUT" || t === "TEXTAREA" || t === "SELECT" || el.isContentEditable;
  }
  function openHelp() {
    if (!help) return;
    lastFocus = document.activeElement;
    help.hidden = false;
    var b = help.querySelector("[data-help-close]");
    if (b) b.focus();
  }
  function closeHelp() {
    if (!help || help.hidden) return;
    help.hidden = true;
    if (lastFocus && lastFocus.focus) lastFocus.focus();
  }
  document.querySelectorAll("[data-help-open]").forEach(function (b) { b.addEventListener("click", openHelp); });
  document.querySelectorAll("[data-help-close]").forEach(function (b) { b.addEventListener("click", closeHelp); });

  // --- queue page: j/k move between rows, Enter opens (links do that natively) ---
  var rows = Array.prototype.slice.call(document.querySelectorAll("tr[data-row]"));
  var rowIdx = -1;
  function selectRow(i) {
    if (!rows.length) return;
    rowIdx = Math.max(0, Math.min(rows.length - 1, i));
    rows.forEach(function (r, k) { r.classList.toggle("selected", k === rowIdx); });
    var a = rows[rowIdx].querySelector("[data-queue-link]");
    if (a) a.focus();
  }

  // --- note page: j/k move between concerns; c confirms; r goes to the reject reason ---
  var concerns = Array.prototype.slice.call(document.querySelectorAll("[data-concern]"));
  var cIdx = -1;
  function selectConcern(i) {
    if (!concerns.length) return;
    if (i >= concerns.length) { var nx = document.querySelector("[data-next-note]"); if (nx) { location.href = nx.href; } return; }
    if (i < 0) { var pv = document.querySelector("[data-prev-note]"); if (pv) { location.href = pv.href; } return; }
    cIdx = i;
    concerns.forEach(function (c, k) { c.classList.toggle("active", k === cIdx); });
    concerns[cIdx].focus();
    concerns[cIdx].scrollIntoView({block: "nearest"});
  }
  function currentConcern() {
    var el = document.activeElement && document.activeElement.closest && document.activeElement.closest("[data-concern]");
    if (el) return el;
    return cIdx >= 0 ? concerns[cIdx] : concerns[0];
  }
  if (concerns.length) {
    var hash = location.hash && document.getElementById(location.hash.slice(1));
    var start = hash ? concerns.indexOf(hash) : -1;
    var firstOpen = concerns.findIndex(function (c) { return c.querySelector("[data-confirm]"); });
    cIdx = start >= 0 ? start : (firstOpen >= 0 ? firstOpen : 0);
    concerns[cIdx].classList.add("active");
  }

  document.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape") { closeHelp(); return; }
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (typing(ev.target)) return;
    if (ev.key === "?") { ev.preventDefault(); if (help && !help.hidden) closeHelp(); else openHelp(); return; }
    if (help && !help.hidden) return;
    var k = ev.key;
    if (rows.length) {
      if (k === "j" || k === "n") { ev.preventDefault(); selectRow(rowIdx + 1); }
      else if (k === "k" || k === "p") { ev.preventDefault(); selectRow(rowIdx - 1); }
      return;
    }
    if (!concerns.length) return;
    if (k === "j" || k === "n") { ev.preventDefault(); selectConcern(concerns.indexOf(currentConcern()) + 1); }
    else if (k === "k" || k === "p") { ev.preventDefault(); selectConcern(concerns.indexOf(currentConcern()) - 1); }
    else if (k === "c") {
      var b = currentConcern().querySelector("[data-confirm]");
      if (b) { ev.preventDefault(); b.click(); }
    } else if (k === "r") {
      var s = currentConcern().querySelector("[data-reason]");
      if (s) { ev.preventDefault(); s.focus(); }
    }
  });

  // Rejecting needs a reason: say so before the round trip.
  document.querySelectorAll("[data-reject]").forEach(function (b) {
    b.addEventListener("click", function (ev) {
      var sel = b.form.querySelector("[data-reason]");
      if (sel && !sel.value) { ev.preventDefault(); sel.setAttribute("aria-invalid", "true"); sel.focus(); }
    });
  });

  // --- selection offsets: every stretch of note text sits in an element with data-start ---
  var noteEl = document.getElementById("notetext");
  var startIn = document.getElementById("add-start"), endIn = document.getElementById("add-end");
  var preview = document.getElementById("sel-preview");
  function segOf(node) {
    var el = node.nodeType === 3 ? node.parentElement : node;
    return el && el.closest ? el.closest("[data-start]") : null;
  }
  function offsetIn(node, off) {
    var seg = segOf(node);
    if (!seg || !noteEl.contains(seg)) return null;
    var r = document.createRange();
    r.setStart(seg, 0);
    r.setEnd(node, off);
    return parseInt(seg.getAttribute("data-start"), 10) + r.toString().length;
  }
  function onSelect() {
    var sel = window.getSelection();
    if (!sel || sel.rangeCount === 0 || sel.isCollapsed) return;
    var rg = sel.getRangeAt(0);
    if (!noteEl.contains(rg.startContainer) || !noteEl.contains(rg.endContainer)) return;
    var a = offsetIn(rg.startContainer, rg.startOffset), b = offsetIn(rg.endContainer, rg.endOffset);
    if (a === null || b === null) { preview.textContent = "Select within the note's words (not a label)."; return; }
    if (b < a) { var t = a; a = b; b = t; }
    if (a === b) return;
    startIn.value = a; endIn.value = b;
    preview.textContent = "Selected characters " + a + " to " + b + ": \u201c" + sel.toString() + "\u201d";
  }
  if (noteEl && startIn) {
    noteEl.addEventListener("mouseup", onSelect);
    noteEl.addEventListener("keyup", onSelect);
    document.addEventListener("selectionchange", function () {
      var sel = window.getSelection();
      if (sel && !sel.isCollapsed && noteEl.contains(sel.anchorNode)) onSelect();
    });
  }

  // --- copy buttons (chronology draft) ---
  document.querySelectorAll("[data-copy]").forEach(function (b) {
    b.addEventListener("click", function () {
      var ta = document.querySelector(b.getAttribute("data-copy"));
      ta.select();
      var done = b.parentElement.querySelector(".copied");
      var say = function (m) { if (done) done.textContent = m; };
      if (navigator.clipboard) navigator.clipboard.writeText(ta.value).then(function () { say("Copied."); }, function () { say("Select and copy with Ctrl+C."); });
      else say("Select and copy with Ctrl+C.");
    });
  });
})();
