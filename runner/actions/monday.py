"""monday.com connectors: `monday.get-items` and `monday.create-item` (GraphQL API v2).

The endpoint is `DWF_MONDAY_API_URL` (default https://api.monday.com/v2), the token the secret
`monday-token`, sent as monday expects it: the bare token in `Authorization`, with an
`API-Version` header. Requests go through the shared httpx client and `core.http`'s verdicts
(429 and 5xx transient, with Retry-After); GraphQL errors about complexity, rate or concurrency
limits are transient too, every other GraphQL error is permanent with monday's code and message.
The filter translation of `monday.get-items` is described in docs/connectors.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from runner.actions import http
from runner.actions.base import Action, ActionContext, ActionResult, ResourceLink
from runner.credentials import masking

TOKEN_SECRET = "monday-token"
API_VERSION = "2024-10"
DEFAULT_LIMIT = 500
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500  # monday's own maximum for items_page
#: GraphQL error codes that clear up by waiting (the budget refills, the limit resets).
TRANSIENT_CODES = frozenset(
    {"ComplexityException", "COMPLEXITY_BUDGET_EXHAUSTED", "RATE_LIMIT_EXCEEDED",
     "IP_RATE_LIMIT_EXCEEDED", "maxConcurrencyExceeded", "CONCURRENCY_LIMIT_EXCEEDED",
     "INTERNAL_SERVER_ERROR"}
)  # fmt: skip
#: Filter operators as written in a workflow (camelCase) and as monday names them.
OPERATORS = {
    "anyOf": "any_of",
    "notAnyOf": "not_any_of",
    "isEmpty": "is_empty",
    "isNotEmpty": "is_not_empty",
    "greaterThan": "greater_than",
    "greaterThanOrEquals": "greater_than_or_equals",
    "lowerThan": "lower_than",
    "lowerThanOrEqual": "lower_than_or_equal",
    "between": "between",
    "containsText": "contains_text",
    "notContainsText": "not_contains_text",
    "containsTerms": "contains_terms",
    "startsWith": "starts_with",
    "endsWith": "ends_with",
}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_RETRY_IN = re.compile(r"(\d+)\s*seconds?")
_BOARD_ID = {"type": ["integer", "string"], "pattern": "^[0-9]+$", "minimum": 1}
_ITEM_FIELDS = "id name group { id title } column_values { id text type column { title } }"
_COLUMNS_QUERY = (
    "query ($board: [ID!]) { boards(ids: $board) { id columns { id title type settings_str } } }"
)
_FIRST_PAGE_QUERY = (
    "query ($board: [ID!], $limit: Int!, $query: ItemsQuery) { boards(ids: $board) { "
    f"items_page(limit: $limit, query_params: $query) {{ cursor items {{ {_ITEM_FIELDS} }} }} }} }}"
)
_NEXT_PAGE_QUERY = (
    "query ($cursor: String!, $limit: Int!) { next_items_page(cursor: $cursor, limit: $limit) "
    f"{{ cursor items {{ {_ITEM_FIELDS} }} }} }}"
)
_CREATE_MUTATION = (
    "mutation ($board: ID!, $name: String!, $group: String, $values: JSON) { "
    "create_item(board_id: $board, item_name: $name, group_id: $group, column_values: $values) "
    "{ id name url board { id } } }"
)


class Failure(Exception):
    """Ends the attempt with `result` (a failed ActionResult)."""

    def __init__(self, result: ActionResult) -> None:
        super().__init__(result.error.message if result.error else "failed")
        self.result = result


class GetItems(Action):
    """Read a board's items (filtered), following cursors up to `limit`."""

    type = "monday.get-items"
    description = (
        "Read items of a monday.com board with items_page, the filter translated to "
        "query_params rules, following next_items_page cursors up to `limit`; column values "
        "are flattened by column title."
    )
    parameters_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["boardId"],
        "properties": {
            "boardId": {**_BOARD_ID, "description": "The board's id."},
            "filter": {
                "type": "object",
                "description": "Column (id or title) → value, list of values (any of), null "
                "(is empty) or {operator: value}; see docs/connectors.md.",
            },
            "filterOperator": {
                "enum": ["and", "or"],
                "description": "How the filter's rules combine (default and).",
            },
            "limit": {
                "type": "integer",
                "minimum": 1,
                "maximum": 100_000,
                "description": f"Most items to return (default {DEFAULT_LIMIT}).",
            },
            "pageSize": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_PAGE_SIZE,
                "description": f"Items per request (default {DEFAULT_PAGE_SIZE}).",
            },
        },
    }
    outputs_schema = {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "description": "{id, name, group, columns: {column title: text}} per item.",
            },
            "count": {"type": "integer", "description": "How many items were returned."},
            "truncated": {
                "type": "boolean",
                "description": "Whether the board had more matching items than `limit`.",
            },
        },
    }

    async def execute(self, context: ActionContext, params: Mapping[str, Any]) -> ActionResult:
        """Translate the filter, read the first page, follow cursors up to the limit."""
        api = _Api(context)
        board = str(params["boardId"])
        limit = params.get("limit", DEFAULT_LIMIT)
        page_size = min(params.get("pageSize", DEFAULT_PAGE_SIZE), limit)
        try:
            query = None
            if params.get("filter"):
                columns = await api.columns(board)
                query = query_params(params["filter"], columns, params.get("filterOperator", "and"))
            variables = {"board": [board], "limit": page_size, "query": query}
            data = await api.call(_FIRST_PAGE_QUERY, variables)
            page = _path(_board(data, board), ("items_page",), f"board {board}'s items_page")
            items: list[dict[str, Any]] = []
            while True:
                cursor, batch = _page(page)
                items.extend(flatten(item) for item in batch)
                if cursor is None or len(items) >= limit:
                    break
                size = min(page_size, limit - len(items))
                data = await api.call(_NEXT_PAGE_QUERY, {"cursor": cursor, "limit": size})
                page = _path(data, ("next_items_page",), "next_items_page")
        except Failure as failure:
            return failure.result
        truncated = cursor is not None or len(items) > limit
        items = items[:limit]
        return ActionResult.ok({"items": items, "count": len(items), "truncated": truncated})


