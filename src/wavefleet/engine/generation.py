"""Token generation on one llama.cpp context, with exact token counts and engine-side timings.

This drives `Llama.generate` directly instead of `create_chat_completion`, so a stream knows its
prompt and completion token counts exactly (for `usage`, which OpenAI clients and `wave bench`
count from) and the engine can report llama-server style `timings`.
One `Generator` serves one request at a time: a llama.cpp context is not thread-safe.
"""

from __future__ import annotations

import codecs
import random
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from llama_cpp import Llama
from llama_cpp import llama_cpp as llama_lib
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from wavefleet.engine.settings import EngineSettings
from wavefleet.wire import token_usage

__all__ = ["Finish", "GenerationParams", "Generator", "load_llama"]

# A plain fallback for GGUFs without a chat template in their metadata.
FALLBACK_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@dataclass(frozen=True, slots=True)
class GenerationParams:
    """Sampling settings; defaults are llama-server's, OpenAI fields override them."""

    max_tokens: int | None = None
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repeat_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    @classmethod
    def from_openai(cls, body: Mapping[str, Any]) -> GenerationParams:
        """Read the OpenAI request fields this engine honours; raises ValueError on bad values."""
        stop = body.get("stop")
        stops = (stop,) if isinstance(stop, str) else tuple(str(s) for s in stop or ())
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        default = cls()
        params = cls(
            max_tokens=None if max_tokens is None else int(max_tokens),
            temperature=float(body.get("temperature", default.temperature)),
            top_p=float(body.get("top_p", default.top_p)),
            top_k=int(body.get("top_k", default.top_k)),
            min_p=float(body.get("min_p", default.min_p)),
            presence_penalty=float(body.get("presence_penalty", 0.0)),
            frequency_penalty=float(body.get("frequency_penalty", 0.0)),
            repeat_penalty=float(body.get("repeat_penalty", 1.0)),
            seed=None if body.get("seed") is None else int(body["seed"]),
            stop=stops,
        )
        if params.max_tokens is not None and params.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if params.temperature < 0:
            raise ValueError("temperature must be >= 0")
        return params


@dataclass(slots=True)
class Finish:
    """How a generation ended, with counts and llama-server style timings (milliseconds)."""

    reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int
    prompt_ms: float
    predicted_ms: float
    text: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def usage(self) -> dict[str, Any]:
        return token_usage(self.prompt_tokens, self.completion_tokens)

    def timings(self) -> dict[str, float]:
        decode_tokens = max(0, self.completion_tokens - 1)  # the first token's time is prefill's
        return {
            "prompt_n": self.prompt_tokens,
            "prompt_ms": round(self.prompt_ms, 3),
            "predicted_n": self.completion_tokens,
            "predicted_ms": round(self.predicted_ms, 3),
            "predicted_per_second": (
                round(decode_tokens / (self.predicted_ms / 1000), 3) if self.predicted_ms > 0 else 0.0
            ),
        }


def _cpu_has_amx() -> bool:
    try:
        return " amx_int8" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def load_llama(settings: EngineSettings) -> Llama:
    if _cpu_has_amx() and llama_lib.llama_model_default_params.__name__ != "without_extra_buffers":
        # llama.cpp's AMX weight buffers crash the first matrix product on some Sapphire Rapids
        # machines (https://github.com/ggml-org/llama.cpp/issues/20824, open), which a native build
        # enables by itself. Extra buffer types are those buffers (and weight repacking); the
        # bindings take no option for them, so their default parameters are changed in this
        # process, which is the engine's own.
        default_params = llama_lib.llama_model_default_params

        def without_extra_buffers() -> Any:
            params = default_params()
            params.use_extra_bufts = False
            return params

        llama_lib.llama_model_default_params = without_extra_buffers
    return Llama(
        model_path=str(settings.model_path),
        n_ctx=settings.n_ctx,
        n_threads=settings.n_threads,
        n_threads_batch=settings.n_threads,
        n_batch=settings.n_batch,
        verbose=False,
    )


