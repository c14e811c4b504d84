"""The client's SSE accounting, fed real byte streams split at awkward places."""

from __future__ import annotations

import json

import pytest

from wavefleet.bench.http import Exchange
from wavefleet.bench.records import RequestRecord


def stream(compact: bool, texts: list[str], usage: bool = True, completions: bool = False) -> bytes:
    separators = (",", ":") if compact else (", ", ": ")

    def event(body: object) -> bytes:
        return b"data: " + json.dumps(body, separators=separators).encode() + b"\n\n"

    if completions:
        parts = [event({"choices": [{"index": 0, "text": text}]}) for text in ["", *texts]]
    else:
        parts = [event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})]
        parts += [event({"choices": [{"index": 0, "delta": {"content": text}}]}) for text in texts]
    parts.append(event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    if usage:
        parts.append(event({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 42}}))
    return b"".join(parts) + b"data: [DONE]\n\n"


def feed(
    data: bytes, pieces: int, keep_text: bool = False, text_field: str = "content"
) -> tuple[RequestRecord, Exchange]:
    record = RequestRecord(0, "t", scheduled=0.0, sent=0.0, estimated_prompt_tokens=5)
    exchange = Exchange(record, keep_text, text_field)
    exchange.head(200, b"text/event-stream")
    size = -(-len(data) // pieces)
    for i in range(pieces):
        exchange.feed(data[i * size : (i + 1) * size], now=float(i + 1))
    exchange.complete(now=float(pieces + 1))
    return record, exchange


TEXTS = ["Hello", " wor", 'ld "quoted": ', "", "\u00e9t\u00e9", "!"]


@pytest.mark.parametrize("compact", [True, False])
@pytest.mark.parametrize("pieces", [1, 3, 17, 400])
@pytest.mark.parametrize("keep_text", [False, True])
@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_choices_chunks_usage_and_text_whatever_the_reads(
    compact: bool, pieces: int, keep_text: bool, endpoint: str
) -> None:
    completions = endpoint == "completions"
    data = stream(compact, TEXTS, completions=completions)
    record, exchange = feed(data, pieces, keep_text, "text" if completions else "content")
    assert record.ok, record.error
    assert len(record.chunk_times) == 1 + len(TEXTS) + 1  # role + contents + finish, not usage
    assert record.chunk_times == sorted(record.chunk_times)
    assert (record.prompt_tokens, record.output_tokens, record.tokens_from_usage) == (9, 42, True)
    assert record.text_chunks == 5  # the empty content chunks do not count
    if keep_text:
        assert "".join(exchange.text) == "".join(TEXTS)


def test_without_usage_output_tokens_are_text_chunks_and_crlf_framing_works() -> None:
    data = stream(True, ["a", "b", "c"], usage=False).replace(b"\n", b"\r\n")
    data = b": ping\r\n\r\n" + data
    record, _ = feed(data, 7)
    assert record.ok and len(record.chunk_times) == 5
    assert (record.output_tokens, record.prompt_tokens, record.tokens_from_usage) == (3, 5, False)


def test_error_event_after_200_fails_the_request() -> None:
    data = stream(True, ["a"], usage=False)[:-14] + b'data: {"error": {"message": "out of memory"}}\n\n'
    record, _ = feed(data, 2)
    assert not record.ok and "out of memory" in record.error
