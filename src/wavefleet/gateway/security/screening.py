"""Prompt screening: look for known injection phrasings, chat-template tokens smuggled into
content, invisible Unicode characters, and oversize inputs.

Screening never changes a prompt. Each rule has an action:

    log    note the verdict in the audit trail only
    flag   also answer with the header `x-wave-screening: rule1,rule2`
    block  refuse the request with 400, naming the rule

Every text a client sends that can reach the model is screened (`prompt_texts`): all messages,
system ones included, with their names and tool calls, and every other request field except a
short list that only steers sampling or names the caller (`NOT_PROMPT`). The phrase and template
rules match a normalised copy: NFKC applied (fullwidth and mathematical letters, ligatures and
Unicode spaces read as ASCII), default-ignorable and format characters removed (and, separately,
read as spaces), and any text hidden in Unicode tag characters decoded to ASCII.
Plain ASCII text needs none of that and skips it, so a typical prompt costs a few microseconds.
These rules catch known phrasings only: they are a tripwire and an audit signal, not a defence
against a determined attacker (see docs/security.md).

    screener = Screener(ScreeningConfig(default="flag", rules={"template_tokens": "block"}))
    verdict = screener.screen(["user text", "more text"])   # Verdict(hits=("template_tokens",), ...)
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from wavefleet.errors import BadRequestError

__all__ = [
    "IGNORABLE",
    "NOT_PROMPT",
    "RULES",
    "Action",
    "Screener",
    "ScreeningConfig",
    "Verdict",
    "prompt_texts",
]


class Action(StrEnum):
    OFF = "off"
    LOG = "log"
    FLAG = "flag"
    BLOCK = "block"


RULES = {
    "injection_phrase": "a known prompt-injection phrasing (ignore previous instructions, DAN, reveal the system prompt, ...)",
    "template_tokens": "chat-template control tokens in content (<|im_start|>, [INST], <<SYS>>, <|eot_id|>, ...)",
    "invisible_unicode": "invisible characters: format characters (zero-width, bidirectional, soft hyphen, word joiner, tag characters) and other default-ignorable code points",
    "oversize": "more characters (or estimated tokens, at 4 characters a token) than max_chars / max_tokens",
}

# Request fields that never reach the model as text: the model name, sampling and output
# controls, and identifiers of the caller. `stop` in particular routinely holds template tokens.
NOT_PROMPT = frozenset(
    {
        "model",
        "stop",
        "user",
        "metadata",
        "logit_bias",
        "stream_options",
        "service_tier",
        "reasoning_effort",
        "modalities",
        "audio",
        "encoding_format",
        "prompt_cache_key",
        "safety_identifier",
        "verbosity",
        "request_id",
        "cache_salt",
    }
)
# Inside messages: content parts that carry media (a URL or base64 data, seen as pixels or sound),
# and `type`, an enum the engine checks and no template prints.
_NOT_MESSAGE_TEXT = frozenset(
    {"type", "image_url", "input_audio", "input_image", "video_url", "audio_url", "file"}
)
# The roles of the API: words that carry nothing to screen. Any other role is screened, since
# chat templates print a message's role into the prompt.
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})

# (a word every match contains, the phrase), matched on lower-cased text. The word is looked
# for first (`in`, at C speed), so most prompts run no regex at all (hence "prompt", not
# "system", which every chat with a system message contains as a role); every phrase starts with
# a literal, which the regex engine also scans for quickly. The word boundary before a match is
# checked in `_has_phrase`.
_PHRASES = [
    (
        "ignore",
        r"ignore\s+(?:all\s+|any\s+)?(?:the\s+|your\s+)?(?:previous|prior|above|earlier|preceding)\s+(?:instructions|prompts?|rules|directions)\b",
    ),
    (
        "disregard",
        r"disregard\s+(?:all\s+|any\s+)?(?:the\s+|your\s+)?(?:previous|prior|above|earlier)\s+(?:instructions|prompts?|rules)\b",
    ),
    ("forget", r"forget\s+(?:all\s+)?(?:your|the|previous)\s+(?:instructions|rules)\b"),
    ("now", r"you\s+are\s+now\s+(?:dan|in\s+developer\s+mode|jailbroken|unfiltered)\b"),
    ("anything", r"do\s+anything\s+now\b"),
    *(
        ("prompt", verb + r"\s+(?:me\s+)?(?:your|the)\s+(?:full\s+|hidden\s+|original\s+)?system\s+prompt\b")
        for verb in ("reveal", "print", "show", "repeat", "output", "leak", "display")
    ),
    ("prompt", r"new\s+system\s+prompt\s*:"),
    ("developer", r"enable\s+developer\s+mode\b"),
]

# Matched after NFKC, which folds DeepSeek's fullwidth bars (U+FF5C) to `|`.
_TEMPLATE = (
    r"<\|(?:im_start|im_end|im_sep|endoftext|startoftext|start_header_id|end_header_id|eot_id|eom_id|"
    r"begin_of_text|end_of_text|system|user|assistant|end|channel|message|start|return|call)\|>"
    r"|\[/?INST\]|<</?SYS>>|<(?:start|end)_of_turn>|<\|?(?:fim_prefix|fim_middle|fim_suffix)\|?>"
    r"|<\|(?:begin▁of▁sentence|end▁of▁sentence|User|Assistant)\|>"
)

# Every format character (category Cf) and every other Default_Ignorable_Code_Point of Unicode
# 15.1 (DerivedCoreProperties.txt): the characters a renderer shows as nothing, or that only
# steer how their neighbours are drawn. tests/test_security_screening.py checks that this covers
# every Cf character of the running Python's Unicode database.
IGNORABLE = re.compile(
    "["
    "\u00ad\u034f\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u115f\u1160\u17b4\u17b5"
    "\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0000-\U000e0fff"
    "]"
)
# The characters whose NFKC form is ASCII, in ranges (fullwidth forms, mathematical
# alphanumerics, ligatures, Unicode spaces, super- and subscripts, enclosed alphanumerics, ...);
# a few characters inside the ranges fold to something else, which is still their NFKC form.
# tests/test_security_screening.py checks the ranges against the running Python.
_FOLDS_TO_ASCII = re.compile(
    "["
    "\u00a0\u00aa-\u00ba\u0132-\u0133\u017f\u01c7-\u01cc\u01f1-\u01f3\u02b0-\u02b8"
    "\u02e1-\u02e3\u037e\u1d2c-\u1d65\u1d9c-\u1da0\u1dbb\u1fef\u2000-\u200a\u2024-\u2026"
    "\u202f\u203c\u2047-\u2049\u205f\u2070-\u209c\u20a8\u2100-\u213b\u2145-\u2149"
    "\u2160-\u217f\u2460-\u24ea\u2a74-\u2a76\u2c7c-\u2c7d\u3000\u3250-\u325f\u32b1-\u32bf"
    "\u32cc-\u32cf\u3371-\u33dd\u33ff\ua7f2-\ua7f4\ufb00-\ufb06\ufb29\ufe10-\ufe19"
    "\ufe30-\ufe38\ufe47-\ufe6b\uff01-\uff5e\U000107a5\U0001d400-\U0001d6a3"
    "\U0001d7ce-\U0001d7ff\U0001f100-\U0001f14f\U0001f16a-\U0001f16c\U0001f190"
    "\U0001fbf0-\U0001fbf9"
    "]+"
)
_TAG_TEXT = re.compile("[\U000e0020-\U000e007e]+")
_UNTAG = {0xE0000 + code: code for code in range(0x20, 0x7F)}
# The three subdivision flags that are recommended for general interchange (RGI, UTS #51):
# England, Scotland, Wales. Other tag sequences draw as a plain black flag, so any tag text
# elsewhere is hidden text.
_RGI_FLAGS = re.compile(
    "\U0001f3f4\U000e0067\U000e0062"
    "(?:\U000e0065\U000e006e\U000e0067|\U000e0073\U000e0063\U000e0074|\U000e0077\U000e006c\U000e0073)"
    "\U000e007f"
)
_ZWJ, _VS15, _VS16, _BLACK_FLAG = "\u200d", "\ufe0e", "\ufe0f", "\U0001f3f4"


def _pictographic(char: str) -> bool:
    code = ord(char)
    return code >= 0x1F000 or 0x2600 <= code <= 0x27BF or char == _VS16 or 0x1F3FB <= code <= 0x1F3FF


def _nfkc(match: re.Match[str]) -> str:
    return unicodedata.normalize("NFKC", match.group())


def _matching_view(text: str, marks: tuple[re.Match[str], ...]) -> str:
    """What the phrase and template rules read for non-ASCII text: the text with NFKC applied to
    the characters it folds to ASCII, then with invisible characters removed, and again with them
    read as spaces (a zero-width space between words), followed by each run of tag characters
    decoded to the ASCII it spells.

    `marks` are the text's IGNORABLE characters."""
    # The rules match ASCII, so only the characters NFKC turns into ASCII need it; normalising
    # just those runs costs a third of normalising a whole 2 KB CJK prompt (whose fullwidth
    # punctuation makes NFKC do the full work). Folding neither adds nor removes IGNORABLE
    # characters, so `marks` still names the ones to take out.
    if not unicodedata.is_normalized("NFKC", text):
        text = _FOLDS_TO_ASCII.sub(_nfkc, text)
    if not marks:
        return text
    joined = spaced = text
    chars = {mark.group() for mark in marks}
    for char in chars:  # usually one or two (an emoji's selector and joiner): replace is memchr-fast
        joined = joined.replace(char, "")
        spaced = spaced.replace(char, " ")
    views = [joined, spaced]
    if max(chars) >= "\U000e0020":
        views += [run.translate(_UNTAG) for run in _TAG_TEXT.findall(text)]
    return "\x00".join(views)  # not whitespace: no phrase runs from one reading into the next


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
    """Every text in the request that can reach the model, in the order sent.

    For chat, every message's strings (content and its text parts, name, tool calls with their
    arguments, tool_call_id, a role other than the API's own, ...), media parts and `type`
    excepted. For every endpoint, every other top-level field not in NOT_PROMPT (prompt,
    suffix, input, tools, functions, response_format, documents, chat_template_kwargs, fields
    no one has named yet), with its object keys: templates print tool and schema JSON whole,
    property names included. Token-id prompts (lists of integers) carry no text to screen.
    Nesting of any depth is walked without recursion."""
    for field, value in payload.items():
        if field in NOT_PROMPT:
            continue
        yield from _strings(value, in_message=endpoint == "chat/completions" and field == "messages")


