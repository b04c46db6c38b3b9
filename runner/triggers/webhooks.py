"""Webhook deliveries (SPEC §5): route, authenticate, read, activate, start.

    delivery = await Webhooks(db, starts, settings, credentials, replica=name).deliver(
        tenant, path, body, headers, query)

In that order, so nothing reads an unauthenticated body: the path must be an enabled webhook
trigger of an Active workflow (else 404, the same answer whatever the reason, naming no path);
the signature must match the raw body (401, saying only that it was refused: the log says why);
the body must be a JSON object or a form (`application/x-www-form-urlencoded`, as Slack sends
slash commands and interactive messages: its fields, with a JSON `payload` field parsed), else
415 for another content type and 400 for a bad body; `activationCondition` false answers
`activated: false`. The condition runs in a worker thread, so a slow one does not hold up the
event loop's other requests. The execution, its queue row and the fire log entry commit in one
transaction before this returns, so the caller's 2xx always follows the commit. The delivery id
from `requestIdHeader` is the execution's request id: a redelivery finds the execution it
started (`created` False).
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from runner.credentials.provider import CredentialProvider
from runner.engine import conditions, requests
from runner.engine.requests import StartRequest, check_trigger
from runner.engine.starts import Starts
from runner.errors import (
    ConditionError,
    Conflict,
    InvalidRequest,
    MissingCredential,
    NotFound,
    WebhookRejected,
)
from runner.observability import tracing
from runner.settings import Settings
from runner.spec import storable
from runner.spec.diagnostics import format_path
from runner.spec.model import WebhookTrigger, trigger_from_data
from runner.store import triggers
from runner.store.database import Database
from runner.store.triggers import TriggerRow
from runner.triggers import signatures

_log = structlog.get_logger(__name__)

#: The one answer for every path that does not lead to an enabled hook of an Active workflow.
NOT_FOUND = "no webhook is served at this path for this tenant"
REFUSED = "the request's signature was refused"
#: The longest delivery id kept as a request id (as the API's `requestId`).
MAX_REQUEST_ID_LENGTH = 200
JSON_MEDIA_TYPE = "application/json"
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
#: The form field Slack's interactive messages carry their JSON in.
FORM_JSON_FIELD = "payload"
#: The most fields a form body may have (the body limit bounds their size).
MAX_FORM_FIELDS = 1000
_JSON_MAYBE_UNSTORABLE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a delivery did: started (or found, `created` False) an execution, or not activated;
    `form` when its body was a form (Slack's slash commands and interactive messages)."""

    activated: bool
    execution_id: uuid.UUID | None = None
    created: bool = False
    form: bool = False


class Webhooks:
    """Turns signed HTTP deliveries into executions."""

    def __init__(
        self,
        db: Database,
        starts: Starts,
        settings: Settings,
        credentials: CredentialProvider,
        *,
        replica: str,
    ) -> None:
        self.db, self.starts, self.settings = db, starts, settings
        self.credentials, self.replica = credentials, replica
        # Activation conditions run in a thread, one at a time: QuickJS holds the GIL while it
        # runs, so more threads would only take more of the event loop's turns.
        self._conditions = asyncio.Semaphore(1)

    async def deliver(
        self,
        tenant: str,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        query: Mapping[str, str],
    ) -> Delivery:
        """Handle one delivery (module docstring); WebhookRejected says how it was refused."""
        headers = {k.lower(): v for k, v in headers.items()}
        traceparent, tracestate = tracing.incoming(headers)  # the sender's W3C trace context
        try:
            # One transaction from the routing to the start: one connection and one commit per
            # delivery; only checks without I/O run between its statements.
            async with self.db.transaction() as conn:
                row = await triggers.webhook_route(conn, tenant, path)
                if row is None:
                    raise WebhookRejected(404, "not-found", NOT_FOUND)
                hook = trigger_from_data(row.config)
                assert isinstance(hook, WebhookTrigger)
                self._authenticate(row, hook, body, headers)
                media = _media_type(headers.get("content-type"))
                payload = _payload(body, media, self.settings)
                if hook.activation_condition is not None and not await self._activated(
                    row, hook, payload, headers, query
                ):
                    await triggers.record_delivery(
                        conn, row, "skipped", self.replica,
                        reason="activationCondition is false",
                    )  # fmt: skip
                    return Delivery(activated=False, form=media == FORM_MEDIA_TYPE)
                execution, created = await self.starts.start(
                    StartRequest(
                        workflow_id=row.workflow_id,
                        trigger=payload,
                        trigger_type="webhook",
                        trigger_id=row.trigger_id,
                        request_id=_request_id(hook, headers),
                        principal=principal(row.trigger_id),
                        tenant=row.tenant,
                        headers=headers,
                        query=query,
                        traceparent=traceparent,
                        tracestate=tracestate,
                    ),
                    conn=conn,
                )
                if created:
                    await triggers.record_delivery(
                        conn, row, "fired", self.replica, execution_id=execution.execution_id
                    )
        except (Conflict, NotFound):
            # Archived or deleted between the routing and the start: as if it never existed.
            raise WebhookRejected(404, "not-found", NOT_FOUND) from None
        except InvalidRequest as exc:
            raise WebhookRejected(400, "invalid-request", str(exc)) from exc
        return Delivery(
            activated=True, execution_id=execution.execution_id, created=created,
            form=media == FORM_MEDIA_TYPE,
        )  # fmt: skip

    def _authenticate(
        self, row: TriggerRow, hook: WebhookTrigger, body: bytes, headers: Mapping[str, str]
    ) -> None:
        if hook.signature is None:
            return
        try:
            secret = self.credentials.get(hook.secret_ref or "")
        except MissingCredential as exc:
            # The operator's problem, told in the log; the sender learns only the refusal.
            _log.error(
                "webhook secret missing", workflowId=row.workflow_id, triggerId=row.trigger_id,
                reason=str(exc),
            )  # fmt: skip
            raise WebhookRejected(401, "unauthorized", REFUSED) from None
        problem = signatures.verify(
            hook.signature, secret, body, headers, header=hook.signature_header
        )
        if problem is not None:
            _log.warning(
                "webhook signature refused", workflowId=row.workflow_id,
                triggerId=row.trigger_id, reason=problem,
            )  # fmt: skip
            raise WebhookRejected(401, "unauthorized", REFUSED)

    async def _activated(
        self,
        row: TriggerRow,
        hook: WebhookTrigger,
        payload: dict[str, Any],
        headers: Mapping[str, str],
        query: Mapping[str, str],
    ) -> bool:
        assert hook.activation_condition is not None
        event = requests.event_scope("webhook", row.trigger_id, headers=headers, query=query)
        try:
            # Off the event loop: a condition may run up to its time limit, and every other
            # request is served meanwhile. Each evaluation makes and frees its own QuickJS
            # context in that thread, so no context crosses threads.
            async with self._conditions:
                return await asyncio.to_thread(
                    conditions.evaluate,
                    hook.activation_condition,
                    {"trigger": payload, "event": event},
                    where=f"webhook trigger {row.trigger_id!r} (activationCondition)",
                    time_limit=self.settings.condition_time_limit,
                    memory_limit=self.settings.condition_memory_limit,
                )
        except ConditionError as exc:
            raise WebhookRejected(422, "activation-failed", str(exc)) from exc


