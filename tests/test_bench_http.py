"""The client's SSE accounting, fed real byte streams split at awkward places."""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import threading
import time
from time import perf_counter

import pytest

from wavefleet.bench.http import ConnectionPool, Endpoint, Exchange
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


class CountingServer:
    """A raw HTTP/1.1 keep-alive server on loopback, in its own thread and event loop.

    It counts every request it reads in full. A body containing `hold` gets no answer (no
    header either) until the client goes away, as a gateway holds its header until the engine's
    first event. Otherwise it streams a short chunked SSE answer; with `close_after_answer` it
    then closes the connection without saying so (an idle keep-alive timeout at its quickest),
    and with `drop_second` it reads a connection's second request and closes unanswered.
    """

    def __init__(self, *, close_after_answer: bool = False, drop_second: bool = False) -> None:
        self.close_after_answer, self.drop_second = close_after_answer, drop_second
        self.requests = 0
        self.connections = 0
        self.open_handlers = 0
        self.closed_after_answer = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.answer = stream(compact=True, texts=["a", "b"])

    def __enter__(self) -> CountingServer:
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self.handle, "127.0.0.1", 0), self.loop
        ).result(10)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1/chat/completions"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_handlers += 1
        try:
            served = 0
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    body = await reader.readexactly(length)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.requests += 1
                served += 1
                if b"hold" in body:
                    with contextlib.suppress(ConnectionError):
                        await reader.read(1)  # returns at EOF: the client gave up
                    return
                if self.drop_second and served == 2:
                    return
                chunk = b"%x\r\n%s\r\n0\r\n\r\n" % (len(self.answer), self.answer)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n" + chunk
                )
                await writer.drain()
                if self.close_after_answer:
                    writer.close()
                    await writer.wait_closed()
                    self.closed_after_answer.set()
                    return
        finally:
            writer.close()
            self.open_handlers -= 1

    def settle(self) -> None:
        """Wait until every connection the client opened has been read to its end."""
        deadline = time.monotonic() + 10
        while self.open_handlers and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.open_handlers == 0, "the server still has connections open"


async def exchange(pool: ConnectionPool, body: bytes, index: int, timeout_s: float = 5) -> RequestRecord:
    record = RequestRecord(index=index, level="test", scheduled=perf_counter())
    await pool.exchange(body, Exchange(record, keep_text=False), timeout_s=timeout_s)
    return record


@pytest.mark.parametrize("pooled_first", [False, True], ids=["fresh", "reused"])
def test_a_request_held_past_the_timeout_is_sent_once_and_fails_as_a_timeout(pooled_first: bool) -> None:
    async def main(url: str) -> list[RequestRecord]:
        pool = ConnectionPool(Endpoint(url))
        records = []
        if pooled_first:  # a quick answer first, so the slow requests go out on a pooled connection
            records.append(await exchange(pool, b'{"say": "quick"}', 0))
            assert records[0].ok and pool.idle, records[0].error
        for index in range(1, 4):
            records.append(await exchange(pool, b'{"say": "hold"}', index, timeout_s=0.3))
            if pooled_first and index < 3:  # pool a fresh connection again before the next slow one
                records.append(await exchange(pool, b'{"say": "quick"}', 10 + index))
        pool.close()
        return records

    with CountingServer() as server:
        records = asyncio.run(main(server.url))
        server.settle()
        assert server.requests == len(records)  # each request reached the server exactly once
    slow = [r for r in records if 1 <= r.index < 10]
    assert [r.failure for r in slow] == ["timeout"] * 3
    assert all("0.3 s" in r.error and r.ttft is None for r in slow)
    assert all(r.ok for r in records if r not in slow)


def test_a_request_the_server_read_and_dropped_is_not_sent_again() -> None:
    """A server that reads a request and closes without answering may have acted on it."""

    async def main(url: str) -> list[RequestRecord]:
        pool = ConnectionPool(Endpoint(url))
        records = [await exchange(pool, b"{}", index) for index in range(4)]
        pool.close()
        return records

    with CountingServer(drop_second=True) as server:
        records = asyncio.run(main(server.url))
        server.settle()
        assert server.requests == 4
    # fresh, then reused and dropped, then fresh again (the dropped connection is gone), ...
    assert [r.failure for r in records] == ["", "disconnect", "", "disconnect"]
    assert "closed before the response ended" in records[1].error


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_pooled_connection_the_server_closed_while_idle_is_not_written_to(loop: str) -> None:
    """The FIN of a kept-alive connection sits unread when the next request goes out.

    The client's event loop is kept from reading it (the test blocks the loop until the server
    has closed, then until the FIN is in the socket), as happens when a closed-loop worker sends
    its next request in the instant after the last answer ended.
    """

    async def main(server: CountingServer) -> list[RequestRecord]:
        pool = ConnectionPool(Endpoint(server.url))
        first = await exchange(pool, b"{}", 0)
        assert first.ok and len(pool.idle) == 1, first.error
        assert server.closed_after_answer.wait(10)  # blocks this loop on purpose
        sock = pool.idle[0].transport.get_extra_info("socket")  # type: ignore[union-attr]
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        deadline = time.monotonic() + 10
        while not poller.poll(10) and time.monotonic() < deadline:
            pass  # the FIN is on its way through loopback
        second = await exchange(pool, b"{}", 1)
        pool.close()
        return [first, second]

    factory = None if loop == "asyncio" else pytest.importorskip("uvloop").new_event_loop
    with CountingServer(close_after_answer=True) as server, asyncio.Runner(loop_factory=factory) as runner:
        records = runner.run(main(server))
        server.settle()
        assert server.requests == 2 and server.connections == 2
    assert [r.error for r in records] == ["", ""]