def _strings(value: object, *, in_message: bool) -> Iterator[str]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            children: list[object] = []
            for key, child in item.items():
                if in_message:
                    if key not in _NOT_MESSAGE_TEXT and not (
                        key == "role" and isinstance(child, str) and child in _ROLES
                    ):
                        children.append(child)
                else:
                    children += (key, child)
            stack.extend(reversed(children))


class Screener:
    def __init__(self, config: ScreeningConfig) -> None:
        self.config = config
        self._actions = {rule: config.action(rule) for rule in RULES}
        self.enabled = any(a is not Action.OFF for a in self._actions.values())
        self._phrases: dict[str, list[re.Pattern[str]]] = {}
        for word, pattern in _PHRASES:
            self._phrases.setdefault(word, []).append(re.compile(pattern))
        self._template = re.compile(_TEMPLATE)

    def screen(self, texts: Iterable[str]) -> Verdict:
        """Run every rule that is not off over the texts, read as one; never changes them."""
        if not self.enabled:
            return CLEAN
        actions = self._actions
        parts = list(texts)
        chars = sum(map(len, parts))
        text = "\n".join(parts)
        hits: set[str] = set()
        plain = text.isascii()
        phrases = actions["injection_phrase"] is not Action.OFF
        template = actions["template_tokens"] is not Action.OFF
        invisible = actions["invisible_unicode"] is not Action.OFF
        marks = () if plain or not (phrases or template or invisible) else tuple(IGNORABLE.finditer(text))
        if phrases or template:
            view = text if plain else _matching_view(text, marks)
            if phrases and self._has_phrase(view.lower()):
                hits.add("injection_phrase")
            if template and ("<" in view or "[" in view) and self._template.search(view):
                hits.add("template_tokens")
        if invisible and marks and _hidden_characters(text, marks):
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

    def _has_phrase(self, low: str) -> bool:
        for word, patterns in self._phrases.items():
            if word not in low:
                continue
            for pattern in patterns:
                for match in pattern.finditer(low):
                    at = match.start()
                    if at == 0 or not (low[at - 1].isalnum() or low[at - 1] == "_"):
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


def _hidden_characters(text: str, marks: tuple[re.Match[str], ...]) -> bool:
    """True if any of `marks` (the text's IGNORABLE characters) is not one that emoji are built
    from: U+200D joining two pictographs (family, profession emoji), one U+FE0E or U+FE0F right
    after a visible character (text or emoji presentation), and the tag characters of the three
    RGI subdivision flags."""
    in_flags: set[int] = set()
    if _BLACK_FLAG in text:
        for flag in _RGI_FLAGS.finditer(text):
            in_flags.update(range(flag.start() + 1, flag.end()))
    for mark in marks:
        char, at = mark.group(), mark.start()
        if at in in_flags:
            continue
        if char == _ZWJ:
            if 0 < at < len(text) - 1 and _pictographic(text[at - 1]) and _pictographic(text[at + 1]):
                continue
        elif (
            char in (_VS15, _VS16)
            and at > 0
            and not text[at - 1].isspace()
            and not IGNORABLE.match(text, at - 1)
        ):
            continue
        return True
    return False
