"""Rendering helpers give exactly what the journal's own formatting gives."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from runjournal.journal import iso_utc
from runjournal.projections import render

#: event times: nanoseconds from 1970 to 2100, and many within one second (what the cache holds)
event_times = st.one_of(st.integers(0, 4_102_444_800 * 10**9), st.integers(1_764_581_831 * 10**9, 1_764_581_832 * 10**9))


@given(ts=event_times)
def test_iso_is_iso_utc(ts):
    assert render.iso(ts) == iso_utc(ts)
    assert render.iso(ts) == iso_utc(ts)  # remembered, the same


def test_iso_forgets_at_its_bound(monkeypatch):
    monkeypatch.setattr(render, "ISO_CACHE", 3)
    monkeypatch.setattr(render, "_seconds", {})
    times = [(1_764_581_831 + n) * 10**9 + 576_000_000 for n in range(10)]
    assert [render.iso(ts) for ts in times] == [iso_utc(ts) for ts in times]
    assert len(render._seconds) <= 3
