"""Size classes (the seed's token-count classes): the prompt's size picks a class of backends.

    size_classes:
      - {max_prompt_tokens: 512, backends: [cpu-llamacpp]}    # short prompts
      - {max_prompt_tokens: 4096, backends: [desktop-vllm]}
      - {backends: [desktop-vllm]}                            # everything larger

Classes are tried from the smallest that fits the prompt upward: when every backend of a class
is full (load >= 1) or down, the request overflows to the next larger class. Candidates that no
class names come last. Prompt size is the request's estimate (characters / 4).
"""

from __future__ import annotations

from wavefleet.gateway.config import PolicyName, SizeClass
from wavefleet.gateway.routing.base import Candidate, Decision, FleetView, Outcome, RouteRequest
from wavefleet.gateway.routing.load import healthy, scores

__all__ = ["SizeClassPolicy"]


class SizeClassPolicy:
    name = PolicyName.SIZE_CLASSES

    def __init__(self, classes: list[SizeClass]) -> None:
        # smallest limit first; the open-ended class (no limit) last
        self._classes = sorted(classes, key=lambda c: (c.max_prompt_tokens is None, c.max_prompt_tokens or 0))

    def choose(self, request: RouteRequest, view: FleetView) -> Decision:
        ready = healthy(request.candidates, view)
        if not ready:
            return Decision((), "none-healthy")
        load = scores(ready, view)
        by_backend = {c.backend: c for c in ready}
        fitting = [
            c
            for c in self._classes
            if c.max_prompt_tokens is None or request.prompt_tokens <= c.max_prompt_tokens
        ]
        in_classes: list[tuple[int, Candidate]] = []  # (class index, candidate), smallest class first
        seen: set[str] = set()
        for index, size_class in enumerate(fitting):
            members = sorted(
                (by_backend[b] for b in size_class.backends if b in by_backend and b not in seen),
                key=lambda c: (c.preference, load[c.backend]),
            )
            seen.update(c.backend for c in members)
            in_classes.extend((index, c) for c in members)
        with_room = [(i, c) for i, c in in_classes if load[c.backend] < 1.0]
        full = [c for _, c in in_classes if load[c.backend] >= 1.0]
        ranked = [c for _, c in with_room] + full + [c for c in ready if c.backend not in seen]
        if with_room:
            reason = "size-class" if with_room[0][0] == 0 else "size-class-overflow"
        else:
            reason = "size-class-saturated" if in_classes else "no-size-class"
        return Decision(tuple(ranked), reason, load)

    def observe_first_token(self, backend: str, request: RouteRequest, ttft_s: float) -> None:
        return None

    def observe_finish(self, backend: str, request: RouteRequest, outcome: Outcome) -> None:
        return None
