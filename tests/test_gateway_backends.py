"""The backend contract: the in-process fake through the whole app, and Triton's translation."""

from __future__ import annotations

import json
import urllib.request

from wavefleet.gateway.app import create_app
from wavefleet.gateway.backends import BackendRequest, FakeBackend, FakeReply, echo
from wavefleet.gateway.backends.fake_servers import serve_in_thread
from wavefleet.gateway.backends.triton import chat_prompt, triton_request
from wavefleet.gateway.config import GatewayConfig


def ask(url: str, body: dict[str, object]) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        f"{url}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=20) as reply:
        return reply.status, dict(reply.headers), reply.read()


def test_fake_backends_serve_through_the_app_with_served_names() -> None:
    fast = FakeBackend("fast", echo, models=["small"])
    config = GatewayConfig.model_validate(
        {"backends": [{"name": "fast", "url": "http://unused:1"}], "aliases": {"quick": "small"}}
    )
    app = create_app(config, backends={"fast": fast})
    with serve_in_thread(app) as server:
        status, headers, body = ask(
            server.url, {"model": "quick", "messages": [{"role": "user", "content": "ping me"}]}
        )
        _, _, stream = ask(
            server.url, {"model": "small", "messages": [{"role": "user", "content": "a b"}], "stream": True}
        )
    assert (status, headers["x-wave-backend"]) == (200, "fast")
    assert json.loads(body)["choices"][0]["message"]["content"] == "ping me"
    first, second = fast.requests
    assert first.body["model"] == "small" and json.loads(first.raw)["model"] == "small"  # the alias resolved
    assert second.stream and json.loads(second.raw)["stream_options"] == {"include_usage": True}
    assert stream.endswith(b"data: [DONE]\n\n") and b'"usage"' not in stream
    assert fast.closed  # the app closed its backends on shutdown


def test_fake_reply_failures_reach_the_client_as_openai_errors() -> None:
    def broken(request: BackendRequest) -> FakeReply:
        return FakeReply(200, b"<html>")

    config = GatewayConfig.model_validate(
        {"backends": [{"name": "x", "url": "http://unused:1"}], "retries": 0}
    )
    with serve_in_thread(create_app(config, backends={"x": FakeBackend("x", broken)})) as server:
        request = urllib.request.Request(
            f"{server.url}/v1/chat/completions",
            data=json.dumps({"model": "any", "messages": [{"role": "user", "content": "hi"}]}).encode(),
        )
        try:
            urllib.request.urlopen(request, timeout=20)
            raise AssertionError("expected an HTTP error")
        except urllib.error.HTTPError as exc:
            status, error = exc.code, json.loads(exc.read())["error"]
    assert status == 502 and error["code"] == "upstream_error"


def test_chat_messages_flatten_to_plain_text_for_triton() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "image_url", "image_url": {}}]},
    ]
    assert chat_prompt(messages) == "system: Be brief.\nuser: Hi\nassistant:"


def test_triton_request_passes_only_the_generate_parameters() -> None:
    body = {"model": "m", "prompt": "Once", "max_tokens": 8, "temperature": 0.2, "seed": 7, "stream": True}
    translated = triton_request(BackendRequest(endpoint="completions", body=body, raw=b"", stream=True))
    assert translated == {
        "text_input": "Once",
        "parameters": {"max_tokens": 8, "temperature": 0.2, "stream": True},
    }


def test_an_engine_that_drops_kept_alive_connections_still_answers_every_request() -> None:
    """llama-server (cpp-httplib) may close a pooled connection instead of answering on it.

    This engine answers one request per connection and drops the connection when a second
    request arrives on it, without a byte of answer: the backend resends on a fresh connection.
    """
    import asyncio

    import aiohttp

    from wavefleet.gateway.backends.openai import OpenAIBackend
    from wavefleet.gateway.config import BackendConfig

    answer = json.dumps({"object": "chat.completion", "choices": []}).encode()
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(answer), answer)
        )
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")  # a second request on this connection: drop it
        writer.close()

    async def main() -> list[int]:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        statuses = []
        async with aiohttp.ClientSession() as session:
            backend = OpenAIBackend(BackendConfig(name="e", url=f"http://127.0.0.1:{port}"), session)
            for _ in range(4):
                reply = await backend.send(BackendRequest(endpoint="chat/completions", body={}, raw=b"{}"))
                await reply.read()
                reply.close()
                statuses.append(reply.status)
        server.close()
        return statuses

    assert asyncio.run(main()) == [200, 200, 200, 200]
    assert connections >= 4
