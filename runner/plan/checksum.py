"""Definition checksums (SPEC §6): SHA-256 over the canonical JSON of a loaded document.

Canonical JSON has sorted keys, no whitespace and no ASCII escaping, so comments, key order and
layout of the YAML never change a checksum, while any change of a value does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping


def _plain(value: object) -> object:
    # Frozen model data (mapping proxies) is JSON-ready except for its type; tuples already
    # encode as lists. Anything else (dates, sets, bytes) is not JSON and must fail loudly.
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON data and cannot be checksummed")


def canonical_json(data: object) -> str:
    """The canonical JSON text of plain JSON data: sorted keys, compact, UTF-8, no NaN."""
    return json.dumps(
        data,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_plain,
    )


def definition_checksum(data: object) -> str:
    """Hex SHA-256 of the canonical JSON of a loaded workflow document."""
    return hashlib.sha256(canonical_json(data).encode("utf-8")).hexdigest()