class CreateItem(Action):
    """Create an item on a board; returns a resource link to it."""

    type = "monday.create-item"
    description = (
        "Create an item on a monday.com board (create_item); returns {id, name, url} and a "
        "resource link, so an idempotencyKey makes a rerun reuse the item instead."
    )
    parameters_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["boardId", "itemName"],
        "properties": {
            "boardId": {**_BOARD_ID, "description": "The board's id."},
            "itemName": {"type": "string", "minLength": 1, "description": "The new item's name."},
            "groupId": {"type": "string", "description": "The group to create it in."},
            "columnValues": {
                "type": "object",
                "description": "Column id → value, in monday's column value format.",
            },
        },
    }
    outputs_schema = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "url": {"type": ["string", "null"]},
            "boardId": {"type": "string"},
        },
    }

    async def execute(self, context: ActionContext, params: Mapping[str, Any]) -> ActionResult:
        """One create_item mutation."""
        board = str(params["boardId"])
        variables = {
            "board": board,
            "name": params["itemName"],
            "group": params.get("groupId"),
            "values": json.dumps(params["columnValues"]) if params.get("columnValues") else None,
        }
        try:
            data = await _Api(context).call(_CREATE_MUTATION, variables)
            item = _path(data, ("create_item",), "create_item")
            item_id = item.get("id") if isinstance(item, dict) else None
            if not isinstance(item_id, str | int):
                raise Failure(_unexpected("create_item.id (the new item's id)", item))
        except Failure as failure:
            return failure.result
        url = item.get("url") if isinstance(item.get("url"), str) else None
        outputs = {"id": str(item_id), "name": item.get("name"), "url": url, "boardId": board}
        return ActionResult.ok(outputs, ResourceLink("monday", "item", str(item_id), url))


