"""What actions of one process share: credentials, the outbound HTTP client, connector settings.

    services = ActionServices(settings)     # one per process: the Daemon makes it
    token = services.credentials.get("slack-token")
    client = await services.http_client()   # one httpx.AsyncClient per event loop

The engine hands each attempt `ActionContext.services`. The HTTP client is shared by every
attempt on the event loop, so connections are kept alive between calls; it is closed by `aclose`
(the Daemon does, when it closes), or else when the loop shuts down its async generators (what
`asyncio.run` does at its end).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from runner.credentials.provider import CredentialProvider
from runner.settings import Settings

if TYPE_CHECKING:
    import httpx

#: Outbound calls carry the execution's correlation id under this header (SPEC §10).
CORRELATION_HEADER = "X-Correlation-Id"


def trace_headers() -> dict[str, str]:
    """The W3C trace context of the current span as headers (`traceparent`, `tracestate`):
    while an action runs, its attempt's span, or the trace its execution was started in
    (`runner.observability.tracing`); {} when there is none."""
    # Imported here: `dwf lint` loads the actions and needs no tracing.
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    headers: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(headers)
    return headers


class TemplateSecrets:
    """`secrets` in templates: `secrets.NAME` or `secrets['slack-token']` reads through the
    provider (MissingCredential names the secret). Templates may only place a secret whole
    (`runner.spec.placement`, checked before a render); as a second line this object is no
    mapping and cannot be iterated or searched, and its repr shows no value."""

    __slots__ = ("_provider",)
    # Without these, Python would iterate (and so answer `in`) through __getitem__(0), (1), ….
    __iter__ = None
    __contains__ = None

    def __init__(self, provider: CredentialProvider) -> None:
        self._provider = provider

    def __getitem__(self, name: str) -> str:
        if not isinstance(name, str):
            raise TypeError("a secret is named by a string: secrets.NAME or secrets['NAME']")
        return self._provider.get(name)

    def __repr__(self) -> str:
        return "<secrets>"


class ActionServices:
    """Credentials, connector settings and the shared HTTP client of one Settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.credentials = CredentialProvider(secrets_dir=settings.secrets_dir)
        self.secrets = TemplateSecrets(self.credentials)
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )

    async def http_client(self) -> httpx.AsyncClient:
        """The event loop's shared client (made on first use, closed with the loop)."""
        loop = asyncio.get_running_loop()
        entry = self._clients.get(loop)
        if entry is None:
            import httpx  # here: `dwf lint` imports actions for their schemas only

            from runner import __version__

            client = httpx.AsyncClient(
                timeout=self.settings.http_timeout,
                follow_redirects=False,
                headers={"User-Agent": f"dataworkflows/{__version__}"},
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            )
            keeper = _close_with_loop(client)
            # Started, the generator is known to the loop, which closes it (and so the client)
            # when it shuts down its async generators.
            await keeper.asend(None)
            entry = self._clients[loop] = (client, keeper)
        return entry[0]

    async def aclose(self) -> None:
        """Close this loop's HTTP client now (a later call makes a new one)."""
        entry = self._clients.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry[1].aclose()


async def _close_with_loop(client: httpx.AsyncClient) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await client.aclose()