class Generator:
    """Chat and text completion on one loaded model."""

    def __init__(self, llama: Llama) -> None:
        self._llama = llama
        eos, bos = llama.token_eos(), llama.token_bos()
        model = llama._model  # the token texts are only reachable here
        self._formatter = Jinja2ChatFormatter(
            template=llama.metadata.get("tokenizer.chat_template", FALLBACK_TEMPLATE),
            eos_token=model.token_get_text(eos) if eos != -1 else "",
            bos_token=model.token_get_text(bos) if bos != -1 else "",
        )
        self._vocab = model.vocab

    @property
    def n_ctx(self) -> int:
        return int(self._llama.n_ctx())

    def chat_prompt(self, messages: Sequence[Mapping[str, Any]]) -> tuple[list[int], tuple[str, ...]]:
        """Tokens of the chat rendered with the model's own template, and its stop strings.

        Raises ValueError for messages the template cannot render (no role, wrong types).
        """
        plain = [_plain_message(m) for m in messages]
        try:
            rendered = self._formatter(messages=plain)  # type: ignore[arg-type]
        except (jinja2.TemplateError, TypeError, KeyError) as exc:
            raise ValueError(f"the chat template could not render these messages: {exc}") from exc
        tokens = self._llama.tokenize(
            rendered.prompt.encode(), add_bos=not rendered.added_special, special=True
        )
        stops = rendered.stop if isinstance(rendered.stop, list) else [rendered.stop] if rendered.stop else []
        return tokens, tuple(s for s in stops if s)

    def text_prompt(self, prompt: str) -> list[int]:
        return list(self._llama.tokenize(prompt.encode(), add_bos=True, special=False))

    def stream(
        self,
        prompt: list[int],
        params: GenerationParams,
        cancel: threading.Event,
        extra_stops: Sequence[str] = (),
    ) -> Iterator[str | Finish]:
        """Yield text pieces as tokens decode, then one Finish. Stops early when `cancel` is set."""
        room = self.n_ctx - len(prompt)
        if room < 1:
            raise ValueError(f"the prompt has {len(prompt)} tokens; this engine's context is {self.n_ctx}")
        limit = min(params.max_tokens or room, room)
        stops = tuple(params.stop) + tuple(extra_stops)
        llama = self._llama
        llama.set_seed(params.seed if params.seed is not None else random.randrange(2**31))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text, emitted, count, reason = "", 0, 0, "length"
        started = time.perf_counter()
        first_token_at = started
        previous: list[int] = list(prompt)
        tokens = llama.generate(
            prompt,
            top_k=params.top_k,
            top_p=params.top_p,
            min_p=params.min_p,
            temp=params.temperature,
            repeat_penalty=params.repeat_penalty,
            presence_penalty=params.presence_penalty,
            frequency_penalty=params.frequency_penalty,
        )
        try:
            for token in tokens:
                if count == 0:
                    first_token_at = time.perf_counter()
                if llama_lib.llama_vocab_is_eog(self._vocab, token):
                    reason = "stop"
                    break
                count += 1
                text += decoder.decode(llama.detokenize([token], prev_tokens=previous))
                previous.append(token)
                cut = _first_stop(text, stops)
                if cut is not None:
                    text, reason = text[:cut], "stop"
                    break
                safe = len(text) - _partial_stop_tail(text, stops)
                if safe > emitted:
                    yield text[emitted:safe]
                    emitted = safe
                if count >= limit or cancel.is_set():
                    break
        finally:
            tokens.close()
        if emitted < len(text):
            yield text[emitted:]
        ended = time.perf_counter()
        yield Finish(
            reason=reason,
            prompt_tokens=len(prompt),
            completion_tokens=count,
            prompt_ms=(first_token_at - started) * 1000,
            predicted_ms=(ended - first_token_at) * 1000,
            text=text,
        )


def _plain_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """A message with text-only content: OpenAI content parts are joined into one string."""
    if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
        raise ValueError("each message needs a `role` string and `content`")
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, Mapping) and part.get("type") == "text"
        )
    return {**message, "content": "" if content is None else str(content)}


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None


def _partial_stop_tail(text: str, stops: Sequence[str]) -> int:
    """Length of the longest tail of `text` that could still grow into a stop string."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest
