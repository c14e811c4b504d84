"""One simulated engine on HTTP: the OpenAI API plus its dialect's own endpoints and metrics.

all        POST /v1/chat/completions, /v1/completions (stream or not; stream_options.include_usage)
           GET /v1/models, /health, /metrics
llama.cpp  GET /slots (?fail_on_no_slot=1), /props (total_slots)
SGLang     GET /v1/loads
Triton     POST /v2/models/{model}/generate, /generate_stream; GET /v2/health/{live,ready}
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from wavefleet.engines import EngineKind
from wavefleet.sim.dialects import CONTENT_TYPE, render_metrics
from wavefleet.sim.engine import RequestRejected, SimEngine, SimSequence
from wavefleet.sim.faults import FaultConfig, FaultInjector
from wavefleet.sim.profile import SimProfile
from wavefleet.sim.tokens import chat_prompt_text, encode, fake_words
from wavefleet.wire import DONE, Answer, Fault, error_body, model_card, model_list, sse_event, token_usage

__all__ = ["SimServer"]

_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_MID_ANSWER = (Fault.CUT, Fault.IN_BAND_ERROR)  # faults that strike after some tokens


class _BadRequest(Exception):
    def __init__(self, message: str, status: int = 400, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.status, self.code = status, code


@dataclass
class _Parsed:
    prompt: list[int]
    max_tokens: int
    stream: bool
    include_usage: bool
    ignore_eos: bool


class SimServer:
    """A simulated engine served over HTTP. `await start()` returns its base URL."""

    def __init__(
        self,
        profile: SimProfile,
        *,
        speed: float = 1.0,
        seed: int = 0,
        faults: FaultConfig | None = None,
    ) -> None:
        self.profile = profile
        self.engine = SimEngine(profile, speed=speed, seed=seed)
        self.faults = FaultInjector(faults or FaultConfig(), random.Random(seed + 1))
        self._words = random.Random(seed + 2)
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.app = self._build_app()

    def _build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        dialect = self.profile.dialect
        if dialect is EngineKind.LLAMACPP:
            app.router.add_get("/slots", self._slots)
            app.router.add_get("/props", self._props)
        elif dialect is EngineKind.SGLANG:
            app.router.add_get("/v1/loads", self._loads)
        elif dialect is EngineKind.TRITON:
            app.router.add_post("/v2/models/{model}/generate", self._triton_generate)
            app.router.add_post("/v2/models/{model}/generate_stream", self._triton_generate)
            app.router.add_get("/v2/health/live", self._health)
            app.router.add_get("/v2/health/ready", self._health)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        await self.engine.start()
        # handler_cancellation: a client that disconnects cancels its handler, which aborts the
        # sequence in the engine, as real engines abort on disconnect.
        self._runner = web.AppRunner(
            self.app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_port = self._runner.addresses[0][1]
        self.url = f"http://{host}:{bound_port}"
        return self.url

    async def close(self) -> None:
        await self.engine.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- plain endpoints ------------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        if not self.engine.healthy:
            return _unavailable("engine dead")
        if self.profile.dialect is EngineKind.LLAMACPP:
            return web.json_response({"status": "ok"})
        return web.Response(status=200)

    async def _models(self, request: web.Request) -> web.Response:
        card = model_card(
            self.profile.model,
            owned_by="wavefleet-sim",
            created=int(time.time()),
            max_model_len=self.profile.max_model_len,
        )
        return web.json_response(model_list([card]))

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=render_metrics(self.engine), headers={"Content-Type": CONTENT_TYPE})

    async def _slots(self, request: web.Request) -> web.Response:
        engine, profile = self.engine, self.profile
        by_slot = {seq.slot: seq for seq in engine.running}
        if request.query.get("fail_on_no_slot") == "1" and len(by_slot) >= profile.max_num_seqs:
            return _unavailable("no slot available")
        n_ctx = profile.kv_capacity_tokens // profile.max_num_seqs
        slots = []
        for slot in range(profile.max_num_seqs):
            seq = by_slot.get(slot)
            slots.append(
                {
                    "id": slot,
                    "id_task": seq.id if seq else -1,
                    "n_ctx": n_ctx,
                    "is_processing": seq is not None,
                    "next_token": {
                        "has_next_token": seq is not None,
                        "n_decoded": seq.generated if seq else 0,
                        "n_remain": (seq.target_tokens - seq.generated) if seq else -1,
                    },
                }
            )
        return web.json_response(slots)

    async def _props(self, request: web.Request) -> web.Response:
        profile = self.profile
        n_ctx = profile.kv_capacity_tokens // profile.max_num_seqs
        return web.json_response(
            {
                "total_slots": profile.max_num_seqs,
                "model_path": f"simulated/{profile.model}.gguf",
                "default_generation_settings": {"n_ctx": n_ctx},
                "is_sleeping": False,
            }
        )

    async def _loads(self, request: web.Request) -> web.Response:
        engine = self.engine
        load = {
            "dp_rank": 0,
            "num_reqs": engine.num_running,
            "num_waiting_reqs": engine.num_waiting,
            "num_tokens": engine.kv_used_tokens,
        }
        return web.json_response({"loads": [load]})

    # -- the OpenAI API -------------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._openai(request, chat=True)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._openai(request, chat=False)

    async def _openai(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        try:
            body = await _json_body(request)
            parsed = self._parse_openai(body, chat=chat)
        except _BadRequest as exc:
            return _openai_error(str(exc), exc.status, exc.code)
        fault = self.faults.draw()
        if fault is Fault.ERROR or (fault is Fault.IN_BAND_ERROR and not parsed.stream):
            self.engine.stats.failed += 1
            return _openai_error("simulated engine failure (fault injection)", 500, "internal_error")
        if fault is Fault.HANG:
            await asyncio.Event().wait()  # never set: the client times out or goes away
        try:
            seq = self.engine.submit(parsed.prompt, parsed.max_tokens, ignore_eos=parsed.ignore_eos)
        except RequestRejected as exc:
            return _openai_error(str(exc), 400, "context_length_exceeded")
        cut_after = self.faults.cut_after(seq.target_tokens) if fault in _MID_ANSWER else None
        try:
            if parsed.stream:
                try:
                    return await self._stream_openai(
                        request, seq, parsed, chat=chat, fault=fault, cut_after=cut_after
                    )
                except ConnectionResetError:  # the client left between two events, as clients may
                    return web.StreamResponse()
            words = [word async for word in self._words_of(seq)]
            if fault is Fault.CUT:
                return _cut(request)
            answer = Answer(self.profile.model, chat=chat)
            timings = self.profile.dialect.traits.reporting.timings
            extra = {"timings": _llamacpp_timings(seq)} if timings else {}
            return web.json_response(
                answer.body("".join(words), seq.finish_reason, usage=self._usage(seq), **extra)
            )
        finally:
            self.engine.cancel(seq)  # a no-op once finished; aborts it if the client left

    def _parse_openai(self, body: dict[str, Any], *, chat: bool) -> _Parsed:
        model = body.get("model")
        if model is not None and model != self.profile.model:
            raise _BadRequest(f"The model `{model}` does not exist.", 404, "model_not_found")
        if body.get("n", 1) != 1:
            raise _BadRequest("the simulator answers n=1 only")
        if chat:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise _BadRequest("`messages` must be a non-empty list")
            try:
                prompt = encode(chat_prompt_text(messages))
            except ValueError as exc:
                raise _BadRequest(str(exc)) from exc
        else:
            prompt = _completion_prompt(body.get("prompt"))
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        if max_tokens is None:
            max_tokens = max(
                1, min(self.profile.default_max_tokens, self.profile.max_model_len - len(prompt))
            )
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise _BadRequest("`max_tokens` must be a positive integer")
        options = body.get("stream_options") or {}
        return _Parsed(
            prompt=prompt,
            max_tokens=max_tokens,
            stream=bool(body.get("stream", False)),
            include_usage=bool(isinstance(options, dict) and options.get("include_usage")),
            ignore_eos=bool(body.get("ignore_eos", False)),
        )

    async def _words_of(self, seq: SimSequence) -> AsyncIterator[str]:
        async for count in seq.tokens():
            word = fake_words(1, self._words)[0]
            yield word if count == 1 else " " + word

    def _usage(self, seq: SimSequence) -> dict[str, Any]:
        details = {"cached_tokens": seq.cached_tokens}
        return token_usage(len(seq.prompt), seq.generated, prompt_tokens_details=details)

    async def _stream_openai(
        self,
        request: web.Request,
        seq: SimSequence,
        parsed: _Parsed,
        *,
        chat: bool,
        fault: Fault,
        cut_after: int | None,
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers=_SSE_HEADERS)
        await response.prepare(request)
        answer = Answer(self.profile.model, chat=chat)
        # vLLM's manner: with include_usage every chunk carries `"usage": null` until the last
        null_usage: dict[str, Any] = {"usage": None} if parsed.include_usage else {}
        sent = 0
        async for word in self._words_of(seq):
            if cut_after is not None and sent >= cut_after:
                if fault is Fault.CUT:
                    return _cut(request, response)
                error = error_body("simulated mid-stream failure (fault injection)", code=500)
                await response.write(sse_event(error))
                await response.write(DONE)
                return response
            finish = seq.finish_reason if seq.finish_reason not in (None, "abort") else None
            await response.write(sse_event(answer.chunk(word, finish, role=sent == 0, **null_usage)))
            sent += 1
        if parsed.include_usage:
            await response.write(sse_event(answer.usage_chunk(self._usage(seq))))
        await response.write(DONE)
        await response.write_eof()
        return response

    # -- Triton's generate extension ------------------------------------------------------------

    async def _triton_generate(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["model"] != self.profile.model:
            return web.json_response(
                {"error": f"Request for unknown model: '{request.match_info['model']}'"}, status=400
            )
        try:
            body = await _json_body(request)
        except _BadRequest as exc:
            return web.json_response({"error": str(exc)}, status=400)
        text = body.get("text_input")
        if not isinstance(text, str) or not text.strip():
            return web.json_response({"error": "`text_input` must be a non-empty string"}, status=400)
        parameters = body.get("parameters") or {}
        max_tokens = parameters.get("max_tokens", body.get("max_tokens", self.profile.default_max_tokens))
        ignore_eos = bool(parameters.get("ignore_eos", body.get("ignore_eos", False)))
        streaming = request.path.endswith("generate_stream")
        fault = self.faults.draw()
        if fault is Fault.ERROR or (fault is Fault.IN_BAND_ERROR and not streaming):
            self.engine.stats.failed += 1
            return web.json_response({"error": "simulated engine failure (fault injection)"}, status=500)
        if fault is Fault.HANG:
            await asyncio.Event().wait()
        try:
            seq = self.engine.submit(encode(text), int(max_tokens), ignore_eos=ignore_eos)
        except (RequestRejected, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        cut_after = self.faults.cut_after(seq.target_tokens) if fault in _MID_ANSWER else None
        head = {"model_name": self.profile.model, "model_version": "1"}
        try:
            if not streaming:
                words = [word async for word in self._words_of(seq)]
                if fault is Fault.CUT:
                    return _cut(request)
                return web.json_response({**head, "text_output": "".join(words)})
            response = web.StreamResponse(headers=_SSE_HEADERS)
            await response.prepare(request)
            sent = 0
            async for word in self._words_of(seq):
                if cut_after is not None and sent >= cut_after:
                    if fault is Fault.CUT:
                        return _cut(request, response)
                    await response.write(
                        sse_event({"error": "simulated mid-stream failure (fault injection)"})
                    )
                    return response
                await response.write(sse_event({**head, "text_output": word}))
                sent += 1
            await response.write_eof()
            return response
        finally:
            self.engine.cancel(seq)


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _BadRequest(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise _BadRequest("the body must be a JSON object")
    return body


def _completion_prompt(prompt: object) -> list[int]:
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if isinstance(prompt, str) and prompt.strip():
        return encode(prompt)
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        return list(prompt)
    raise _BadRequest("`prompt` must be a non-empty string or a list of token ids (one prompt)")


def _cut(request: web.Request, response: web.StreamResponse | None = None) -> web.StreamResponse:
    """Close the connection without ending the response: the client sees a truncated stream."""
    if request.transport is not None:
        request.transport.abort()
    return response if response is not None else web.StreamResponse()


def _openai_error(message: str, status: int, code: str) -> web.Response:
    return web.json_response(error_body(message, status=status, code=code), status=status)


def _unavailable(message: str) -> web.Response:
    """llama-server's 503: the status as the code."""
    body = error_body(message, status=503, error_type="unavailable_error", code=503)
    return web.json_response(body, status=503)


def _llamacpp_timings(seq: SimSequence) -> dict[str, float]:
    first = seq.first_token_at or seq.arrival
    last = seq.last_token_at or first
    admitted = seq.admitted_at or seq.arrival
    prompt_ms = (first - admitted) * 1000
    predicted_ms = (last - first) * 1000
    predicted_n = max(0, seq.generated - 1)
    prompt_n = len(seq.prompt) - seq.cached_tokens
    return {
        "cache_n": seq.cached_tokens,
        "prompt_n": prompt_n,
        "prompt_ms": prompt_ms,
        "prompt_per_second": prompt_n / (prompt_ms / 1000) if prompt_ms > 0 else 0.0,
        "predicted_n": predicted_n,
        "predicted_ms": predicted_ms,
        "predicted_per_token_ms": predicted_ms / predicted_n if predicted_n else 0.0,
        "predicted_per_second": predicted_n / (predicted_ms / 1000) if predicted_ms > 0 else 0.0,
    }
