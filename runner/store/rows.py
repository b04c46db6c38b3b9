"""Rows become frozen dataclasses: `from_row` builds one from a dict row (psycopg's dict_row)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Self


class FromRow:
    """Mixin for frozen row dataclasses whose field names are the table's column names."""

    __slots__ = ()

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Self:
        """Build from a dict row (extra columns are ignored)."""
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})  # type: ignore[arg-type]
