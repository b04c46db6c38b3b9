"""Keys, tokens and a strict-mode app for the auth tests (SPEC §12).

    settings = strict(settings)                           # HS256 secret, issuer, audience
    token = sign(claims(roles=["viewer"]))                # as an identity provider would
    pair = rsa("2024-a"); write_jwks(path, pair)          # RS256/ES256 keys in a JWKS file
    async with serving(settings, db) as http: ...         # the API over ASGI, its lifespan run

`by_hand` builds the tokens PyJWT refuses to make (HS256 keyed with a PEM public key, the
classic algorithm confusion; `alg: none`), byte for byte as an attacker would.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import hashlib
import hmac
import json
import os
import re
import time
from collections.abc import AsyncIterator, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import rsa as rsa_keys
from fastapi import FastAPI
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from runner.daemon import Daemon
from runner.settings import Settings
from runner.store.database import Database

SECRET = "an-hs256-secret-of-more-than-32-bytes-for-tests"
ISSUER = "https://idp.example.test/"
AUDIENCE = "dwf-api"
TENANT = "default"  # the runner's tenant (Settings.tenant): what the auth tests work in


def strict(settings: Settings, **changes: Any) -> Settings:
    """`settings` in strict mode with the test secret, issuer and audience (then `changes`)."""
    values: dict[str, Any] = {
        "auth_mode": "strict",
        "jwt_secret": SECRET,
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
    }
    return dataclasses.replace(settings, **(values | changes))


def claims(
    subject: str = "alice",
    *,
    roles: Iterable[str] = ("admin",),
    tenant: str = TENANT,
    ttl: float = 300,
    now: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A valid token's claims; `extra` adds or replaces claims."""
    issued = int(time.time() if now is None else now)
    valid = {
        "sub": subject,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": issued,
        "exp": issued + int(ttl),
        "tenant": tenant,
        "roles": list(roles),
    }
    return valid | extra


def without(payload: Mapping[str, Any], *names: str) -> dict[str, Any]:
    """`payload` without the claims `names`."""
    return {k: v for k, v in payload.items() if k not in names}


def sign(payload: Mapping[str, Any], secret: str = SECRET, **header: Any) -> str:
    """An HS256 token of `payload` under `secret`."""
    return jwt.encode(dict(payload), secret, algorithm="HS256", headers=header or None)


def token(
    subject: str = "alice", *, roles: Iterable[str] = ("admin",), tenant: str = TENANT
) -> str:
    """A valid HS256 token for `subject` with `roles` in `tenant`."""
    return sign(claims(subject, roles=roles, tenant=tenant))


def bearer(value: str) -> dict[str, str]:
    """The Authorization header carrying `value` as a bearer token."""
    return {"Authorization": f"Bearer {value}"}


def by_hand(header: Mapping[str, Any], payload: Mapping[str, Any], hmac_key: bytes | None) -> str:
    """A JWS compact token built without PyJWT: signed HMAC-SHA256 with `hmac_key` (any bytes,
    a public key's PEM too), or with an empty signature when it is None (`alg: none`)."""
    signing_input = (
        f"{_b64(json.dumps(dict(header)).encode())}.{_b64(json.dumps(dict(payload)).encode())}"
    )
    signature = b""
    if hmac_key is not None:
        signature = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclasses.dataclass(frozen=True)
class KeyPair:
    """An asymmetric signing key an identity provider holds, with its `kid` and algorithm."""

    kid: str
    algorithm: str  # RS256, ES256 (or ES384: a curve outside the allowlist)
    private: Any

    def sign(self, payload: Mapping[str, Any], **header: Any) -> str:
        """A token of `payload` signed with this key, its header naming this `kid` (or the
        `kid` given; None: no kid)."""
        headers = {k: v for k, v in ({"kid": self.kid} | header).items() if v is not None}
        return jwt.encode(dict(payload), self.private, algorithm=self.algorithm, headers=headers)

    def public_pem(self) -> bytes:
        """The public key as PEM (SubjectPublicKeyInfo): what a JWKS publishes, as text."""
        return self.private.public_key().public_bytes(  # type: ignore[no-any-return]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwk(self) -> dict[str, Any]:
        """The public key as a JWK with its `kid`, `alg` and `use`."""
        family = RSAAlgorithm if self.algorithm.startswith("RS") else ECAlgorithm
        key: dict[str, Any] = family.to_jwk(self.private.public_key(), as_dict=True)
        return key | {"kid": self.kid, "alg": self.algorithm, "use": "sig"}


@functools.cache
def _rsa_private(index: int) -> rsa_keys.RSAPrivateKey:
    # RSA keys take a while to make: a few, made once per session, serve every test.
    return rsa_keys.generate_private_key(public_exponent=65537, key_size=2048)


def rsa(kid: str, index: int = 0) -> KeyPair:
    """The `index`th RSA key of the session as an RS256 key named `kid`."""
    return KeyPair(kid, "RS256", _rsa_private(index))


def ec_key(kid: str, curve: ec.EllipticCurve | None = None) -> KeyPair:
    """A new EC key named `kid`: ES256 on P-256, or ES384 on P-384."""
    curve = curve or ec.SECP256R1()
    algorithm = "ES384" if isinstance(curve, ec.SECP384R1) else "ES256"
    return KeyPair(kid, algorithm, ec.generate_private_key(curve))


def jwks(*pairs: KeyPair) -> dict[str, Any]:
    """The JWKS document publishing the public halves of `pairs`."""
    return {"keys": [pair.jwk() for pair in pairs]}


def write_jwks(path: Path, *pairs: KeyPair) -> None:
    """Publish `pairs` in the JWKS file at `path`, replacing it whole (as a secret volume
    does: a reader never sees half a file)."""
    partial = path.with_name(path.name + ".new")
    partial.write_text(json.dumps(jwks(*pairs)), encoding="utf-8")
    os.replace(partial, path)


def _docs_pages(app: FastAPI) -> set[str | None]:
    """FastAPI's own pages (the OpenAPI document and its viewers): not operations of the API."""
    return {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}


def api_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every operation `app` serves, its docs pages aside: read from the
    routing itself (not the OpenAPI document, which a route can stay out of)."""
    found: set[tuple[str, str]] = set()

    def walk(routes: Iterable[Any]) -> None:
        for route in routes:
            if hasattr(route, "effective_route_contexts"):
                # Recent FastAPI keeps an included router as one route, its routes inside.
                walk(route.effective_route_contexts())
            elif getattr(route, "path", None) not in _docs_pages(app):
                found.update((m, route.path) for m in (route.methods or set()) - {"HEAD"})

    walk(app.routes)
    return found


def filled(path: str, values: Mapping[str, str]) -> str:
    """`path` with each `{name}` (or `{name:converter}`) replaced by `values[name]`."""

    def value(match: re.Match[str]) -> str:
        assert match.group(1) in values, f"no value for {{{match.group(1)}}} in {path}"
        return values[match.group(1)]

    return re.sub(r"\{(\w+)(?::\w+)?\}", value, path)


@dataclasses.dataclass(frozen=True)
class Served:
    """The API being served: its daemon (for setting things up as the runner does) and a
    client of it."""

    daemon: Daemon
    app: FastAPI
    http: httpx.AsyncClient


@contextlib.asynccontextmanager
async def serving(
    settings: Settings, db: Database, roles: Collection[str] = ()
) -> AsyncIterator[Served]:
    """The API that `Daemon(settings)` serves on `db` (its lifespan running the other `roles`),
    with a client over ASGI."""
    async with Daemon(settings, database=db) as daemon:
        application = daemon.app(roles)
        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
                yield Served(daemon, application, http)