def principal(trigger_id: str) -> str:
    """Who started a webhook's executions (`execution.principal`): `webhook:<triggerId>`."""
    return f"webhook:{trigger_id}"


def _request_id(hook: WebhookTrigger, headers: Mapping[str, str]) -> str | None:
    """The delivery id from the trigger's `requestIdHeader`, when it names one and it was sent."""
    if hook.request_id_header is None:
        return None
    request_id = headers.get(hook.request_id_header.lower()) or None
    if request_id is not None and len(request_id) > MAX_REQUEST_ID_LENGTH:
        raise WebhookRejected(
            400, "invalid-request",
            f"the {hook.request_id_header} header is longer than {MAX_REQUEST_ID_LENGTH} "
            "characters", field=f"header.{hook.request_id_header.lower()}",
        )  # fmt: skip
    return request_id


def _media_type(content_type: str | None) -> str:
    """The media type of a Content-Type header, lower-cased; none is read as JSON."""
    return content_type.split(";", 1)[0].strip().lower() if content_type else JSON_MEDIA_TYPE


def _payload(body: bytes, media: str, settings: Settings) -> dict[str, Any]:
    """The body as the trigger payload: a JSON object (an empty body is `{}`) or a form's fields."""
    if media == FORM_MEDIA_TYPE:
        data: Any = _form(body)
    elif media == JSON_MEDIA_TYPE or media.endswith("+json"):
        data = _json(body)
    else:
        raise WebhookRejected(
            415, "unsupported-media-type",
            f"the body must be JSON (Content-Type: {JSON_MEDIA_TYPE}) or a form "
            f"({FORM_MEDIA_TYPE}), not {media}",
        )  # fmt: skip
    # In JSON such text can only be an escape (a raw NUL or an encoded surrogate is not valid
    # JSON or UTF-8), so a body without one needs no walk.
    maybe = media == FORM_MEDIA_TYPE or _JSON_MAYBE_UNSTORABLE.search(body) is not None
    found = storable.find(data) if maybe else None
    if found is not None:
        path, problem = found
        field = _field(path)
        raise WebhookRejected(
            400, "invalid-request", f"{field}: {problem}: the runner cannot store it", field=field
        )
    try:
        return check_trigger(
            data, max_bytes=settings.max_trigger_bytes, max_depth=settings.max_trigger_depth
        )
    except InvalidRequest as exc:
        raise WebhookRejected(400, "invalid-request", str(exc), field="body") from exc


def _json(body: bytes) -> Any:
    if not body.strip():
        return {}
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise WebhookRejected(
            400, "invalid-request", f"the body is not valid JSON: {exc}", field="body"
        ) from exc


def _form(body: bytes) -> dict[str, Any]:
    """A form's fields (a field sent more than once: a list of its values, in order), with the
    JSON text of a `payload` field parsed, as Slack's interactive messages need."""
    try:
        pairs = urllib.parse.parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )  # fmt: skip
    except ValueError as exc:  # UnicodeDecodeError among them
        reason = "it is not UTF-8 text" if isinstance(exc, UnicodeError) else str(exc)
        raise WebhookRejected(
            400, "invalid-request", f"the form body cannot be read: {reason}", field="body"
        ) from exc
    fields: dict[str, Any] = {}
    for name, value in pairs:
        if name not in fields:
            fields[name] = value
        elif isinstance(fields[name], list):
            fields[name].append(value)
        else:
            fields[name] = [fields[name], value]
    if isinstance(fields.get(FORM_JSON_FIELD), str):
        try:
            fields[FORM_JSON_FIELD] = json.loads(fields[FORM_JSON_FIELD])
        except (ValueError, RecursionError) as exc:
            field = f"body.{FORM_JSON_FIELD}"
            raise WebhookRejected(
                400, "invalid-request", f"{field}: the form field is not valid JSON: {exc}",
                field=field,
            ) from exc  # fmt: skip
    return fields


def _field(path: tuple[str | int, ...]) -> str:
    """Where in the body: `body`, `body.text`, `body.payload.actions[0].value`."""
    return f"body.{format_path(path)}" if path else "body"
