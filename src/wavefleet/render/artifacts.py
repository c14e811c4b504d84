"""The rendered tree before it touches the disk: relative path -> content, mode and purpose."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Artifact", "RenderedTree"]


@dataclass(frozen=True)
class Artifact:
    path: str  # relative to the output folder, '/'-separated: "<node>/compose.yaml"
    content: str
    purpose: str
    executable: bool = False


@dataclass
class RenderedTree:
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    # node -> [(port, what listens there)] for the clash check
    ports: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)  # node -> address

    def add(self, artifact: Artifact) -> None:
        if artifact.path in self.artifacts:
            raise ValueError(f"two artifacts render to {artifact.path}")
        self.artifacts[artifact.path] = artifact

    def claim_port(self, node: str, port: int, owner: str) -> None:
        self.ports.setdefault(node, []).append((port, owner))

    def under(self, node: str) -> list[Artifact]:
        prefix = f"{node}/"
        return [a for path, a in sorted(self.artifacts.items()) if path.startswith(prefix)]
