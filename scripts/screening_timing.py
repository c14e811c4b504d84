#!/usr/bin/env python3
"""How long screening takes with all four rules on, for one 2 KB text of several kinds and for a
chat body (a system and a user message) through `prompt_texts`. CPU time per call, best of 9
rounds, so a busy machine inflates the figures less. Not a test: the figures of
docs/measurements/2026-12-03-screening-cost.md.

    PYTHONPATH=src python scripts/screening_timing.py
"""

from __future__ import annotations

import time
import timeit
from collections.abc import Callable

from wavefleet.gateway.security.screening import Action, Screener, ScreeningConfig, prompt_texts

ENGLISH = "Please explain how the KV cache works in a transformer, and why paged attention helps with fragmentation. "
MIXED = "请用中文解释一下 KV 缓存是如何工作的? اشرح لي كيف تعمل ذاكرة التخزين المؤقت. Émoji 👍🏽 café — "
SAMPLES = {
    "ASCII": (ENGLISH * 30)[:2048],
    "CJK, Arabic, accented Latin": (MIXED * 40)[:2048],
    "the same with fullwidth ？": (MIXED.replace("?", "？") * 40)[:2048],
    "the same with ❤️ (U+FE0F) in every line": ((MIXED.replace("?", "？") + "❤️ ") * 40)[:2048],
}


def per_call_us(call: Callable[[], object], number: int) -> float:
    rounds = timeit.repeat(call, timer=time.process_time, number=number, repeat=9)
    return min(rounds) / number * 1e6


def main() -> None:
    screener = Screener(ScreeningConfig(default=Action.FLAG))
    print(f"{'2 KB text':42} {'screen':>9} {'chat body':>10}")
    for label, text in SAMPLES.items():
        body = {
            "model": "m",
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": text},
            ],
        }
        alone = per_call_us(lambda text=text: screener.screen([text]), 3000)
        chat = per_call_us(
            lambda body=body: screener.screen(list(prompt_texts("chat/completions", body))), 3000
        )
        print(f"{label:42} {alone:7.1f} µs {chat:7.1f} µs")
    question = "What is the capital of France? Answer in one word."
    print(
        f"{'a 50-character ASCII question':42} {per_call_us(lambda: screener.screen([question]), 20000):7.1f} µs"
    )


if __name__ == "__main__":
    main()
