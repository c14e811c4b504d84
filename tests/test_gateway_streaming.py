"""The SSE relay's pieces: cutting bytes into events, and what the filter keeps, drops and reads."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from wavefleet.gateway.streaming import TAIL_BYTES, SseSplitter, StreamState, usage_in


def event(payload: object) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


CONTENT = [event({"choices": [{"index": 0, "delta": {"content": f"t{i}"}}]}) for i in range(5)]
USAGE = event({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}})
STREAM = b"".join(CONTENT) + USAGE + b"data: [DONE]\n\n"


@given(st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), max_size=12))
def test_events_come_out_whole_wherever_the_chunks_are_cut(cuts: list[int]) -> None:
    splitter, out = SseSplitter(), b""
    edges = [0, *sorted(set(cuts)), len(STREAM)]
    for start, end in zip(edges, edges[1:], strict=False):
        piece = splitter.feed(STREAM[start:end])
        assert piece == b"" or piece.endswith(b"\n\n")
        out += piece
    assert out + splitter.flush() == STREAM


def test_crlf_framing_is_normalised_even_split_between_chunks() -> None:
    splitter = SseSplitter()
    first = splitter.feed(b"data: 1\r\n\r")
    second = splitter.feed(b"\ndata: 2\r\n\r\n")
    assert (first, second) == (b"", b"data: 1\n\ndata: 2\n\n")


def test_the_injected_usage_chunk_is_read_then_dropped() -> None:
    state = StreamState(strip_usage=True)
    out = state.filter(STREAM, now=1.0)
    assert out == b"".join(CONTENT) + b"data: [DONE]\n\n"
    assert state.usage == (3, 5) and state.done and state.chunks == 1


def test_usage_is_kept_when_the_client_asked_for_it() -> None:
    state = StreamState(strip_usage=False)
    assert state.filter(STREAM, now=1.0) == STREAM
    assert state.usage == (3, 5)


def test_pings_are_dropped_and_errors_noticed() -> None:
    state = StreamState(strip_usage=False)
    error = event({"error": {"message": "boom"}})
    out = state.filter(b": ping\n\n" + CONTENT[0] + b": keep-alive\n\n" + error, now=1.0)
    assert out == CONTENT[0] + error
    assert state.error == error[:-2]


def test_a_ping_before_data_in_one_event_keeps_the_data() -> None:
    state = StreamState(strip_usage=False)
    assert state.filter(b": ping\ndata: {}\n\n", now=1.0) == b"data: {}\n\n"


def test_gaps_are_timed_between_chunks_that_carry_data() -> None:
    state = StreamState(strip_usage=True)
    state.filter(CONTENT[0] + CONTENT[1], now=1.0)  # the first chunk: TTFT
    state.filter(b": ping\n\n", now=1.2)  # only a ping: no gap
    state.filter(CONTENT[2], now=1.5)
    state.filter(CONTENT[3] + CONTENT[4] + USAGE, now=2.0)
    state.filter(b"data: [DONE]\n\n", now=2.1)  # only [DONE]: no gap
    assert state.first_event_at == 1.0
    assert state.gaps == [0.5, 0.5]
    assert state.chunks == 3 and state.done


def test_usage_is_found_in_the_tail_of_a_big_chunk() -> None:
    many = b"".join(CONTENT * 200)
    assert len(many) > TAIL_BYTES
    state = StreamState(strip_usage=True)
    assert state.filter(many + USAGE + b"data: [DONE]\n\n", now=1.0) == many + b"data: [DONE]\n\n"
    assert state.usage == (3, 5)


def test_usage_reading_tolerates_order_spacing_and_nesting() -> None:
    body = b'{"usage": {"completion_tokens": 9, "prompt_tokens_details": {"cached_tokens": 2}, "prompt_tokens": 4}}'
    assert usage_in(body) == (4, 9)
    assert usage_in(b'{"usage": null}') is None


def test_events_are_counted_in_small_chunks_and_estimated_in_large_ones() -> None:
    from wavefleet.gateway.streaming import TAIL_BYTES, SseSplitter, StreamState

    def event(i: int) -> bytes:
        return b'data: {"choices":[{"index":0,"delta":{"content":"tok%d "},"finish_reason":null}]}\n\n' % i

    small = StreamState(strip_usage=False)
    for i in range(40):  # one event a chunk, as engines send them
        small.filter(SseSplitter().feed(event(i)), float(i))
    assert small.events == 40
    big = StreamState(strip_usage=False)
    chunk = b"".join(event(i) for i in range(300))
    assert len(chunk) > 4 * TAIL_BYTES
    big.filter(chunk, 0.0)
    assert abs(big.events - 300) <= 300 * 0.05  # scaled from the chunk's tail: within 5 %
