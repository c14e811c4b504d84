"""Prompt screening: look for known injection phrasings, chat-template tokens smuggled into
content, invisible or bidirectional Unicode controls, and oversize inputs.

Screening never changes a prompt. Each rule has an action:

    log    note the verdict in the audit trail only
    flag   also answer with the header `x-wave-screening: rule1,rule2`
    block  refuse the request with 400, naming the rule

The patterns are compiled once, when the Screener is built. Text that is plain ASCII skips the
Unicode rule, and text without `<` or `[` skips the template-token rule, so a typical prompt
costs a few microseconds. These rules catch known phrasings only: they are a tripwire and an
audit signal, not a defence against a determined attacker (see docs/security.md).

    screener = Screener(ScreeningConfig(default="flag", rules={"template_tokens": "block"}))
    verdict = screener.screen(["user text", "more text"])   # Verdict(hits=("template_tokens",), ...)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from wavefleet.errors import BadRequestError

__all__ = ["RULES", "Action", "Screener", "ScreeningConfig", "Verdict", "prompt_texts"]


class Action(StrEnum):
    OFF = "off"
    LOG = "log"
    FLAG = "flag"
    BLOCK = "block"


RULES = {
    "injection_phrase": "a known prompt-injection phrasing (ignore previous instructions, DAN, reveal the system prompt, ...)",
    "template_tokens": "chat-template control tokens in content (<|im_start|>, [INST], <<SYS>>, <|eot_id|>, ...)",
    "invisible_unicode": "zero-width, bidirectional or tag characters (U+200B..U+200F, U+202A..U+202E, U+2066..U+2069, U+FEFF, U+E0000..U+E007F)",
    "oversize": "more characters (or estimated tokens, at 4 characters a token) than max_chars / max_tokens",
}

_INJECTION = [
    r"\bignore\s+(?:all\s+|any\s+)?(?:the\s+|your\s+)?(?:previous|prior|above|earlier|preceding)\s+(?:instructions|prompts?|rules|directions)\b",
    r"\bdisregard\s+(?:all\s+|any\s+)?(?:the\s+|your\s+)?(?:previous|prior|above|earlier)\s+(?:instructions|prompts?|rules)\b",
    r"\bforget\s+(?:all\s+)?(?:your|the|previous)\s+(?:instructions|rules)\b",
    r"\byou\s+are\s+now\s+(?:DAN|in\s+developer\s+mode|jailbroken|unfiltered)\b",
    r"\bdo\s+anything\s+now\b",
    r"\b(?:reveal|print|show|repeat|output|leak|display)\s+(?:me\s+)?(?:your|the)\s+(?:full\s+|hidden\s+|original\s+)?system\s+prompt\b",
    r"\bnew\s+system\s+prompt\s*:",
    r"\benable\s+developer\s+mode\b",
]

_TEMPLATE = (
    r"<\|(?:im_start|im_end|im_sep|endoftext|startoftext|start_header_id|end_header_id|eot_id|eom_id|"
    r"begin_of_text|end_of_text|system|user|assistant|end|channel|message|start|return|call)\|>"
    r"|\[/?INST\]|<</?SYS>>|<(?:start|end)_of_turn>|<\|?(?:fim_prefix|fim_middle|fim_suffix)\|?>"
    r"|<｜(?:begin▁of▁sentence|end▁of▁sentence|User|Assistant)｜>"
)

_INVISIBLE = "[\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff\U000e0000-\U000e007f]"
_ZWJ, _VS16, _BLACK_FLAG, _CANCEL_TAG = "\u200d", "\ufe0f", "\U0001f3f4", "\U000e007f"


def _pictographic(char: str) -> bool:
    code = ord(char)
    return code >= 0x1F000 or 0x2600 <= code <= 0x27BF or char == _VS16 or 0x1F3FB <= code <= 0x1F3FF


class ScreeningConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default: Action = Field(default=Action.OFF, description="action for every rule not named in `rules`")
    rules: dict[str, Action] = Field(default_factory=dict, description="rule -> action")
    max_chars: int = Field(default=400_000, ge=1, description="oversize: characters across the prompt")
    max_tokens: int | None = Field(default=None, ge=1, description="oversize: estimated prompt tokens")

    @field_validator("rules")
    @classmethod
    def _known(cls, rules: dict[str, Action]) -> dict[str, Action]:
        unknown = sorted(set(rules) - set(RULES))
        if unknown:
            raise ValueError(f"unknown screening rules {unknown}; known: {sorted(RULES)}")
        return rules

    def action(self, rule: str) -> Action:
        return self.rules.get(rule, self.default)


@dataclass(frozen=True, slots=True)
class Verdict:
    hits: tuple[str, ...] = ()
    flagged: tuple[str, ...] = ()  # hits whose action is flag or block
    blocked: str | None = None  # the first hit whose action is block

    @property
    def header(self) -> str:
        return ",".join(self.flagged)


CLEAN = Verdict()


def prompt_texts(endpoint: str, payload: dict[str, Any]) -> Iterator[str]:
    """The prompt's text as the engine will see it, system messages excepted (they are the operator's)."""
    if endpoint == "chat/completions":
        for message in payload.get("messages") or ():
            if not isinstance(message, dict) or message.get("role") == "system":
                continue
            content = message.get("content")
            if isinstance(content, str):
                yield content
            elif isinstance(content, list):
                for part in content:
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        yield part["text"]
    else:
        value = payload.get("prompt" if endpoint == "completions" else "input")
        if isinstance(value, str):
            yield value
        elif isinstance(value, list):
            yield from (v for v in value if isinstance(v, str))


class Screener:
    def __init__(self, config: ScreeningConfig) -> None:
        self.config = config
        self._actions = {rule: config.action(rule) for rule in RULES}
        self.enabled = any(a is not Action.OFF for a in self._actions.values())
        self._injection = re.compile("|".join(f"(?:{p})" for p in _INJECTION), re.IGNORECASE)
        self._template = re.compile(_TEMPLATE)
        self._invisible = re.compile(_INVISIBLE)

    def screen(self, texts: Iterable[str]) -> Verdict:
        if not self.enabled:
            return CLEAN
        actions = self._actions
        hits: set[str] = set()
        chars = 0
        for text in texts:
            chars += len(text)
            if actions["injection_phrase"] is not Action.OFF and self._injection.search(text):
                hits.add("injection_phrase")
            if (
                actions["template_tokens"] is not Action.OFF
                and ("<" in text or "[" in text)
                and self._template.search(text)
            ):
                hits.add("template_tokens")
            if (
                actions["invisible_unicode"] is not Action.OFF
                and not text.isascii()
                and self._hidden_controls(text)
            ):
                hits.add("invisible_unicode")
        if actions["oversize"] is not Action.OFF:
            limit_tokens = self.config.max_tokens
            if chars > self.config.max_chars or (limit_tokens is not None and chars // 4 > limit_tokens):
                hits.add("oversize")
        if not hits:
            return CLEAN
        ordered = tuple(rule for rule in RULES if rule in hits)
        flagged = tuple(r for r in ordered if actions[r] in (Action.FLAG, Action.BLOCK))
        blocked = next((r for r in ordered if actions[r] is Action.BLOCK), None)
        return Verdict(ordered, flagged, blocked)

    def _hidden_controls(self, text: str) -> bool:
        """True for an invisible or bidi control, except the ones emoji are built from:
        U+200D joining two pictographs (family, profession emoji) and tag characters after
        U+1F3F4 (the flags of England, Scotland, Wales)."""
        for match in self._invisible.finditer(text):
            char, at = match.group(), match.start()
            if (
                char == _ZWJ
                and 0 < at < len(text) - 1
                and _pictographic(text[at - 1])
                and _pictographic(text[at + 1])
            ):
                continue
            if "\U000e0020" <= char <= _CANCEL_TAG and _in_flag_sequence(text, at):
                continue
            return True
        return False

    def refuse(self, verdict: Verdict) -> BadRequestError:
        rule = verdict.blocked or ""
        error = BadRequestError(
            f"the request was blocked by the gateway's screening rule {rule!r}: {RULES.get(rule, '')}. "
            "If this is a false positive, ask the operator to set this rule to `flag` or `log`.",
            param="messages",
        )
        error.code = "screening_blocked"
        return error


def _in_flag_sequence(text: str, at: int) -> bool:
    start = at
    while start > 0 and "\U000e0020" <= text[start - 1] <= _CANCEL_TAG:
        start -= 1
    return start > 0 and text[start - 1] == _BLACK_FLAG
