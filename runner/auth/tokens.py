"""Bearer tokens (SPEC §12): JWTs checked with PyJWT, and `dwf token`'s development tokens.

    verifier = TokenVerifier.from_settings(settings)     # UsageError: no key, no issuer...
    identity = await verifier.verify(token)              # Unauthenticated: why it was refused

Keys: an HS256 secret (`DWF_JWT_SECRET`), and/or RS256 or ES256 public keys from a JWKS, by URL
(`DWF_JWT_JWKS_URL`, fetched off the event loop and cached) or file (`DWF_JWT_JWKS_FILE`,
re-read when it changes). Each key carries its own algorithm allowlist (the secret HS256 only;
a JWKS key the one its `alg` or its type names), so a token cannot choose how it is checked:
`alg: none`, or HS256 signed with a published RSA key, never verifies. A token naming a `kid`
the keys do not have makes the JWKS be fetched again, at most once per `REFRESH_SECONDS`
(key rotation without a restart; an attacker's random kids cost one fetch a minute at most).

Required claims: `exp`, `iat`, `iss`, `aud`, `sub` (and the tenant claim); `nbf` when present;
all with the configured leeway.

A verified token is remembered (up to `CACHE_SIZE` of them) until its `exp` or for
`CACHE_SECONDS`, whichever is sooner, so a client sending the same token again pays a dict
lookup instead of a signature check (an RS256 or ES256 check costs ~0.1 ms): removing a key
from the JWKS stops the tokens it signed within `CACHE_SECONDS`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import structlog

from runner.auth.identity import Identity, Role
from runner.credentials import masking
from runner.errors import KeysUnavailable, Unauthenticated, UsageError
from runner.settings import Settings

_log = structlog.get_logger(__name__)
#: The HS256 secret's least length: RFC 7518 §3.2 wants a key as long as the hash (32 bytes).
MIN_SECRET_BYTES = 32
#: The algorithms a JWKS key may verify, by key type (and curve): nothing symmetric.
ASYMMETRIC = {"RSA": "RS256", "EC": "ES256"}
#: An unknown `kid` fetches the JWKS again at most this often.
REFRESH_SECONDS = 60.0
REQUIRED_CLAIMS = ("exp", "iat", "iss", "aud", "sub")
CACHE_SIZE = 4096
CACHE_SECONDS = 60.0
#: A tenant's name (as dwf.yaml's `tenant`).
TENANT = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
MAX_SUBJECT_LENGTH = 200
#: The last second of the year 9999: a later `exp` is refused (no clock reaches it).
MAX_TIME = 253_402_300_799
#: A token longer than this is refused unread (headers are bounded anyway; this bounds work).
MAX_TOKEN_LENGTH = 8192


@dataclass(frozen=True, slots=True)
class _Key:
    key: Any  # what PyJWT verifies with: the secret, or a PyJWK's key object
    algorithm: str


class TokenVerifier:
    """Verifies bearer tokens against the configured keys and claims."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._secret = None if settings.jwt_secret is None else _Key(settings.jwt_secret, "HS256")
        self._jwks: dict[str, _Key] = {}  # by kid ("" for a key without one)
        self._jwks_file_stamp: tuple[int, int, int, int] | None = None
        self._fetched_at = -REFRESH_SECONDS
        self._fetching: asyncio.Lock | None = None
        self._client: jwt.PyJWKClient | None = None
        #: token -> (its identity, until when it may be taken as verified, by time.time()).
        self._verified: OrderedDict[str, tuple[Identity, float]] = OrderedDict()
        if settings.jwt_jwks_url:
            self._client = jwt.PyJWKClient(
                settings.jwt_jwks_url,
                cache_jwk_set=True,
                lifespan=max(1, int(settings.jwt_jwks_cache_seconds)),
                cache_keys=False,
                timeout=10,
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenVerifier:
        """A verifier for strict mode; UsageError naming each setting that is missing or bad
        (strict mode fails closed: no key, no start)."""
        problems = []
        if not (settings.jwt_secret or settings.jwt_jwks_url or settings.jwt_jwks_file):
            problems.append("a key: DWF_JWT_SECRET, DWF_JWT_JWKS_URL or DWF_JWT_JWKS_FILE")
        if settings.jwt_jwks_url and settings.jwt_jwks_file:
            problems.append("one JWKS: DWF_JWT_JWKS_URL or DWF_JWT_JWKS_FILE, not both")
        if settings.jwt_secret and len(settings.jwt_secret.encode()) < MIN_SECRET_BYTES:
            problems.append(f"a DWF_JWT_SECRET of at least {MIN_SECRET_BYTES} bytes")
        if not settings.jwt_issuer:
            problems.append("the issuer tokens must name: DWF_JWT_ISSUER")
        if not settings.jwt_audience:
            problems.append("the audience tokens must name: DWF_JWT_AUDIENCE")
        if problems:
            raise UsageError("DWF_AUTH_MODE=strict needs " + "; ".join(problems))
        if settings.jwt_secret:
            masking.remember(settings.jwt_secret)  # never in a log line or a response
        verifier = cls(settings)
        if settings.jwt_jwks_file:
            verifier._read_file()  # a missing or malformed file stops the start, not a request
        return verifier

    async def verify(self, token: str) -> Identity:
        """The identity a valid token names; Unauthenticated saying why it is not valid."""
        if self.settings.jwt_jwks_file is not None:
            self._read_file()  # a stat: a rewritten file (a rotation) forgets what it vouched for
        remembered = self._verified.get(token)
        if remembered is not None:
            if time.time() < remembered[1]:
                return remembered[0]
            del self._verified[token]
        if len(token) > MAX_TOKEN_LENGTH:
            raise Unauthenticated("the token is too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("the bearer token is not a JWT") from None
        key = await self._key(header)
        settings = self.settings
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                audience=settings.jwt_audience,
                issuer=settings.jwt_issuer,
                leeway=settings.jwt_leeway,
                options={"require": list(REQUIRED_CLAIMS), "verify_iat": True},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired (exp)") from None
        except jwt.ImmatureSignatureError as exc:
            raise Unauthenticated(f"the token is not valid yet: {exc}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"the token has no {exc.claim!r} claim") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated("the token is not for this service (aud)") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated("the token is not from the trusted issuer (iss)") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("the token's signature does not verify") from None
        except jwt.InvalidAlgorithmError:
            raise Unauthenticated(f"algorithm {header.get('alg')!r} is not allowed") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"the token is not valid: {exc}") from None
        expires = claims["exp"]
        if isinstance(expires, bool) or not isinstance(expires, int | float) or expires > MAX_TIME:
            # PyJWT compares any integer; a time past year 9999 is no time (nor a float).
            raise Unauthenticated("the token's exp is not a time before the year 10000")
        identity = self._identity(claims)
        self._remember(token, identity, float(expires) + settings.jwt_leeway)
        return identity

    def _remember(self, token: str, identity: Identity, expires: float) -> None:
        self._verified[token] = (identity, min(expires, time.time() + CACHE_SECONDS))
        if len(self._verified) > CACHE_SIZE:
            self._verified.popitem(last=False)  # the oldest: a flood of tokens stays bounded

    def _identity(self, claims: Mapping[str, Any]) -> Identity:
        settings = self.settings
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject or len(subject) > MAX_SUBJECT_LENGTH:
            raise Unauthenticated(f"the token's sub is not a name of 1 to {MAX_SUBJECT_LENGTH}")
        if "\x00" in subject or not subject.isprintable():
            raise Unauthenticated("the token's sub holds control characters")
        tenant = _claim(claims, settings.jwt_tenant_claim)
        if tenant is None:
            raise Unauthenticated(f"the token has no {settings.jwt_tenant_claim!r} claim")
        if not isinstance(tenant, str) or not TENANT.match(tenant):
            raise Unauthenticated(
                f"the token's {settings.jwt_tenant_claim!r} claim is not a tenant name"
            )
        return Identity(
            principal=subject,
            tenant=tenant,
            role=Role.highest(role_names(_claim(claims, settings.jwt_roles_claim))),
        )

    async def _key(self, header: Mapping[str, Any]) -> _Key:
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm == "HS256":
            if self._secret is None:
                raise Unauthenticated("HS256 tokens are not accepted here")
            return self._secret
        if algorithm not in ASYMMETRIC.values():
            raise Unauthenticated(f"algorithm {algorithm!r} is not allowed")
        if self._client is None and self.settings.jwt_jwks_file is None:
            raise Unauthenticated(f"{algorithm} tokens are not accepted here")
        if kid is not None and not isinstance(kid, str):
            raise Unauthenticated("the token's kid is not a string")
        found = await self._find(kid)
        if found is None:
            raise Unauthenticated(f"no key {kid!r} in the JWKS" if kid else "the token has no kid")
        if found.algorithm != algorithm:
            raise Unauthenticated(f"key {kid!r} does not verify {algorithm} tokens")
        return found

    async def _find(self, kid: str | None) -> _Key | None:
        stale = time.monotonic() - self._fetched_at > self.settings.jwt_jwks_cache_seconds
        if self._client is not None and (
            not self._jwks or stale or (kid is not None and kid not in self._jwks)
        ):
            await self._fetch()
        if kid is None:
            # Without a kid, only a JWKS of one key says which key is meant.
            return next(iter(self._jwks.values())) if len(self._jwks) == 1 else None
        return self._jwks.get(kid)

    async def _fetch(self) -> None:
        """Fetch the JWKS again (in a thread: PyJWKClient blocks), at most once a
        REFRESH_SECONDS unless nothing was ever fetched."""
        assert self._client is not None
        self._fetching = self._fetching or asyncio.Lock()
        async with self._fetching:
            now = time.monotonic()
            if self._jwks and now - self._fetched_at < REFRESH_SECONDS:
                return  # an unknown kid again so soon: the keys are what was just fetched
            self._fetched_at = now
            client = self._client
            try:
                keys = await asyncio.to_thread(lambda: client.get_jwk_set(refresh=True).keys)
            except jwt.PyJWTError as exc:
                if not self._jwks:
                    # Not the token's fault: a client should retry, not throw its token away.
                    _log.warning(
                        "JWKS fetch failed", url=self.settings.jwt_jwks_url, error=str(exc)
                    )
                    raise KeysUnavailable(
                        "the keys to check tokens with cannot be fetched now; try again shortly",
                        headers={"Retry-After": str(int(REFRESH_SECONDS))},
                    ) from None
                # The keys we have stay good while the issuer is unreachable: tried again in
                # REFRESH_SECONDS.
                _log.warning("JWKS refresh failed; keeping the keys fetched before", error=str(exc))
                return
            self._jwks = _usable(keys)
            self._verified.clear()  # what a changed key set no longer vouches for

    def _read_file(self) -> None:
        path = self.settings.jwt_jwks_file
        assert path is not None
        try:
            stat = os.stat(path)
        except OSError as exc:
            raise UsageError(f"DWF_JWT_JWKS_FILE {path}: {exc.strerror}") from None
        # A rewrite in place within one mtime tick at the same size still changes ctime; an
        # atomic replace changes the inode.
        stamp = (stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size, stat.st_ino)
        if stamp == self._jwks_file_stamp:
            return
        self._jwks = read_jwks_file(path)
        self._jwks_file_stamp = stamp
        self._verified.clear()


def read_jwks_file(path: Path) -> dict[str, _Key]:
    """The usable keys of a JWKS file; UsageError naming the file when it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        keys = jwt.PyJWKSet.from_dict(data).keys
    except (OSError, ValueError, jwt.PyJWTError) as exc:
        raise UsageError(f"DWF_JWT_JWKS_FILE {path} is not a JWKS: {exc}") from None
    return _usable(keys)


def _usable(keys: Iterable[jwt.PyJWK]) -> dict[str, _Key]:
    """The keys that can verify an asymmetric algorithm, each with the one it verifies."""
    usable = {}
    for key in keys:
        expected = ASYMMETRIC.get(key.key_type or "")
        # PyJWK takes the algorithm from the key's `alg`, else from its type and curve (an EC
        # key on P-384 is ES384): only the allowlisted pair is kept.
        if expected is None or key.algorithm_name != expected:
            continue  # symmetric, or an algorithm outside the allowlist
        usable[key.key_id or ""] = _Key(key.key, expected)
    return usable


def role_names(value: Any) -> list[str]:
    """The role names a roles claim holds: a list of strings, or one space-separated string."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def _claim(claims: Mapping[str, Any], name: str) -> Any:
    """A claim by name, or by a dotted path into nested objects (`realm_access.roles`)."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def mint(
    settings: Settings,
    *,
    subject: str,
    roles: Iterable[str],
    tenant: str,
    ttl: float,
    now: float | None = None,
) -> str:
    """A development token signed with the HS256 secret (`dwf token`); UsageError when there
    is no secret, or no issuer and audience to name."""
    missing = [
        name
        for name, value in (
            ("DWF_JWT_SECRET (the HS256 secret tokens are signed with)", settings.jwt_secret),
            ("DWF_JWT_ISSUER", settings.jwt_issuer),
            ("DWF_JWT_AUDIENCE", settings.jwt_audience),
        )
        if not value
    ]
    if missing:
        raise UsageError("a token needs " + ", ".join(missing) + ", as strict mode checks them")
    assert settings.jwt_secret is not None
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "sub": subject,
        "iat": issued,
        "exp": issued + max(1, int(ttl)),
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        settings.jwt_tenant_claim: tenant,
        settings.jwt_roles_claim: list(roles),
    }
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
