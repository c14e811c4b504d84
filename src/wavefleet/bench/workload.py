"""What to send: synthetic prompts, shared-prefix multi-turn chats, or a JSONL file of prompts.

Token counts are approximated by words: prompts are built from short common English words that
are one token each (with their leading space) in the GPT-2, Llama and SmolLM2 BPE vocabularies,
so a prompt of n words is close to n tokens (docs/bench.md gives the measured ratio). The
server's `usage` is the truth for counts; the estimate only sizes prompts.

Every workload is a stream of sessions. A single-turn prompt is a session of one turn; a
multi-turn chat is a session whose next turn exists only after the previous answer came back,
so its turns go out in order and a prefix cache can reuse the shared history.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from wavefleet.errors import ConfigError, ConfigProblem, UsageError

__all__ = [
    "JsonlWorkload",
    "LengthDist",
    "MultiTurnWorkload",
    "Session",
    "SyntheticWorkload",
    "Turn",
    "BenchWorkload",
    "parse_length_dist",
]

# Short, frequent words: each is a single BPE token with a leading space in common vocabularies.
WORDS = (
    "the of and to in is it you that he was for on are as with his they at be this have from or "
    "one had by word but not what all were we when your can said there use an each which she do "
    "how their if will up other about out many then them these so some her would make like him "
    "into time has look two more write go see number no way could people my than first water "
    "been call who oil its now find long down day did get come made may part over new sound take "
    "only little work know place year live me back give most very after thing our just name good "
    "man think say great where help through much before line right too mean old any same tell "
    "boy follow came want show also around form three small set put end does another well large "
    "must big even such because turn here why ask went men read need land different home us move "
    "try kind hand picture again change off play spell air away animal house point page letter"
).split()

Message = dict[str, str]


@dataclass(frozen=True)
class Turn:
    """One request's content: chat messages (or a completion prompt) and its output budget."""

    messages: tuple[Message, ...]
    max_tokens: int | None
    estimated_prompt_tokens: int


class Session(Protocol):
    conversation: int

    def next_turn(self, previous_answer: str | None) -> Turn | None:
        """The next request, given the answer to the previous one; None when done."""
        ...


class BenchWorkload(Protocol):
    needs_answers: bool  # whether sessions need the answer text (costs a JSON parse per chunk)

    def sessions(self) -> Iterator[Session]:
        """Sessions in the order they should start; may be endless."""
        ...

    def describe(self) -> dict[str, object]: ...


@dataclass(frozen=True)
class LengthDist:
    """A length distribution around a mean: fixed, uniform (range ratio) or normal (std ratio)."""

    kind: Literal["fixed", "uniform", "normal"] = "fixed"
    ratio: float = 0.0

    def sample(self, rng: np.random.Generator, mean: int) -> int:
        if self.kind == "uniform":
            # vLLM's --random-range-ratio: uniform over [mean*(1-r), mean*(1+r)]
            low, high = math.floor(mean * (1 - self.ratio)), math.ceil(mean * (1 + self.ratio))
            return max(1, int(rng.integers(low, high + 1)))
        if self.kind == "normal":
            return max(1, round(float(rng.normal(mean, mean * self.ratio))))
        return max(1, mean)

    def __str__(self) -> str:
        return self.kind if self.kind == "fixed" else f"{self.kind}:{self.ratio:g}"


def parse_length_dist(text: str) -> LengthDist:
    """'fixed', 'uniform:0.25' (range ratio) or 'normal:0.2' (std as a fraction of the mean)."""
    kind, _, ratio_text = text.partition(":")
    if kind == "fixed" and not ratio_text:
        return LengthDist()
    if kind in ("uniform", "normal"):
        try:
            ratio = float(ratio_text or ("0.5" if kind == "uniform" else "0.2"))
        except ValueError:
            ratio = -1.0
        if 0 <= ratio <= (1 if kind == "uniform" else 10):
            return LengthDist(kind, ratio)  # type: ignore[arg-type]
    raise UsageError(
        f"bad length distribution {text!r}: use fixed, uniform:R (0<=R<=1, lengths in "
        "[L*(1-R), L*(1+R)]) or normal:S (std = S*L)"
    )


def words(rng: np.random.Generator, count: int) -> str:
    picks = rng.integers(0, len(WORDS), size=count)
    return " ".join(WORDS[i] for i in picks)


@dataclass
class _OneTurn:
    conversation: int
    turn: Turn
    used: bool = False

    def next_turn(self, previous_answer: str | None) -> Turn | None:
        if self.used:
            return None
        self.used = True
        return self.turn


