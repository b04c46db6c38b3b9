"""Webhook deliveries (SPEC §5): route, authenticate, read, activate, start.

    delivery = await Webhooks(db, starts, settings, credentials, replica=name).deliver(
        tenant, path, body, headers, query)

In that order, so nothing reads an unauthenticated body: the path must be an enabled webhook
trigger of an Active workflow (else 404, the same answer whatever the reason, naming no path);
the signature must match the raw body (401); the body must be a JSON object (415 for another
content type, 400 for bad JSON); `activationCondition` false answers `activated: false`. The
execution, its queue row and the fire log entry commit in one transaction before this returns,
so the caller's 2xx always follows the commit. The delivery id from `requestIdHeader` is the
execution's request id: a redelivery finds the execution it started (`created` False).
"""

from __future__ import annotations

import json
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
from runner.settings import Settings
from runner.spec.model import WebhookTrigger, trigger_from_data
from runner.store import triggers
from runner.store.database import Database
from runner.store.triggers import TriggerRow
from runner.triggers import signatures

_log = structlog.get_logger(__name__)

#: Who started an execution from a webhook (`execution.principal`).
WEBHOOK_PRINCIPAL = "system:webhook"
#: The one answer for every path that does not lead to an enabled hook of an Active workflow.
NOT_FOUND = "no webhook is served at this path for this tenant"
REFUSED = "the request's signature was refused"
#: The longest delivery id kept as a request id (as the API's `requestId`).
MAX_REQUEST_ID_LENGTH = 200


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a delivery did: started (or found, `created` False) an execution, or not activated."""

    activated: bool
    execution_id: uuid.UUID | None = None
    created: bool = False


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
                payload = _payload(body, headers.get("content-type"), self.settings)
                if hook.activation_condition is not None and not self._activated(
                    row, hook, payload, headers, query
                ):
                    await triggers.record_delivery(
                        conn, row, "skipped", self.replica,
                        reason="activationCondition is false",
                    )  # fmt: skip
                    return Delivery(activated=False)
                execution, created = await self.starts.start(
                    StartRequest(
                        workflow_id=row.workflow_id,
                        trigger=payload,
                        trigger_type="webhook",
                        trigger_id=row.trigger_id,
                        request_id=_request_id(hook, headers),
                        principal=WEBHOOK_PRINCIPAL,
                        tenant=row.tenant,
                        headers=headers,
                        query=query,
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
        return Delivery(activated=True, execution_id=execution.execution_id, created=created)

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
            raise WebhookRejected(401, "unauthorized", f"{REFUSED}: {problem}")

    def _activated(
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
            return conditions.evaluate(
                hook.activation_condition,
                {"trigger": payload, "event": event},
                where=f"webhook trigger {row.trigger_id!r} (activationCondition)",
                time_limit=self.settings.condition_time_limit,
                memory_limit=self.settings.condition_memory_limit,
            )
        except ConditionError as exc:
            raise WebhookRejected(422, "activation-failed", str(exc)) from exc


def _request_id(hook: WebhookTrigger, headers: Mapping[str, str]) -> str | None:
    """The delivery id from the trigger's `requestIdHeader`, when it names one and it was sent."""
    if hook.request_id_header is None:
        return None
    request_id = headers.get(hook.request_id_header.lower()) or None
    if request_id is not None and len(request_id) > MAX_REQUEST_ID_LENGTH:
        raise WebhookRejected(
            400, "invalid-request",
            f"the {hook.request_id_header} header is longer than {MAX_REQUEST_ID_LENGTH} "
            "characters",
        )  # fmt: skip
    return request_id


def _payload(body: bytes, content_type: str | None, settings: Settings) -> dict[str, Any]:
    """The body as the trigger payload: a JSON object (an empty body is `{}`)."""
    if content_type:
        media = content_type.split(";", 1)[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            raise WebhookRejected(
                415, "unsupported-media-type",
                f"the body must be JSON (Content-Type: application/json), not {media}",
            )  # fmt: skip
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise WebhookRejected(400, "invalid-request", f"the body is not valid JSON: {exc}") from exc
    try:
        return check_trigger(
            data, max_bytes=settings.max_trigger_bytes, max_depth=settings.max_trigger_depth
        )
    except InvalidRequest as exc:
        raise WebhookRejected(400, "invalid-request", str(exc)) from exc
