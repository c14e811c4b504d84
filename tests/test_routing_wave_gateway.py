"""The wave policy end to end: a real gateway in front of two simulated engines of different speed."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from helpers import chat_body, http_request, wait_until
from wavefleet.gateway.app import create_app
from wavefleet.gateway.backends.fake_servers import serve_in_thread
from wavefleet.gateway.config import GatewayConfig, PolicyName, WaveSettings
from wavefleet.gateway.monitor.snapshot import StaticMonitor
from wavefleet.gateway.routing.base import Decision, FleetView, Outcome, RouteRequest
from wavefleet.gateway.routing.round_robin import RoundRobinPolicy
from wavefleet.gateway.routing.wave import WavePolicy
from wavefleet.sim import SimProfile, ThreadedSimFleet

SPEED = 5.0
FAST = SimProfile(
    name="fast", dialect="vllm", model="big", gpu=True, prefill_tokens_per_s=4000,
    itl_at_batch=[(1, 0.012), (16, 0.02)], max_num_seqs=16, kv_capacity_tokens=60000, jitter_sigma=0.0,
)  # fmt: skip
SLOW = SimProfile(
    name="slow", dialect="llamacpp", model="small", prefill_tokens_per_s=300,
    itl_at_batch=[(1, 0.04), (2, 0.045)], max_num_seqs=2, kv_capacity_tokens=4096, kv_admission="reserve",
    jitter_sigma=0.0,
)  # fmt: skip


def post(url: str, body: dict[str, object], headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    return http_request("POST", url + "/v1/chat/completions", body, headers, timeout=30)


def chat(words: int, tokens: int = 16) -> dict[str, object]:
    return chat_body(" ".join(["word"] * words), model="chat", max_tokens=tokens, stream=True)


def test_wave_routes_by_prediction_explains_itself_and_learns() -> None:
    with ThreadedSimFleet([FAST, SLOW], speed=SPEED, seed=1) as sims:
        config = GatewayConfig.model_validate(
            {
                "policy": "wave",
                "backends": [
                    {"name": p.name, "url": sims.urls[p.name], "kind": p.dialect.value, "models": [p.model],
                     "profile": p.to_backend_profile(SPEED).model_dump()}
                    for p in (FAST, SLOW)
                ],
                "groups": {"chat": ["big", "small"]},
            }
        )  # fmt: skip
        policy = WavePolicy(WaveSettings(explore_rate=0.0, preference_penalty_s=0.0))
        with serve_in_thread(create_app(config, StaticMonitor(), policy=policy)) as gateway:
            status, headers, body = post(gateway.url, chat(40), {"x-wave-explain": "1"})
            assert status == 200 and b"[DONE]" in body
            explanation = headers["x-wave-explain"]
            assert explanation.startswith("fast=") and "slow=" in explanation
            assert headers["x-wave-backend"] == "fast"
            _, plain, _ = post(gateway.url, chat(40), {})
            assert "x-wave-explain" not in plain

            # a burst of long prompts: the slow engine would take seconds to prefill them, so all
            # go to the fast one even while it is busy
            with ThreadPoolExecutor(8) as pool:
                backends = list(
                    pool.map(lambda _: post(gateway.url, chat(400), {})[1]["x-wave-backend"], range(16))
                )
            assert backends.count("fast") == 16

            view = FleetView(StaticMonitor(), {b.name: b for b in config.backends}, {})
            model = policy.model("fast", view)
            # the gateway observes a request just after its last byte went out
            wait_until(
                lambda: model.speed.itl.samples == 18, message=f"{model.speed.itl.samples} ITL samples"
            )
            # every finished request taught the ITL line; those not predicted to queue, the prefill line
            assert model.speed.itl.samples == 18 and model.speed.prefill.samples >= 9
            with urllib.request.urlopen(gateway.url + "/metrics", timeout=10) as answer:
                metrics = answer.read().decode()
            assert 'wave_routing_decisions_total{backend="fast",reason="predicted"}' in metrics


class FirstTokenLog:
    """A routing policy (round-robin underneath) that writes down when the gateway tells it of a
    request's first token and of its end."""

    name = PolicyName.ROUND_ROBIN

    def __init__(self) -> None:
        self._inner = RoundRobinPolicy()
        self.first_tokens: list[float] = []
        self.finished: list[float] = []

    def choose(self, request: RouteRequest, view: FleetView) -> Decision:
        return self._inner.choose(request, view)

    def observe_first_token(self, backend: str, request: RouteRequest, ttft_s: float) -> None:
        self.first_tokens.append(ttft_s)

    def observe_finish(self, backend: str, request: RouteRequest, outcome: Outcome) -> None:
        self.finished.append(outcome.duration_s)


def held_stream_engine(release: threading.Event) -> web.Application:
    """An OpenAI-style engine that streams one token, then holds the stream until `release`."""

    async def completions(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        chunk = {"id": "c", "object": "chat.completion.chunk", "model": "m",
                 "choices": [{"index": 0, "delta": {"content": "one"}, "finish_reason": None}]}  # fmt: skip
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await asyncio.to_thread(release.wait)
        chunk["choices"] = [{"index": 0, "delta": {"content": " two"}, "finish_reason": "stop"}]
        await response.write(f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode())
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    return app


def test_the_policy_hears_of_a_first_token_when_it_comes_not_when_the_stream_ends() -> None:
    # wave bounds the prefill backlog it believes at each first token: told only at a stream's
    # end (seconds later, for a long answer), the bound comes late and the backlog looks longer
    release = threading.Event()
    policy = FirstTokenLog()
    with serve_in_thread(held_stream_engine(release)) as engine:
        config = GatewayConfig.model_validate(
            {
                "policy": "round-robin",
                "backends": [{"name": "e", "url": engine.url, "kind": "openai", "models": ["m"]}],
            }
        )
        gateway_app = create_app(config, StaticMonitor(), policy=policy)
        with serve_in_thread(gateway_app) as gateway, ThreadPoolExecutor(1) as pool:
            answer = pool.submit(post, gateway.url, chat_body("hi", max_tokens=2, stream=True), {})
            try:
                wait_until(lambda: policy.first_tokens, message="the policy was not told of the first token")
                assert not policy.finished, "told of the first token only once the stream had ended"
            finally:
                release.set()
            status, _, body = answer.result(timeout=30)
    assert status == 200 and b"[DONE]" in body
    wait_until(lambda: policy.finished, message="the policy was not told of the end")
    assert len(policy.first_tokens) == 1 and policy.first_tokens[0] <= policy.finished[0]
