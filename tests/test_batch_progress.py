"""Progress lines and the summary: counts and rates only."""

from __future__ import annotations

import io

import pytest

from flagger.batch import Progress, ScanStats


class _Tty(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("stream_cls,total,expected", [
    (io.StringIO, 100, "flagger: scanned 10/100 notes (10.0%),"),
    (io.StringIO, None, "flagger: scanned 10 notes,"),
    (_Tty, 100, "\r\x1b[Kscanned 10/100 notes (10.0%),"),
])
def test_batch_progress_lines(stream_cls, total, expected):
    s = stream_cls()
    p = Progress(total, stream=s, interval=0)
    p.update(10)
    assert s.getvalue().startswith(expected)
    assert "notes/s" in s.getvalue()


def test_batch_progress_quiet_writes_nothing():
    s = io.StringIO()
    p = Progress(100, stream=s, quiet=True, interval=0)
    p.update(50)
    p.close()
    assert s.getvalue() == ""


@pytest.mark.parametrize("stats,expected", [
    (("scanned", (("missing", "high"), ("cse", "low")), None, "2025-01", "east", "sw", 12, None),
     ["1 records", "1 flagged", "missing: 1 (high 1)", "cse: 1 (low 1)"]),
    (("error", (), ("E202", "line is not valid JSON (x at column 3)", 7), None, None, None, 0, None),
     ["0 scanned", "1 in error", "line 7: line is not valid JSON"]),
])
def test_batch_summary_counts(stats, expected):
    st = ScanStats(seconds=1.0)
    st.add(stats)
    text = st.summary()
    for e in expected:
        assert e in text


def test_batch_stats_round_trip_through_checkpoint():
    st = ScanStats()
    st.add(("scanned", (("missing", "high"),), None, "2025-01", "east", "sw", 12, None))
    again = ScanStats.from_dict(st.to_dict())
    again.add(("scanned", (), None, "2025-01", "east", "sw", 3, None))
    assert (again.records, again.flagged, again.by_month["2025-01"], again.words) == (2, 1, [2, 1], 15)
