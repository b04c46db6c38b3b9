"""A workflow's lifecycle (SPEC §6): Draft → Active → Archived (and back to Active), and the one
rule across workflows it brings: an Active workflow starts only Active subworkflows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

Status = Literal["Draft", "Active", "Archived"]
#: The document's `status` (lower case) as the database records it.
STATUS_OF: Mapping[str, Status] = {"draft": "Draft", "active": "Active", "archived": "Archived"}


def declared_status(document: Mapping[str, Any]) -> Status:
    """The status a document declares (`draft` when it says nothing)."""
    return STATUS_OF.get(str(document.get("status", "draft")), "Draft")


def subworkflow_refusal(target: str, status: str | None) -> str | None:
    """Why an Active workflow may not start `target`, which is `status` (None: missing); None
    when it may (the target is Active)."""
    if status == "Active":
        return None
    state = "missing" if status is None else status
    return (
        f"subworkflow target `{target}` is {state}; an Active workflow may start only Active "
        "workflows (activate the target first, or keep this one a Draft)"
    )
