"""Progress events: what every long engine call yields, read alike by the CLI, the GUI and tests."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Event", "run"]


@dataclass(frozen=True)
class Event:
    """One tick of a long job: ``event`` names the kind ('epoch', 'image', 'step', 'done', …),
    ``step`` of ``total`` says how far; ``data`` carries numbers such as the loss."""

    event: str
    step: int = 0
    total: int = 0
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"event": self.event, "step": self.step, "total": self.total, **self.data})


def run(events, on_event=None) -> Event | None:
    """Drain an engine generator, passing each event to ``on_event``; return the last one."""
    last = None
    for ev in events:
        last = ev
        if on_event is not None:
            on_event(ev)
    return last
