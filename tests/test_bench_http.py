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


def test_a_kept_alive_connection_the_server_dropped_is_retried_on_a_fresh_one() -> None:
    """cpp-httplib (llama-server) may close a kept-alive connection instead of answering on it.

    This server answers one request per connection, then drops the connection when a second
    request arrives on it, with no byte of answer and no `Connection: close` beforehand.
    """
    import asyncio

    from wavefleet.bench.http import ConnectionPool, Endpoint

    answer = stream(compact=True, texts=["a", "b"])
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        chunk = b"%x\r\n%s\r\n0\r\n\r\n" % (len(answer), answer)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunk
        )
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")  # the next request on this connection: drop it unanswered
        writer.close()

    async def main() -> list[RequestRecord]:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = ConnectionPool(Endpoint(f"http://127.0.0.1:{port}/v1/chat/completions"))
        records = []
        for index in range(4):
            record = RequestRecord(index=index, level="test", scheduled=0.0)
            await pool.exchange(b"{}", Exchange(record, keep_text=False), timeout_s=5)
            records.append(record)
        pool.close()
        server.close()
        await server.wait_closed()
        return records

    records = asyncio.run(main())
    assert [r.error for r in records] == [""] * 4
    assert all(r.output_tokens > 0 for r in records)
    assert connections >= 4  # every request after the first needed a fresh connection
