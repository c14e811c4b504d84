"""The requests this gateway has open to each backend.

The forwarder counts them (`add` before sending, `remove` when the answer ends); routing
policies and the metrics read them as a mapping of backend name to count.

    inflight = InflightCounts(["gpu", "cpu"])
    inflight.add("gpu")
    inflight.get("gpu", 0)   # 1
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

__all__ = ["InflightCounts"]


class InflightCounts(Mapping[str, int]):
    __slots__ = ("_counts",)

    def __init__(self, backends: Iterable[str]) -> None:
        self._counts = dict.fromkeys(backends, 0)

    def add(self, backend: str) -> None:
        self._counts[backend] += 1

    def remove(self, backend: str) -> None:
        self._counts[backend] -= 1

    def __getitem__(self, backend: str) -> int:
        return self._counts[backend]

    def __iter__(self) -> Iterator[str]:
        return iter(self._counts)

    def __len__(self) -> int:
        return len(self._counts)
