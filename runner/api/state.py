"""What routes take from the running app (FastAPI dependencies), set up by `app.create_app`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from runner.engine.conductor import Conductor
from runner.settings import Settings
from runner.store.database import Database


def _database(request: Request) -> Database:
    return request.app.state.db


def _conductor(request: Request) -> Conductor:
    return request.app.state.conductor


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _tenant(request: Request) -> str:
    # Loose auth mode (SPEC §12): the configured tenant. Strict mode takes it from the token.
    return request.app.state.settings.tenant


DatabaseDep = Annotated[Database, Depends(_database)]
ConductorDep = Annotated[Conductor, Depends(_conductor)]
SettingsDep = Annotated[Settings, Depends(_settings)]
TenantDep = Annotated[str, Depends(_tenant)]
