"""StreamCapture: the exact accounting behind the output caps, whatever the chunking."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from runjournal.journal import events as ev
from runjournal.runner import StreamCapture


def outputs_in_chunks():
    """Some output, and the sizes of the reads it arrives in."""
    return st.binary(max_size=3000).flatmap(
        lambda data: st.tuples(st.just(data), st.lists(st.integers(1, 700), min_size=1, max_size=20))
    )


def chunked(data: bytes, sizes: list[int]) -> list[bytes]:
    out, at, i = [], 0, 0
    while at < len(data):
        n = sizes[i % len(sizes)]
        out.append(data[at : at + n])
        at, i = at + n, i + 1
    return out


@given(outputs_in_chunks(), st.integers(2, 1200))
def test_head_live_tail_kept_middle_counted(case, cap):
    data, sizes = case
    capture = StreamCapture(1, "stdout", cap, excerpt=100)
    live = b"".join(capture.feed(chunk) for chunk in chunked(data, sizes))
    head = cap // 2
    assert live == data[:head]
    assert capture.total == len(data)
    end = capture.finish()
    if len(data) <= cap:
        assert capture.dropped == 0
        assert live + b"".join(e.data for e in end) == data
    else:
        [truncated] = end
        assert isinstance(truncated, ev.OutputTruncated)
        tail = cap - head
        assert truncated.tail == data[-tail:]
        assert (truncated.kept_head_bytes, truncated.kept_tail_bytes) == (head, tail)
        assert truncated.dropped_bytes == len(data) - cap == capture.dropped
        assert truncated.total_bytes == len(data)


@given(st.text(max_size=400), st.integers(1, 64))
def test_the_excerpt_is_the_end_cut_on_a_character_boundary(text, excerpt):
    data = text.encode()
    capture = StreamCapture(1, "stderr", 256, excerpt)
    for i in range(0, len(data), 7):
        capture.feed(data[i : i + 7])
    got = capture.excerpt()
    assert len(got.encode()) <= excerpt
    assert text.endswith(got)
    assert len(got.encode()) > excerpt - 4 or len(data) <= excerpt  # at most one split character is lost


def test_first_line_is_the_first_non_blank_one():
    capture = StreamCapture(1, "stdout", 1024, 100)
    capture.feed(b"\n   \n  hello there  \nsecond\n")
    assert capture.first_line() == "hello there"


def test_binary_output_gives_no_summary_line():
    capture = StreamCapture(1, "stdout", 1024, 100)
    capture.feed(b"\x00\x00\x01\x1b\n\x00 \x07 build\x00 ok \n")
    assert capture.first_line() == "build ok"
    binary = StreamCapture(1, "stdout", 1024, 100)
    binary.feed(b"\x00" * 600)
    assert binary.first_line() == ""
