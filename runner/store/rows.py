"""Rows become frozen dataclasses: `from_row` builds one from a dict row (psycopg's dict_row);
`document` turns one back into JSON for the API and the CLI."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Self


class FromRow:
    """Mixin for frozen row dataclasses whose field names are the table's column names."""

    __slots__ = ()

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Self:
        """Build from a dict row (extra columns are ignored)."""
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})  # type: ignore[arg-type]  # cls is a dataclass

    def document(self, *names: str, **renamed: str) -> dict[str, Any]:
        """The named fields (or properties) as JSON, keys in camelCase (`workflow_id` is
        `workflowId`), UUIDs and times as text; `renamed` gives a key its field
        (`parameters="parameters_json"`)."""
        pairs = [(_camel(name), name) for name in names] + list(renamed.items())
        return {key: _json(getattr(self, name)) for key, name in pairs}


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.capitalize() for part in rest)


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value
