"""`core.http`: one HTTP request on the process's shared httpx client (SPEC §10).

Verdicts: 429 (Retry-After honoured), 5xx, connection errors and timeouts are transient, so the
node's retry policy tries again; any other status outside `expectStatus` (default: 2xx) is
permanent. The response is read up to `DWF_HTTP_MAX_RESPONSE_BYTES` and refused beyond it.
Unless `DWF_HTTP_ALLOW_PRIVATE` is set, a URL whose host is or resolves to a loopback, private,
link-local (cloud metadata at 169.254.169.254 among them), multicast or reserved address is
refused before anything is sent, and so is every redirect hop.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from runner.actions.base import Action, ActionContext, ActionResult
from runner.credentials import masking
from runner.spec.durations import DURATION_PATTERN, parse_duration

# asyncio, ipaddress and the like are imported where used: `dwf lint` imports this module for
# its schema only.

if TYPE_CHECKING:
    import httpx

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
MAX_REDIRECTS = 5
# How much of an error response's body a failure message quotes.
_ERROR_BODY_CHARS = 300
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class RefusedAddress(Exception):
    """The URL points at an address outbound calls may not reach."""


class Http(Action):
    """One HTTP request; outputs {status, headers, json or text}."""

    type = "core.http"
    description = (
        "Send an HTTP request. 429, 5xx, connection errors and timeouts are transient "
        "(retried by the node's policy); other unexpected statuses fail permanently."
    )
    parameters_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["url"],
        "properties": {
            "method": {"enum": list(METHODS), "description": "HTTP method (default GET)."},
            "url": {
                "type": "string",
                "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://",
                "description": "An http:// or https:// URL.",
            },
            "headers": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "Request headers.",
            },
            "query": {
                "type": "object",
                "additionalProperties": {
                    "type": ["string", "number", "boolean", "array"],
                    "items": {"type": ["string", "number", "boolean"]},
                },
                "description": "Query parameters, added to the URL's own.",
            },
            "json": {"description": "A JSON body (not with `body`)."},
            "body": {"type": "string", "description": "A text body (not with `json`)."},
            "timeout": {
                "type": "string",
                "pattern": DURATION_PATTERN,
                "description": "Time limit of the request (default DWF_HTTP_TIMEOUT_SECONDS).",
            },
            "expectStatus": {
                "type": "array",
                "items": {"type": "integer", "minimum": 100, "maximum": 599},
                "minItems": 1,
                "description": "Statuses that succeed (default: any 2xx).",
            },
            "followRedirects": {
                "type": "boolean",
                "description": f"Follow up to {MAX_REDIRECTS} redirects (default false).",
            },
        },
    }
    outputs_schema = {
        "type": "object",
        "properties": {
            "status": {"type": "integer"},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "json": {"description": "The body, when the response is JSON."},
            "text": {"type": "string", "description": "The body, otherwise."},
        },
    }

    async def execute(self, context: ActionContext, params: Mapping[str, Any]) -> ActionResult:
        """Send the request (checking every hop's address) and judge the response."""
        import httpx

        if "json" in params and "body" in params:
            return ActionResult.failed(
                "InvalidParameters", "parameters: give `json` or `body`, not both"
            )
        services = context.services
        settings = services.settings
        client = await services.http_client()
        timeout = parse_duration(params["timeout"]) if "timeout" in params else None
        headers = {**dict(params.get("headers") or {}), **context.outbound_headers()}
        request = client.build_request(
            params.get("method", "GET"),
            params["url"],
            headers=headers,
            params=params.get("query"),
            json=params.get("json"),
            content=params.get("body"),
            timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )
        hops = MAX_REDIRECTS if params.get("followRedirects") else 0
        try:
            return await send(
                client,
                request,
                allow_private=settings.http_allow_private,
                max_bytes=settings.http_max_response_bytes,
                expect=params.get("expectStatus"),
                redirects=hops,
            )
        except RefusedAddress as exc:
            return ActionResult.failed("AddressRefused", str(exc))


async def send(
    client: httpx.AsyncClient,
    request: httpx.Request,
    *,
    allow_private: bool,
    max_bytes: int,
    expect: list[int] | None = None,
    redirects: int = 0,
) -> ActionResult:
    """Send `request` (following up to `redirects` redirects) and judge the response."""
    import httpx

    for _ in range(redirects + 1):
        try:
            if not allow_private:
                await check_address(request.url.host)
            response = await client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            return ActionResult.failed("Timeout", _describe(request, exc), transient=True)
        except (httpx.TransportError, OSError) as exc:
            return ActionResult.failed("ConnectionError", _describe(request, exc), transient=True)
        try:
            location = response.headers.get("location")
            if response.status_code in _REDIRECTS and location and redirects:
                request = _redirected(client, request, response, location)
                continue
            body = await _read(response, max_bytes)
        except _TooLarge:
            return ActionResult.failed(
                "ResponseTooLarge",
                f"{request.method} {_shown(request.url)}: the response is larger than "
                f"{max_bytes} bytes (DWF_HTTP_MAX_RESPONSE_BYTES)",
            )
        except httpx.TimeoutException as exc:
            return ActionResult.failed("Timeout", _describe(request, exc), transient=True)
        except (httpx.TransportError, OSError) as exc:
            return ActionResult.failed("ConnectionError", _describe(request, exc), transient=True)
        finally:
            await response.aclose()
        return judge(request, response, body, expect)
    return ActionResult.failed(
        "TooManyRedirects", f"{request.method} {_shown(request.url)}: more than {redirects} "
        "redirects",
    )  # fmt: skip


def judge(
    request: httpx.Request, response: httpx.Response, body: bytes, expect: list[int] | None
) -> ActionResult:
    """Succeeded with {status, headers, json|text}, or failed, transient for 429 and 5xx."""
    status = response.status_code
    outputs: dict[str, Any] = {"status": status, "headers": dict(response.headers)}
    text = body.decode(response.encoding or "utf-8", errors="replace")
    if "json" in response.headers.get("content-type", "") and body:
        try:
            outputs["json"] = json.loads(text)
        except ValueError:
            outputs["text"] = text
    else:
        outputs["text"] = text
    ok = status in expect if expect is not None else 200 <= status < 300
    if ok:
        return ActionResult.ok(outputs)
    # Masked before the cut (and before whitespace is folded): half a secret is no known form.
    snippet = " ".join(masking.cut(text, _ERROR_BODY_CHARS).split())
    message = f"{request.method} {_shown(request.url)} answered {status}"
    if expect is not None:
        message += f" (expected {', '.join(map(str, expect))})"
    if snippet:
        message += f": {snippet}"
    transient = status == 429 or status >= 500
    retry_after = retry_after_seconds(response.headers.get("retry-after")) if transient else None
    return ActionResult.failed(
        f"HTTP {status}", message, transient=transient, retry_after=retry_after
    )


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    from datetime import UTC, datetime

    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


async def check_address(host: str) -> None:
    """RefusedAddress unless every address `host` names or resolves to is public (OSError
    when it does not resolve)."""
    import asyncio
    import ipaddress
    import socket

    try:
        addresses = [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        loop = asyncio.get_running_loop()
        # A name that does not resolve raises OSError: a transient ConnectionError, since DNS
        # can recover; it is never sent unchecked.
        infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    for found in addresses:
        address = found
        if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped is not None:
            address = found.ipv4_mapped
        if not address.is_global or address.is_multicast:
            raise RefusedAddress(
                f"{host} is {'' if str(address) == host else f'resolved to {address}, '}a "
                "loopback, private, link-local or reserved address; outbound calls there are "
                "refused (set DWF_HTTP_ALLOW_PRIVATE=true to allow them)"
            )


class _TooLarge(Exception):
    pass


async def _read(response: httpx.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _TooLarge
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _redirected(
    client: httpx.AsyncClient, request: httpx.Request, response: httpx.Response, location: str
) -> httpx.Request:
    url = request.url.join(location)
    method = request.method
    content: bytes | None = request.content
    if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
        method, content = ("GET" if method != "HEAD" else "HEAD"), None
    headers = dict(request.headers)
    headers.pop("content-length", None)
    if url.host != request.url.host:
        headers.pop("authorization", None)  # never hand credentials to another host
    follow = client.build_request(method, url, headers=headers, content=content)
    follow.extensions = request.extensions
    return follow


def _shown(url: httpx.URL) -> str:
    """The URL without its query (which may hold keys) and user info."""
    return str(url.copy_with(query=None, fragment=None, username=None, password=None))


def _describe(request: httpx.Request, exc: Exception) -> str:
    reason = str(exc) or type(exc).__name__
    return f"{request.method} {_shown(request.url)}: {reason}"
