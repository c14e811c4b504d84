"""Triton's generate extension: OpenAI chat/completions in, `generate` / `generate_stream` out, and back.

    POST v2/models/{model}/generate         {"text_input": ..., "parameters": {...}}
      -> {"model_name": ..., "model_version": ..., "text_output": ...}
    POST v2/models/{model}/generate_stream  same request, SSE events of that shape

Chat messages are flattened to plain text ("role: content" lines, then "assistant:"), since
the generate extension takes raw text and applies no chat template. Streamed `text_output` is
taken as the new text of each step (TensorRT-LLM's behaviour with streaming on). Triton fixes
the status with its first event, so an `{"error": ...}` event can come after a 200: it is
passed on as an OpenAI in-band error. Triton reports no token counts: replies carry no usage.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from wavefleet.errors import BadRequestError
from wavefleet.gateway.backends.base import Backend, BackendReply, BackendRequest
from wavefleet.gateway.backends.openai import HttpReply, translate_client_error
from wavefleet.gateway.config import BackendConfig
from wavefleet.gateway.streaming import SseSplitter
from wavefleet.wire import DONE, Answer, error_body, sse_event

__all__ = ["TritonBackend", "chat_prompt", "triton_request"]

_PASSED_PARAMETERS = ("max_tokens", "temperature", "top_p")


def chat_prompt(messages: list[Any]) -> str:
    """OpenAI chat messages as one plain-text prompt for an engine without a chat template."""
    lines = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, list):  # content parts: keep the text ones
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        lines.append(f"{message.get('role', 'user')}: {content or ''}")
    lines.append("assistant:")
    return "\n".join(lines)


def triton_request(request: BackendRequest) -> dict[str, Any]:
    """The generate extension's request body for an OpenAI chat or completions request."""
    body = request.body
    if request.endpoint == "chat/completions":
        text = chat_prompt(body.get("messages") or [])
    elif request.endpoint == "completions":
        prompt = body.get("prompt", "")
        text = prompt if isinstance(prompt, str) else "".join(str(p) for p in prompt)
    else:
        raise BadRequestError("Triton's generate extension serves no embeddings", param="model")
    parameters = {key: body[key] for key in _PASSED_PARAMETERS if body.get(key) is not None}
    parameters["stream"] = request.stream
    return {"text_input": text, "parameters": parameters}


class _Translator:
    """OpenAI bodies and chunks (`wavefleet.wire.Answer`) from Triton's `text_output`."""

    def __init__(self, request: BackendRequest) -> None:
        self.answer = Answer(str(request.body.get("model", "")), chat=request.endpoint == "chat/completions")
        self.started = False  # the assistant role rides on the first chunk with text

    def completion(self, text: str) -> dict[str, Any]:
        return self.answer.body(text)

    def chunk(self, text: str | None, finish: str | None = None) -> bytes:
        role = not self.started and text is not None
        self.started = self.started or role
        return sse_event(self.answer.chunk(text, finish, role=role))


def _triton_error_text(data: bytes) -> str:
    try:
        parsed = json.loads(data)
    except ValueError:
        return data[:200].decode(errors="replace")
    if isinstance(parsed, dict) and "error" in parsed:
        return str(parsed["error"])
    return data[:200].decode(errors="replace")


class TritonReply(BackendReply):
    """Triton's answer, read through the translator: OpenAI JSON or OpenAI SSE."""

    def __init__(self, upstream: HttpReply, translator: _Translator) -> None:
        self._upstream = upstream
        self._translator = translator
        self.status = upstream.status
        self.streaming = upstream.streaming and upstream.status == 200
        self.content_type = "text/event-stream" if self.streaming else "application/json"

    async def read(self) -> bytes:
        data = await self._upstream.read()
        if self.status != 200:
            body = error_body(f"Triton: {_triton_error_text(data)}", status=self.status)
        else:
            try:
                parsed = json.loads(data)
            except ValueError:
                return data  # garbage goes on as-is; the gateway answers 502 for it
            if isinstance(parsed, dict) and "error" in parsed:
                body = error_body(f"Triton: {parsed['error']}")
            elif isinstance(parsed, dict) and "text_output" in parsed:
                body = self._translator.completion(str(parsed["text_output"]))
            else:
                return data
        return json.dumps(body, separators=(",", ":")).encode()

    async def chunks(self) -> AsyncIterator[bytes]:
        splitter = SseSplitter()
        async for chunk in self._upstream.chunks():
            out = b"".join(self._event(event) for event in splitter.feed(chunk).split(b"\n\n"))
            if out:
                yield out
        out = b"".join(self._event(event) for event in splitter.flush().split(b"\n\n"))
        yield out + self._translator.chunk(None, "stop") + DONE

    def _event(self, event: bytes) -> bytes:
        if not event.startswith(b"data:"):
            return b""  # pings, comments and other fields
        try:
            parsed = json.loads(event[5:])
        except ValueError:
            return sse_event(error_body("Triton sent an event that is not JSON", status=502))
        if isinstance(parsed, dict) and "error" in parsed:
            return sse_event(error_body(f"Triton: {parsed['error']}"))
        if isinstance(parsed, dict) and "text_output" in parsed:
            return self._translator.chunk(str(parsed["text_output"]))
        return b""

    def close(self) -> None:
        self._upstream.close()


class TritonBackend(Backend):
    """A Triton server with the generate extension (TensorRT-LLM or vLLM backends)."""

    def __init__(self, config: BackendConfig, session: aiohttp.ClientSession) -> None:
        self.name = config.name
        self.config = config
        self._session = session
        self._base = str(config.url).rstrip("/")
        self._headers = {"Content-Type": "application/json"}

    async def send(self, request: BackendRequest) -> BackendReply:
        model = self.config.triton_model or str(request.body.get("model", ""))
        verb = "generate_stream" if request.stream else "generate"
        url = f"{self._base}/v2/models/{model}/{verb}"
        payload = json.dumps(triton_request(request)).encode()
        try:
            response = await self._session.post(url, data=payload, headers=self._headers)
        except aiohttp.ClientError as exc:
            raise translate_client_error(exc, self.name) from exc
        return TritonReply(HttpReply(response, self.name), _Translator(request))

    async def models(self) -> list[str]:
        try:
            async with self._session.post(
                f"{self._base}/v2/repository/index",
                json={"ready": True},
                timeout=aiohttp.ClientTimeout(total=5),
            ) as response:
                if response.status != 200:
                    return []
                index = json.loads(await response.read())
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return []
        if not isinstance(index, list):
            return []
        return [str(m["name"]) for m in index if isinstance(m, dict) and "name" in m]
