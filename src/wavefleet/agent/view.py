"""`wave agent status` on a terminal: the host's devices and engines as tables that never cut a cell."""

from __future__ import annotations

from rich.console import Console, Group, RenderableType
from rich.text import Text

from wavefleet.agent.status import AgentStatus, ModelStatus
from wavefleet.agent.units import format_bytes, format_seconds
from wavefleet.terminal import fit, folding_table

__all__ = ["status_view"]

_STATE_STYLE = {
    "ready": "green",
    "starting": "yellow",
    "draining": "yellow",
    "stopping": "yellow",
    "failed": "red",
}


def status_view(status: AgentStatus, console: Console) -> RenderableType:
    devices = folding_table("device", "total", "budget", "reserved", "free", title=f"{status.host}: devices")
    for d in status.devices:
        devices.add_row(
            d.name if d.gpu is None else f"{d.name} (GPU {d.gpu})",
            format_bytes(d.total),
            format_bytes(d.budget),
            format_bytes(d.reserved),
            format_bytes(d.free),
        )
    models = folding_table(
        "model", "state", "device", "buffers est / logged", "slots x ctx", "load", "in flight", "restarts", "detail",
        title=f"{status.host}: engines",
    )  # fmt: skip
    for m in status.models:
        models.add_row(
            m.name + (" (pinned)" if m.pinned else ""),
            Text(m.state.value, style=_STATE_STYLE.get(m.state.value, "")),
            m.device,
            _memory(m),
            f"{m.slots} x {m.context}",
            format_seconds(m.cold_start.total) if m.cold_start else "—",
            f"{m.inflight}" + (f" (+{m.waiting} waiting)" if m.waiting else ""),
            str(m.restarts),
            m.detail,
        )
    parts: list[RenderableType] = [fit(devices, console), fit(models, console)]
    for m in status.models:
        if m.log:
            parts.append(Text(f"{m.name}: last {len(m.log)} lines of its engine", style="bold"))
            parts.append(Text("\n".join(m.log), style="dim"))
    return Group(*parts)


def _memory(model: ModelStatus) -> str:
    memory = model.memory
    if model.external:
        return "—"
    text = format_bytes(memory.estimate + memory.estimate_host - memory.estimate_runtime)
    if memory.buffers is not None:
        text += f" / {format_bytes(memory.buffers)}"
        if memory.error is not None:
            text += f" ({memory.error:+.0%})"
    return text
