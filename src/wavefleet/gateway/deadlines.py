"""Request deadlines on one shared timer instead of a timer per request.

`asyncio.timeout` arms and re-arms a loop timer per request and per stream chunk (a few
microseconds each, a noticeable share of a gateway's per-request budget). Here every request
registers a `Deadline` (an object whose `when` it moves as its answer progresses) and one
watcher task wakes every `tick_s` to cancel the tasks whose deadline passed. Deadlines are
therefore late by up to `tick_s` (0.05 s by default), which is nothing next to timeouts
measured in seconds.

    deadline = watch.arm(loop.time() + 30)
    try:
        ...                                 # deadline.when = ... to move it
    except asyncio.CancelledError:
        if watch.expired(deadline):         # our deadline, not the client going away
            ...
    finally:
        watch.disarm(deadline)
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["Deadline", "DeadlineWatch"]


class Deadline:
    __slots__ = ("acknowledged", "expired", "task", "when")

    def __init__(self, task: asyncio.Task[object], when: float) -> None:
        self.task = task
        self.when = when  # loop time; float("inf") = none
        self.expired = False
        self.acknowledged = False


class DeadlineWatch:
    def __init__(self, tick_s: float = 0.05) -> None:
        self._tick_s = tick_s
        self._armed: set[Deadline] = set()
        self._watcher: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        if self._watcher is None:
            self._loop = asyncio.get_running_loop()
            self._watcher = self._loop.create_task(self._watch())

    def now(self) -> float:
        """The loop's clock. Kept here because `asyncio.get_running_loop()` costs a getpid()
        system call on every call in Python 3.11, and the hot path wants the time 3-4 times."""
        assert self._loop is not None, "start() the watch first"
        return self._loop.time()

    async def aclose(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None

    def arm(self, when: float) -> Deadline:
        task = asyncio.current_task(self._loop)
        assert task is not None, "deadlines are armed from inside a task"
        deadline = Deadline(task, when)
        self._armed.add(deadline)
        return deadline

    def disarm(self, deadline: Deadline) -> None:
        self._armed.discard(deadline)

    def expired(self, deadline: Deadline) -> bool:
        """True if `deadline` cancelled its task; takes that cancellation back (Task.uncancel)."""
        if not deadline.expired:
            return False
        if not deadline.acknowledged:
            deadline.acknowledged = True
            deadline.task.uncancel()
        return True

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._tick_s)
            now = loop.time()
            for deadline in [d for d in self._armed if d.when <= now]:
                self._armed.discard(deadline)
                deadline.expired = True
                deadline.task.cancel()
