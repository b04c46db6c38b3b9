"""The role of every route is written once (runner.api.access.ROLES); docs/api.md shows it."""

from __future__ import annotations

import re
from pathlib import Path

from runner.api.access import ROLES

DOCS = Path(__file__).parents[2] / "docs" / "api.md"
ROW = re.compile(r"^\| `(GET|POST|PUT|PATCH|DELETE) (\S+)` \| ([^|]+) \|", re.MULTILINE)


def test_the_endpoints_table_of_the_api_docs_shows_each_routes_role() -> None:
    shown = {
        (method, path.replace("{path}", "{path:path}")): role.strip()
        for method, path, role in ROW.findall(DOCS.read_text(encoding="utf-8"))
    }
    public = {"GET": "public", "POST": "public (signature)"}
    expected = {key: public[key[0]] if role is None else role.label for key, role in ROLES.items()}
    assert shown == expected
