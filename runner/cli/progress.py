"""`dwf run`'s live per-node view: a rich table on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

_STYLE = {
    "Running": "cyan",
    "Succeeded": "green",
    "Failed": "red",
    "Cancelled": "yellow",
    "Skipped": "dim",
    "Retrying": "magenta",
}


class PlainProgress:
    """One line per transition: `12:00:01.250 greet Succeeded (attempt 1)`."""

    def __init__(self, out: TextIO = sys.stderr) -> None:
        self.out = out

    def __call__(self, kind: str, node_id: str | None, details: Mapping[str, Any]) -> None:
        """Print a transition."""
        stamp = time.strftime("%H:%M:%S")
        what = kind.removeprefix("Node").removeprefix("Execution")
        subject = node_id if node_id is not None else "execution"
        extra = ""
        if "attempt" in details:
            extra = f" (attempt {details['attempt']})"
        elif "attempts" in details:
            extra = f" (attempts {details['attempts']})"
        error = details.get("error")
        if isinstance(error, Mapping) and error.get("message"):
            extra += f": {error['message']}"
        self.out.write(f"{stamp} {subject} {what}{extra}\n")
        self.out.flush()

    def close(self) -> None:
        """Nothing to tear down."""


class LiveProgress:
    """A rich table of nodes, redrawn as they change."""

    def __init__(self, node_ids: list[str]) -> None:
        from rich.console import Console
        from rich.live import Live

        self.rows: dict[str, dict[str, Any]] = {n: {"status": "Pending"} for n in node_ids}
        self.execution = "Running"
        self.live = Live(self._table(), console=Console(stderr=True), refresh_per_second=12)
        self.live.start()

    def __call__(self, kind: str, node_id: str | None, details: Mapping[str, Any]) -> None:
        """Update a row and redraw."""
        status = kind.removeprefix("Node").removeprefix("Execution")
        if node_id is None:
            self.execution = status
        else:
            row = self.rows.setdefault(node_id, {})
            row["status"] = {"Started": "Running"}.get(status, status)
            if status == "Started":
                row["started"] = time.monotonic()
                row["attempt"] = details.get("attempt", 1)
            elif "started" in row:
                row["took"] = time.monotonic() - row["started"]
            error = details.get("error")
            if isinstance(error, Mapping):
                row["error"] = error.get("message")
        self.live.update(self._table())

    def close(self) -> None:
        """Stop redrawing (the last frame stays on screen)."""
        self.live.stop()

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(title=f"execution: {self.execution}", title_justify="left")
        for column in ("node", "status", "attempt", "time", "error"):
            table.add_column(column)
        for node_id, row in self.rows.items():
            status = row["status"]
            took = f"{row['took']:.2f}s" if "took" in row else ""
            table.add_row(
                node_id,
                f"[{_STYLE.get(status, '')}]{status}[/]" if status in _STYLE else status,
                str(row.get("attempt", "")),
                took,
                row.get("error") or "",
            )
        return table