@dataclass
class SyntheticWorkload:
    """Endless single-turn prompts of random words with sampled input and output lengths."""

    input_len: int = 256
    output_len: int = 128
    input_dist: LengthDist = field(default_factory=LengthDist)
    output_dist: LengthDist = field(default_factory=LengthDist)
    seed: int = 0
    needs_answers: bool = False

    def sessions(self) -> Iterator[Session]:
        rng = np.random.default_rng(self.seed)
        index = 0
        while True:
            length = self.input_dist.sample(rng, self.input_len)
            text = words(rng, length)
            turn = Turn(
                ({"role": "user", "content": text},), self.output_dist.sample(rng, self.output_len), length
            )
            yield _OneTurn(index, turn)
            index += 1

    def describe(self) -> dict[str, object]:
        return {
            "kind": "synthetic",
            "input_len": self.input_len,
            "output_len": self.output_len,
            "input_dist": str(self.input_dist),
            "output_dist": str(self.output_dist),
            "seed": self.seed,
            "token_estimate": "1 word ~ 1 token (short common words); usage is the truth",
        }


@dataclass
class _Chat:
    conversation: int
    prefix: str
    questions: list[str]
    max_tokens: int
    history: list[Message] = field(default_factory=list)

    def next_turn(self, previous_answer: str | None) -> Turn | None:
        if not self.history:
            self.history.append({"role": "system", "content": self.prefix})
        elif previous_answer is not None:
            self.history.append({"role": "assistant", "content": previous_answer})
        if not self.questions:
            return None
        self.history.append({"role": "user", "content": self.questions.pop(0)})
        estimate = sum(len(m["content"].split()) for m in self.history)
        return Turn(tuple(self.history), self.max_tokens, estimate)


@dataclass
class MultiTurnWorkload:
    """N chats sharing one system prefix of P tokens, T turns each, answers fed back in order."""

    conversations: int = 8
    prefix_len: int = 512
    turns: int = 4
    turn_len: int = 64
    output_len: int = 64
    seed: int = 0
    needs_answers: bool = True

    def sessions(self) -> Iterator[Session]:
        rng = np.random.default_rng(self.seed)
        prefix = words(rng, self.prefix_len)
        for index in range(self.conversations):
            questions = [words(rng, self.turn_len) for _ in range(self.turns)]
            yield _Chat(index, prefix, questions, self.output_len)

    def describe(self) -> dict[str, object]:
        return {
            "kind": "multi-turn",
            "conversations": self.conversations,
            "shared_prefix_len": self.prefix_len,
            "turns": self.turns,
            "turn_len": self.turn_len,
            "output_len": self.output_len,
            "seed": self.seed,
        }


class _ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str


class _PromptLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str | None = None
    messages: list[_ChatMessage] | None = Field(default=None, min_length=1)
    max_tokens: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_of(self) -> _PromptLine:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' or 'messages'")
        return self


@dataclass
class JsonlWorkload:
    """Prompts from a JSONL file, one `{"prompt"|"messages", "max_tokens"?}` per line, cycled."""

    path: Path
    default_max_tokens: int | None = 128
    turns: list[Turn] = field(default_factory=list)
    needs_answers: bool = False

    def __post_init__(self) -> None:
        if not self.turns:
            self.turns = load_jsonl(self.path, self.default_max_tokens)

    def sessions(self) -> Iterator[Session]:
        index = 0
        while True:
            for turn in self.turns:
                yield _OneTurn(index, turn)
                index += 1

    def describe(self) -> dict[str, object]:
        return {"kind": "jsonl", "path": str(self.path), "prompts": len(self.turns)}


def load_jsonl(path: Path, default_max_tokens: int | None) -> list[Turn]:
    """Read and check every line; all bad lines are reported at once with file:line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [ConfigProblem(path, None, "", f"cannot read: {exc.strerror}", "check the path")]
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigProblem(path, None, "", "not UTF-8 text", "save it as UTF-8")]) from exc
    turns: list[Turn] = []
    problems: list[ConfigProblem] = []
    fix = 'each line must be {"prompt": "..."} or {"messages": [{"role": "user", "content": "..."}]}, optional "max_tokens"'
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = _PromptLine.model_validate(json.loads(line))
        except json.JSONDecodeError as exc:
            problems.append(ConfigProblem(path, number, "", f"not valid JSON: {exc.msg}", fix))
            continue
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            problems.append(ConfigProblem(path, number, where, first["msg"], fix))
            continue
        if item.messages is not None:
            messages = tuple({"role": m.role, "content": m.content} for m in item.messages)
        else:
            messages = ({"role": "user", "content": item.prompt or ""},)
        estimate = sum(len(m["content"].split()) for m in messages)
        turns.append(Turn(messages, item.max_tokens or default_max_tokens, estimate))
    if problems:
        raise ConfigError(problems[:20])
    if not turns:
        raise ConfigError([ConfigProblem(path, None, "", "no prompts in the file", fix)])
    return turns