class _Api:
    """GraphQL calls of one attempt."""

    def __init__(self, context: ActionContext) -> None:
        self.context = context
        self.services = context.services

    async def call(self, query: str, variables: Mapping[str, Any]) -> dict[str, Any]:
        """The response's `data`; Failure for HTTP and GraphQL errors."""
        settings = self.services.settings
        client = await self.services.http_client()
        request = client.build_request(
            "POST",
            settings.monday_api_url,
            json={"query": query, "variables": dict(variables)},
            headers={
                "Authorization": self.services.credentials.get(TOKEN_SECRET),
                "API-Version": API_VERSION,
                **self.context.outbound_headers(),
            },
        )
        # The endpoint is the operator's configuration, not a workflow's: no address check.
        result = await http.send(
            client, request, allow_private=True, max_bytes=settings.http_max_response_bytes
        )
        if result.status != "Succeeded":
            assert result.error is not None
            raise Failure(
                ActionResult.failed(
                    f"monday {result.error.type}",
                    f"monday.com API: {result.error.message}",
                    transient=result.status == "RetriableFailure",
                    retry_after=result.retry_after,
                )
            )
        body = result.outputs.get("json")
        if not isinstance(body, dict):
            raise Failure(_unexpected("a JSON object with `data`", result.outputs.get("text")))
        if body.get("errors") or body.get("error_code") or body.get("error_message"):
            raise Failure(graphql_failure(body))
        data = body.get("data")
        if not isinstance(data, dict):
            raise Failure(_unexpected("`data` (an object)", body))
        return data

    async def columns(self, board: str) -> list[dict[str, Any]]:
        data = await self.call(_COLUMNS_QUERY, {"board": [board]})
        columns = _path(_board(data, board), ("columns",), f"board {board}'s columns")
        if not isinstance(columns, list):
            raise Failure(_unexpected(f"board {board}'s columns (a list)", columns))
        return [c for c in columns if isinstance(c, dict)]


def graphql_failure(body: Mapping[str, Any]) -> ActionResult:
    """monday's error document as a failed result (transient for limits)."""
    errors = body["errors"] if isinstance(body.get("errors"), list) else []
    first = errors[0] if errors and isinstance(errors[0], dict) else {}
    extensions = first["extensions"] if isinstance(first.get("extensions"), dict) else {}
    code = str(extensions.get("code") or body.get("error_code") or "GraphQLError")
    message = str(first.get("message") or body.get("error_message") or "unknown error")
    transient = code in TRANSIENT_CODES
    retry_after = None
    if transient:
        seconds = extensions.get("retry_in_seconds")
        found = _RETRY_IN.search(message)
        if isinstance(seconds, int | float):
            retry_after = float(seconds)
        elif found:
            retry_after = float(found.group(1))
    return ActionResult.failed(
        f"monday {code}", f"monday.com API: {code}: {message}", transient=transient,
        retry_after=retry_after,
    )  # fmt: skip


def query_params(
    spec: Mapping[str, Any], columns: list[dict[str, Any]], operator: str = "and"
) -> dict[str, Any]:
    """The workflow's filter as monday's ItemsQuery {rules, operator} (docs/connectors.md)."""
    by_id = {c.get("id"): c for c in columns}
    by_title = {str(c.get("title", "")).casefold(): c for c in columns}
    rules = []
    for key, value in spec.items():
        column = by_id.get(key) or by_title.get(str(key).casefold())
        if column is None:
            known = ", ".join(f"{c.get('title')} ({c.get('id')})" for c in columns)
            raise Failure(
                ActionResult.failed(
                    "UnknownColumn",
                    f"parameters.filter.{key}: the board has no column with that id or title "
                    f"(columns: {known})",
                )
            )
        rules.append(_rule(str(key), column, value))
    return {"rules": rules, "operator": operator}


