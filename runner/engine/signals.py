"""How the outside reaches a running execution, and how a run can end short of its outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Called with (event kind, node id or None, details) as the execution progresses (`dwf run`).
Observer = Callable[[str, str | None, Mapping[str, Any]], None]
#: A run that stops short of its outcome: parked (only subworkflow children are awaited) or
#: released (its worker is draining; another resumes it).
PARKED, RELEASED = "Parked", "Released"


@dataclass(slots=True)
class Signals:
    """How the outside reaches a running execution: cancel it, wake it, drain it."""

    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # a child it waits for ended
    drain: asyncio.Event = field(default_factory=asyncio.Event)  # finish running nodes, stop
