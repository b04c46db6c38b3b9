"""The HTTP API against its own OpenAPI document (SPEC §9, §14), with schemathesis in process.

schemathesis reads `/openapi.json` from the app and generates requests for every operation
(valid ones and invalid ones, with NUL characters in strings), sends them to the real app on a
real database, and checks every answer: no server error, a documented status, content type,
headers and body, valid requests accepted and invalid ones refused, `Allow` on 405 and OPTIONS.
`DWF_CONTRACT_EXAMPLES` (default 50) sets how many examples each operation gets.

The app runs in strict auth mode with an admin's token on every generated request, so
schemathesis also checks that an operation refuses missing and invalid tokens (401).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis.python import asgi

from runner.api.app import create_app
from runner.auth.tokens import mint
from runner.daemon import Daemon
from runner.settings import Settings

MAX_EXAMPLES = int(os.environ.get("DWF_CONTRACT_EXAMPLES", "50"))
SYNC_SECRET = "contract-sync-secret"
STRICT = {
    "auth_mode": "strict",
    "jwt_secret": "contract-jwt-secret-of-at-least-32-bytes",
    "jwt_issuer": "https://idp.contract.test",
    "jwt_audience": "dwf-contract",
    "rate_limit_execute": None,  # thousands of generated starts: not what this test is about
    "rate_limit_webhook": None,
}

#: Schema-valid requests the API refuses on purpose, because no schema can say why: a document
#: must pass lint (422 with every finding), a cursor must be one the API issued (400), a start's
#: `principal` must be the token's subject in strict mode (400).
CONFIG = {
    "generation": {"allow-x00": True, "max-examples": MAX_EXAMPLES},
    "checks": {"enabled": True},
    "operations": [
        {
            "include-name": [
                "POST /api/v1/workflows",
                "POST /api/v1/workflows/{workflowId}/triggers",
            ],
            "checks": {
                "positive_data_acceptance": {"expected-statuses": [200, 201, 404, 409, 422]}
            },
        },
        {
            "include-name": "GET /api/v1/executions",
            "checks": {"positive_data_acceptance": {"expected-statuses": [200, 400]}},
        },
        {
            "include-name": "POST /api/v1/workflows/{workflowId}/execute",
            "checks": {
                "positive_data_acceptance": {"expected-statuses": [200, 202, 400, 404, 409]}
            },
        },
    ],
}

HELLO = {
    "apiVersion": "dataworkflows/v1",
    "kind": "Workflow",
    "id": "hello",
    "status": "active",
    "startNode": "greet",
    "triggers": [
        {"id": "nightly", "type": "schedule", "cron": "0 2 * * *"},
        {"id": "hook", "type": "webhook", "path": "hello"},
    ],
    "nodes": [{"id": "greet", "actionType": "core.echo", "parameters": {"message": "hi"}}],
}


class Served:
    """The API as `dwf serve --roles api,worker` runs it, opened by its ASGI lifespan:
    schemathesis runs the app in an event loop of its own, where the Daemon's pool must live.
    One object for the module (schemathesis keeps the app it loads the document with); each
    test points it at its own database."""

    def __init__(self) -> None:
        self.settings: Settings | None = None
        self.app: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Open the Daemon on `lifespan.startup`, close it on shutdown; serve requests."""
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        assert self.settings is not None, "the `served` fixture sets the settings"
        await receive()  # lifespan.startup
        async with Daemon(self.settings) as daemon:
            app = daemon.app({"worker"})
            async with app.router.lifespan_context(app):
                await daemon.versions.record(HELLO, tenant=self.settings.tenant, source_kind="api")
                self.app = app
                await send({"type": "lifespan.startup.complete"})
                await receive()  # lifespan.shutdown
        self.app = None
        await send({"type": "lifespan.shutdown.complete"})


SERVED = Served()
# The document the app serves (building it touches no database); each request goes to SERVED.
schema = schemathesis.openapi.from_dict(
    create_app(SimpleNamespace(settings=Settings(**STRICT))).openapi(),  # type: ignore[arg-type]
    config=schemathesis.Config.from_dict(CONFIG),
)
schema.app = SERVED


@schema.auth()
class AdminToken:
    """An admin's bearer token on every generated request (schemathesis also sends requests
    without it, or with a bad one, and expects 401)."""

    def get(self, case: schemathesis.Case, context: Any) -> str:
        """A fresh token of the runner's tenant (tests use the default one)."""
        strict = Settings(**STRICT)  # type: ignore[arg-type]
        return mint(strict, subject="contract", roles=["admin"], tenant=strict.tenant, ttl=600)

    def set(self, case: schemathesis.Case, data: str, context: Any) -> None:
        """Send it as `Authorization: Bearer`."""
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@pytest.fixture
def served(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    """SERVED on this test's database; its Daemon is closed while the database still exists."""
    monkeypatch.setenv("DWF_SECRET_SYNC_WEBHOOK", SYNC_SECRET)  # so a push is 401, not 503
    SERVED.settings = dataclasses.replace(settings, **STRICT)  # type: ignore[arg-type]
    try:
        yield SERVED
    finally:
        asgi.shutdown_lifespans()
        SERVED.settings = None


@schema.parametrize()
@hypothesis.settings(deadline=None, suppress_health_check=list(hypothesis.HealthCheck))
@pytest.mark.timeout(300)
def test_every_operation_keeps_to_the_openapi_document(served, case: schemathesis.Case) -> None:
    case.call_and_validate()