def _rule(key: str, column: Mapping[str, Any], value: Any) -> dict[str, Any]:
    operator = "any_of"
    if value is None:
        operator, value = "is_empty", []
    elif isinstance(value, dict):
        if len(value) != 1 or next(iter(value)) not in OPERATORS:
            raise Failure(
                ActionResult.failed(
                    "InvalidFilter",
                    f"parameters.filter.{key}: an object must have exactly one operator key, "
                    f"one of {', '.join(OPERATORS)}",
                )
            )
        name, value = next(iter(value.items()))
        operator = OPERATORS[name]
        if operator in ("is_empty", "is_not_empty"):
            value = []
    values = list(value) if isinstance(value, list) else [value]
    kind = column.get("type")
    if kind in ("status", "color"):
        values = [_status_index(key, column, v) for v in values]
    elif kind == "date":
        values = _date_values(values)
    return {"column_id": column["id"], "compare_value": values, "operator": operator}


def _status_index(key: str, column: Mapping[str, Any], value: Any) -> int:
    """A status label's index (monday filters status columns by index)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        settings = json.loads(column.get("settings_str") or "{}")
    except ValueError:
        settings = {}
    labels = settings.get("labels") if isinstance(settings, dict) else None
    labels = labels if isinstance(labels, dict) else {}
    for index, label in labels.items():
        if str(label).casefold() == str(value).casefold():
            return int(index)
    raise Failure(
        ActionResult.failed(
            "UnknownLabel",
            f"parameters.filter.{key}: `{value}` is not a label of status column "
            f"`{column.get('title')}` (labels: {', '.join(map(str, labels.values())) or 'none'})",
        )
    )


def _date_values(values: list[Any]) -> list[Any]:
    """Explicit dates become monday's ["EXACT", "YYYY-MM-DD"]; keywords (TODAY…) stay."""
    out: list[Any] = []
    for value in values:
        if isinstance(value, str) and _DATE.match(value):
            out.extend(["EXACT", value])
        else:
            out.append(value)
    return out


def flatten(item: Mapping[str, Any]) -> dict[str, Any]:
    """{id, name, group, columns: {title: text}} from monday's item shape."""
    if not isinstance(item, dict) or "id" not in item:
        raise Failure(_unexpected("an item with `id`, `name` and `column_values`", item))
    columns: dict[str, Any] = {}
    for value in item.get("column_values") or []:
        if not isinstance(value, dict):
            continue
        column = value["column"] if isinstance(value.get("column"), dict) else {}
        columns[str(column.get("title") or value.get("id"))] = value.get("text")
    group = item["group"] if isinstance(item.get("group"), dict) else {}
    return {
        "id": str(item["id"]),
        "name": item.get("name"),
        "group": group.get("title"),
        "columns": columns,
    }


def _page(page: Any) -> tuple[str | None, list[Any]]:
    if not isinstance(page, dict) or not isinstance(page.get("items"), list):
        raise Failure(_unexpected("a page {cursor, items: [...]}", page))
    cursor = page.get("cursor")
    return (cursor if isinstance(cursor, str) and cursor else None), page["items"]


def _board(data: Mapping[str, Any], board: str) -> Any:
    """The one board `boards(ids: [board])` answered; BoardNotFound when it answered none."""
    boards = data.get("boards")
    if isinstance(boards, list) and not boards:
        raise Failure(
            ActionResult.failed(
                "BoardNotFound",
                f"monday.com board {board} does not exist or is not shared with the token's user",
            )
        )
    return _path(data, ("boards", 0), f"board {board}")


def _path(data: Any, path: tuple[Any, ...], what: str) -> Any:
    value = data
    for part in path:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            raise Failure(_unexpected(what, data)) from None
    return value


def _unexpected(expected: str, got: Any) -> ActionResult:
    shown = masking.cut(json.dumps(got, default=str), 200)  # masked before the cut
    return ActionResult.failed(
        "UnexpectedResponse", f"monday.com API: expected {expected} in the response, got {shown}"
    )
