"""What routes take from the running app (FastAPI dependencies), set up by `app.create_app`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from runner.engine.conductor import Conductor
from runner.settings import Settings
from runner.store.database import Database
from runner.store.executions import ExecutionRow


def _database(request: Request) -> Database:
    return request.app.state.db


def _conductor(request: Request) -> Conductor:
    return request.app.state.conductor


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _tenant(request: Request) -> str:
    # Loose auth mode (SPEC §12): the configured tenant. Strict mode takes it from the token.
    return request.app.state.settings.tenant


def _launch(request: Request) -> Callable[[ExecutionRow], None]:
    return request.app.state.launch


DatabaseDep = Annotated[Database, Depends(_database)]
ConductorDep = Annotated[Conductor, Depends(_conductor)]
SettingsDep = Annotated[Settings, Depends(_settings)]
TenantDep = Annotated[str, Depends(_tenant)]
LaunchDep = Annotated[Callable[[ExecutionRow], None], Depends(_launch)]
