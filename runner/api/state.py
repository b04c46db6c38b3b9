"""What routes take from the running app (FastAPI dependencies): the parts of the process that
`create_app` was given (the Daemon), never parts of their own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request

from runner.actions.services import ActionServices
from runner.api.access import IdentityDep
from runner.engine.conductor import Conductor
from runner.engine.starts import Starts
from runner.settings import Settings
from runner.store.database import Database
from runner.triggers.webhooks import Webhooks
from runner.versions import Versions


class Parts(Protocol):
    """The process's parts the API uses (the Daemon has them all)."""

    settings: Settings
    db: Database
    services: ActionServices
    starts: Starts
    conductor: Conductor
    versions: Versions
    webhooks: Webhooks


def parts(request: Request) -> Parts:
    """The parts the app was created with."""
    found: Parts = request.app.state.parts
    return found


def _part(name: str) -> Callable[[Request], Any]:
    # Coroutines, so FastAPI calls them in line rather than in a worker thread (a thread hop a
    # dependency, per request).
    async def part(request: Request) -> Any:
        return getattr(parts(request), name)

    return part


async def _tenant(identity: IdentityDep) -> str:
    # Strict mode: the token's tenant claim; loose mode: the runner's tenant (SPEC §12).
    return identity.tenant


DatabaseDep = Annotated[Database, Depends(_part("db"))]
ServicesDep = Annotated[ActionServices, Depends(_part("services"))]
StartsDep = Annotated[Starts, Depends(_part("starts"))]
ConductorDep = Annotated[Conductor, Depends(_part("conductor"))]
VersionsDep = Annotated[Versions, Depends(_part("versions"))]
WebhooksDep = Annotated[Webhooks, Depends(_part("webhooks"))]
SettingsDep = Annotated[Settings, Depends(_part("settings"))]
TenantDep = Annotated[str, Depends(_tenant)]
