"""Strict JWT auth (SPEC §12) in process over ASGI, on a real Postgres: a corpus of tokens each
refused with the right status and reason, key rotation in a JWKS file and at a JWKS URL, strict
mode failing closed, loose mode kept on loopback, the role of every route, the OpenAPI document's
security, and the token's subject as the execution's principal."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from structlog.testing import capture_logs

from runner.api import access, server
from runner.auth import tokens
from runner.auth.identity import Role
from runner.daemon import Daemon
from runner.errors import UsageError
from runner.settings import Settings
from runner.store.database import Database
from tests import fakes
from tests.jwt_keys import (
    SECRET,
    KeyPair,
    Served,
    api_routes,
    bearer,
    by_hand,
    claims,
    ec_key,
    filled,
    rsa,
    serving,
    sign,
    strict,
    token,
    without,
    write_jwks,
)

pytestmark = pytest.mark.anyio

PROBLEM_JSON = "application/problem+json"
#: A viewer's route: what the token corpus knocks on.
READ = "/api/v1/workflows"
CHALLENGE = 'Bearer realm="dwf"'


def flow(workflow_id: str = "w", **top: Any) -> dict[str, Any]:
    """An Active workflow of one echo node."""
    return {
        "apiVersion": "dataworkflows/v1",
        "kind": "Workflow",
        "id": workflow_id,
        "status": "active",
        "startNode": "a",
        "nodes": [{"id": "a", "actionType": "core.echo", "parameters": {"message": "hi"}}],
        **top,
    }


def assert_problem(response: httpx.Response, status: int, *in_detail: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    for text in in_detail:
        assert text in problem["detail"], problem
    return problem


def assert_refused(response: httpx.Response, status: int, detail: str) -> None:
    """401 with a Bearer challenge (RFC 6750), or 403; the reason in the problem's detail."""
    assert_problem(response, status, detail)
    challenge = response.headers.get("www-authenticate", "")
    assert challenge.startswith(CHALLENGE), response.headers
    if status == 403:
        assert 'error="insufficient_scope"' in challenge


# --- the token corpus ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Keys:
    """The identity provider's keys (published in the JWKS) and a stranger's."""

    rsa: KeyPair  # RS256, kid rsa-1
    ec: KeyPair  # ES256 (P-256), kid ec-1
    ec384: KeyPair  # ES384 (P-384): published, but its algorithm is not on the allowlist
    stranger: KeyPair  # an RSA key of someone else's that claims the kid rsa-1

    @classmethod
    def make(cls) -> Keys:
        return cls(
            rsa=rsa("rsa-1"),
            ec=ec_key("ec-1"),
            ec384=ec_key("ec-384", ec.SECP384R1()),
            stranger=rsa("rsa-1", index=1),
        )


@dataclasses.dataclass(frozen=True)
class Case:
    """One Authorization header (None: no header) and how the API must answer it."""

    name: str
    header: Callable[[Keys], str | None]
    status: int
    detail: str = ""
    #: secret+jwks: the HS256 secret and a JWKS file; secret: HS256 only; jwks: the file only.
    config: str = "secret+jwks"


def _bearer(make: Callable[[Keys], str]) -> Callable[[Keys], str]:
    return lambda keys: f"Bearer {make(keys)}"


def _tampered(keys: Keys) -> str:
    # A viewer's token with an admin's payload: the signature is the viewer's.
    header, _, signature = sign(claims(roles=["viewer"])).split(".")
    _, payload, _ = sign(claims(roles=["admin"])).split(".")
    return f"{header}.{payload}.{signature}"


HOUR = 3600


CORPUS = [
    Case("valid-hs256", _bearer(lambda k: sign(claims())), 200),
    Case("valid-rs256", _bearer(lambda k: k.rsa.sign(claims())), 200),
    Case("valid-es256", _bearer(lambda k: k.ec.sign(claims())), 200),
    Case(
        "valid-roles-as-a-string",
        _bearer(lambda k: sign(claims() | {"roles": "auditor viewer"})),
        200,
    ),
    Case("no-authorization", lambda k: None, 401, "needs a bearer token"),
    Case("basic-scheme", lambda k: "Basic x", 401, "is not `Bearer <token>`"),
    Case("bearer-without-token", lambda k: "Bearer", 401, "is not `Bearer <token>`"),
    Case("garbage", lambda k: "Bearer garbage", 401, "is not a JWT"),
    Case("too-long", _bearer(lambda k: sign(claims(pad="x" * 9000))), 401, "the token is too long"),
    Case(
        "alg-none",
        _bearer(lambda k: by_hand({"alg": "none", "typ": "JWT"}, claims(), None)),
        401,
        "algorithm 'none' is not allowed",
    ),
    Case(
        "hs256-keyed-with-the-rsa-public-key",
        _bearer(lambda k: by_hand({"alg": "HS256", "kid": "rsa-1"}, claims(), k.rsa.public_pem())),
        401,
        "signature does not verify",
    ),
    Case(
        "hs256-keyed-with-the-rsa-public-key-no-secret",
        _bearer(lambda k: by_hand({"alg": "HS256", "kid": "rsa-1"}, claims(), k.rsa.public_pem())),
        401,
        "HS256 tokens are not accepted here",
        config="jwks",
    ),
    Case(
        "hs512-with-the-secret",
        _bearer(lambda k: by_hand({"alg": "HS512"}, claims(), SECRET.encode())),
        401,
        "algorithm 'HS512' is not allowed",
    ),
    Case("wrong-aud", _bearer(lambda k: sign(claims(aud="other-api"))), 401, "(aud)"),
    Case("wrong-iss", _bearer(lambda k: sign(claims(iss="https://evil.test/"))), 401, "(iss)"),
    Case(
        "exp-past-any-clock",  # 10**400 seconds: an integer PyJWT compares, but no time
        _bearer(lambda k: sign(claims(exp=10**400))),
        401,
        "the token's exp is not a time",
    ),
    Case(
        "expired",
        _bearer(lambda k: sign(claims(now=time.time() - HOUR, ttl=60))),
        401,
        "the token has expired",
    ),
    Case(
        "nbf-in-the-future",
        _bearer(lambda k: sign(claims(nbf=int(time.time()) + 120))),
        401,
        "not valid yet",
    ),
    Case(
        "iat-in-the-future",
        _bearer(lambda k: sign(claims(now=time.time() + 120))),
        401,
        "not valid yet",
    ),
    Case("missing-exp", _bearer(lambda k: sign(without(claims(), "exp"))), 401, "no 'exp' claim"),
    Case("missing-iat", _bearer(lambda k: sign(without(claims(), "iat"))), 401, "no 'iat' claim"),
    Case("missing-sub", _bearer(lambda k: sign(without(claims(), "sub"))), 401, "no 'sub' claim"),
    Case("missing-iss", _bearer(lambda k: sign(without(claims(), "iss"))), 401, "no 'iss' claim"),
    Case("missing-aud", _bearer(lambda k: sign(without(claims(), "aud"))), 401, "no 'aud' claim"),
    Case(
        "missing-tenant",
        _bearer(lambda k: sign(without(claims(), "tenant"))),
        401,
        "no 'tenant' claim",
    ),
    Case(
        "tenant-not-a-name",
        _bearer(lambda k: sign(claims(tenant="Acme Corp"))),
        401,
        "is not a tenant name",
    ),
    Case("sub-not-text", _bearer(lambda k: sign(claims(sub=42))), 401, "not valid"),
    Case("tampered-payload", _bearer(_tampered), 401, "signature does not verify"),
    Case(
        "another-secret",
        _bearer(lambda k: sign(claims(), "another-secret-also-longer-than-32-bytes")),
        401,
        "signature does not verify",
    ),
    Case(
        "unknown-kid",
        _bearer(lambda k: k.rsa.sign(claims(), kid="ghost")),
        401,
        "no key 'ghost' in the JWKS",
    ),
    Case(
        "rs256-without-kid-among-several-keys",
        _bearer(lambda k: k.rsa.sign(claims(), kid=None)),
        401,
        "the token has no kid",
    ),
    Case(
        "a-strangers-key-claiming-a-known-kid",
        _bearer(lambda k: k.stranger.sign(claims())),
        401,
        "signature does not verify",
    ),
    Case(
        "rs256-header-on-the-ec-kid",
        _bearer(lambda k: k.rsa.sign(claims(), kid="ec-1")),
        401,
        "key 'ec-1' does not verify RS256 tokens",
    ),
    Case(
        "es384-not-on-the-allowlist",
        _bearer(lambda k: k.ec384.sign(claims())),
        401,
        "algorithm 'ES384' is not allowed",
    ),
    Case(
        "a-strangers-key-embedded-in-the-header",  # CVE-2018-0114: the header's jwk is no key
        _bearer(lambda k: k.stranger.sign(claims(), kid="mine", jwk=k.stranger.jwk())),
        401,
        "no key 'mine' in the JWKS",
    ),
    Case(
        "rs256-when-only-hs256-is-configured",
        _bearer(lambda k: k.rsa.sign(claims())),
        401,
        "RS256 tokens are not accepted here",
        config="secret",
    ),
    Case(
        "no-known-role",
        _bearer(lambda k: sign(claims(roles=["superuser"]))),
        403,
        "needs the viewer role; the token gives no role",
    ),
    Case(
        "no-roles-claim",
        _bearer(lambda k: sign(without(claims(), "roles"))),
        403,
        "needs the viewer role; the token gives no role",
    ),
]


#: Header values that are not Latin-1 text (an HTTP header cannot hold them): still a 401.
UNENCODABLE = [
    Case(
        "alg-not-latin-1",
        _bearer(lambda k: by_hand({"alg": "ключ"}, claims(), None)),
        401,
        "algorithm 'ключ' is not allowed",
    ),
    Case(
        "kid-not-latin-1",
        _bearer(lambda k: k.rsa.sign(claims(), kid="ключ")),
        401,
        "no key 'ключ' in the JWKS",
    ),
]


def configured(config: str, settings: Settings, jwks_file: Path, keys: Keys) -> Settings:
    """Strict settings with the keys a corpus case runs against."""
    write_jwks(jwks_file, keys.rsa, keys.ec, keys.ec384)
    if config == "secret":
        return strict(settings)
    if config == "jwks":
        return strict(settings, jwt_secret=None, jwt_jwks_file=jwks_file)
    return strict(settings, jwt_jwks_file=jwks_file)


@pytest.mark.parametrize(
    "case",
    [
        *(pytest.param(case, id=case.name) for case in CORPUS),
        *(pytest.param(case, id=case.name) for case in UNENCODABLE),
    ],
)
async def test_token_corpus(case: Case, settings: Settings, db: Database, tmp_path: Path) -> None:
    keys = Keys.make()
    configured_settings = configured(case.config, settings, tmp_path / "jwks.json", keys)
    async with serving(configured_settings, db) as served:
        value = case.header(keys)
        headers = {} if value is None else {"Authorization": value}
        response = await served.http.get(READ, headers=headers)
    if case.status == 200:
        assert response.status_code == 200, response.text
        assert response.json() == {"items": [], "nextCursor": None}
        return
    assert_refused(response, case.status, case.detail)
    challenge = response.headers["www-authenticate"]
    if case.name == "no-authorization":
        assert challenge == CHALLENGE  # RFC 6750 §3.1: no error code when no token was sent
    elif case.status == 401 and "Bearer <token>" in case.detail:
        assert 'error="invalid_request"' in challenge
    elif case.status == 401:
        assert 'error="invalid_token"' in challenge
        assert "error_description=" in challenge  # says why, too


def test_the_corpus_is_at_least_15_refusals_and_has_valid_tokens() -> None:
    refused = [case for case in CORPUS if case.status != 200]
    assert len(refused) >= 15
    assert {case.name for case in CORPUS if case.status == 200} >= {"valid-hs256", "valid-rs256"}
    assert len({case.name for case in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize(("leeway", "status"), [(30.0, 200), (0.0, 401)])
async def test_leeway_accepts_a_token_just_expired(
    leeway: float, status: int, settings: Settings, db: Database
) -> None:
    expired_5s_ago = sign(claims(now=time.time() - 65, ttl=60))
    async with serving(strict(settings, jwt_leeway=leeway), db) as served:
        response = await served.http.get(READ, headers=bearer(expired_5s_ago))
    if status == 200:
        assert response.status_code == 200, response.text
    else:
        assert_refused(response, 401, "the token has expired")


async def test_the_roles_and_tenant_claims_are_the_configured_ones(
    settings: Settings, db: Database
) -> None:
    # Keycloak nests roles; Auth0 namespaces custom claims with a URL (dots in the name).
    configured_settings = strict(
        settings, jwt_roles_claim="realm_access.roles", jwt_tenant_claim="https://dwf.test/tenant"
    )
    nested = without(claims(), "roles", "tenant") | {
        "realm_access": {"roles": ["offline_access", "viewer"]},
        "https://dwf.test/tenant": "default",
    }
    async with serving(configured_settings, db) as served:
        response = await served.http.get(READ, headers=bearer(sign(nested)))
        assert response.status_code == 200, response.text
        flat = sign(claims())  # `roles` and `tenant` are not the claims configured
        assert_refused(
            await served.http.get(READ, headers=bearer(flat)),
            401,
            "no 'https://dwf.test/tenant' claim",
        )
        response = await served.http.post(
            "/api/v1/workflows", json={"definition": flow()}, headers=bearer(sign(nested))
        )
        assert_refused(response, 403, "needs the admin role; the token gives viewer")


async def test_the_bearer_scheme_is_case_insensitive(settings: Settings, db: Database) -> None:
    async with serving(strict(settings), db) as served:
        response = await served.http.get(READ, headers={"Authorization": f"bearer {token()}"})
    assert response.status_code == 200, response.text


# --- key rotation ----------------------------------------------------------------------------


async def test_a_key_rotated_in_the_jwks_file_is_used_without_a_restart(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    path = tmp_path / "jwks.json"
    old, new = rsa("2024-rsa"), ec_key("2025-ec")
    write_jwks(path, old)
    async with serving(strict(settings, jwt_secret=None, jwt_jwks_file=path), db) as served:

        async def read(pair: KeyPair) -> httpx.Response:
            return await served.http.get(READ, headers=bearer(pair.sign(claims())))

        assert (await read(old)).status_code == 200
        assert_refused(await read(new), 401, "no key '2025-ec' in the JWKS")
        write_jwks(path, old, new)  # the new key is published beside the old one
        assert (await read(old)).status_code == 200
        assert (await read(new)).status_code == 200
        write_jwks(path, new)  # then the old one is withdrawn
        assert_refused(await read(old), 401, "no key '2024-rsa' in the JWKS")
        assert (await read(new)).status_code == 200


class FakeIdentityProvider:
    """An identity provider's JWKS endpoint: publishes `keys`, counts the fetches."""

    PATH = "/.well-known/jwks.json"

    def __init__(self, *keys: KeyPair) -> None:
        self.keys = keys
        self.fetches = 0
        self.down = False  # answers 503 while set
        self.app = Starlette(routes=[Route(self.PATH, self._jwks)])

    async def _jwks(self, request: Request) -> JSONResponse:
        self.fetches += 1
        if self.down:
            return JSONResponse({"error": "down"}, status_code=503)
        return JSONResponse({"keys": [pair.jwk() for pair in self.keys]})


async def test_a_key_rotated_at_the_jwks_url_is_fetched_on_its_unknown_kid(
    settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Unthrottled: each unknown kid fetches the JWKS again at once.
    monkeypatch.setattr(tokens, "REFRESH_SECONDS", 0.0)
    old, new = ec_key("2024-ec"), rsa("2025-rsa")
    idp = FakeIdentityProvider(old)
    with fakes.serve(idp.app) as url:
        configured_settings = strict(settings, jwt_secret=None, jwt_jwks_url=url + idp.PATH)
        async with serving(configured_settings, db) as served:

            async def read(pair: KeyPair) -> httpx.Response:
                return await served.http.get(READ, headers=bearer(pair.sign(claims())))

            assert (await read(old)).status_code == 200
            assert (await read(old)).status_code == 200
            assert idp.fetches == 1  # a known kid is served from the cache
            idp.keys = (new,)  # rotated: the old key withdrawn
            assert (await read(new)).status_code == 200
            assert idp.fetches == 2
            assert_refused(await read(old), 401, "no key '2024-ec' in the JWKS")


async def test_an_identity_provider_that_cannot_be_reached_is_a_503_not_a_bad_token(
    settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokens, "REFRESH_SECONDS", 0.0)
    key = rsa("k1")
    idp = FakeIdentityProvider(key)
    idp.down = True
    with fakes.serve(idp.app) as url:
        configured_settings = strict(
            settings, jwt_secret=None, jwt_jwks_url=url + idp.PATH, jwt_jwks_cache_seconds=0.0
        )
        async with serving(configured_settings, db) as served:
            token = key.sign(claims())
            refused = await served.http.get(READ, headers=bearer(token))
            assert_problem(refused, 503, "cannot be fetched now")
            assert int(refused.headers["retry-after"]) >= 0
            assert "www-authenticate" not in refused.headers  # the token is not at fault
            idp.down = False
            recovered = await served.http.get(READ, headers=bearer(key.sign(claims())))
            assert recovered.status_code == 200, recovered.text
            idp.down = True  # gone again once the keys are known: they stay in use
            fetches = idp.fetches
            again = await served.http.get(READ, headers=bearer(key.sign(claims("other"))))
            assert again.status_code == 200, again.text
            assert idp.fetches > fetches  # it did try: the keys are stale at once here


async def test_unknown_kids_fetch_the_jwks_at_most_once_a_refresh_interval(
    settings: Settings, db: Database
) -> None:
    known = rsa("known")
    idp = FakeIdentityProvider(known)
    with fakes.serve(idp.app) as url:
        configured_settings = strict(settings, jwt_secret=None, jwt_jwks_url=url + idp.PATH)
        async with serving(configured_settings, db) as served:
            response = await served.http.get(READ, headers=bearer(known.sign(claims())))
            assert response.status_code == 200, response.text
            for _ in range(5):  # an attacker's random kids
                forged = known.sign(claims(), kid=uuid.uuid4().hex)
                response = await served.http.get(READ, headers=bearer(forged))
                assert_refused(response, 401, "in the JWKS")
            assert idp.fetches == 1


# --- strict mode fails closed; loose mode stays on loopback ----------------------------------


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"jwt_secret": None}, "a key: DWF_JWT_SECRET, DWF_JWT_JWKS_URL or DWF_JWT_JWKS_FILE"),
        ({"jwt_issuer": None}, "DWF_JWT_ISSUER"),
        ({"jwt_issuer": ""}, "DWF_JWT_ISSUER"),
        ({"jwt_audience": None}, "DWF_JWT_AUDIENCE"),
        ({"jwt_secret": "x" * 31}, "a DWF_JWT_SECRET of at least 32 bytes"),
        (
            {"jwt_jwks_url": "https://idp.test/jwks", "jwt_jwks_file": Path("jwks.json")},
            "DWF_JWT_JWKS_URL or DWF_JWT_JWKS_FILE, not both",
        ),
    ],
    ids=["no-key", "no-issuer", "empty-issuer", "no-audience", "short-secret", "two-jwks"],
)
async def test_strict_mode_without_what_it_needs_refuses_to_build_the_api(
    changes: dict[str, Any], named: str, settings: Settings, db: Database
) -> None:
    refused = strict(settings, **changes)
    with pytest.raises(UsageError, match=re.escape(named)):
        access.Guard(refused)
    async with Daemon(refused, database=db) as daemon:
        with pytest.raises(UsageError, match=re.escape(named)) as raised:
            daemon.app({"worker"})
    assert "DWF_AUTH_MODE=strict needs" in str(raised.value)


def test_strict_mode_names_every_missing_setting_at_once(settings: Settings) -> None:
    with pytest.raises(UsageError) as raised:
        access.Guard(strict(settings, jwt_secret=None, jwt_issuer=None, jwt_audience=None))
    for named in ("DWF_JWT_SECRET", "DWF_JWT_ISSUER", "DWF_JWT_AUDIENCE"):
        assert named in str(raised.value)


def test_a_secret_of_32_bytes_is_enough(settings: Settings) -> None:
    access.Guard(strict(settings, jwt_secret="é" * 16))  # 16 characters, 32 bytes in UTF-8


def test_strict_mode_with_a_jwks_file_that_is_not_there_refuses_to_start(
    settings: Settings, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere.json"
    with pytest.raises(UsageError, match=f"DWF_JWT_JWKS_FILE {re.escape(str(missing))}"):
        access.Guard(strict(settings, jwt_jwks_file=missing))
    garbled = tmp_path / "garbled.json"
    garbled.write_text('{"keys": 3}')
    with pytest.raises(UsageError, match="is not a JWKS"):
        access.Guard(strict(settings, jwt_jwks_file=garbled))


def _dwf(database_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DWF_")}
    environ |= {"DWF_DATABASE_URL": database_url, **env}
    command = [sys.executable, "-m", "runner", *args]
    return subprocess.run(
        command, env=environ, capture_output=True, text=True, timeout=30, check=False
    )


def test_loose_mode_refuses_to_serve_beyond_loopback(database_url: str) -> None:
    proc = _dwf(database_url, "serve", "--host", "0.0.0.0", "--port", "0")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith("dwf serve: loose auth mode serves on loopback only")
    assert "'0.0.0.0'" in message
    assert "--insecure-bind" in message and "DWF_AUTH_MODE=strict" in message


def test_strict_mode_without_a_key_refuses_to_serve(database_url: str) -> None:
    proc = _dwf(database_url, "serve", "--host", "0.0.0.0", "--port", "0", DWF_AUTH_MODE="strict")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "DWF_AUTH_MODE=strict needs a key: DWF_JWT_SECRET" in proc.stderr


def test_insecure_bind_lets_loose_mode_serve_beyond_loopback_loudly(settings: Settings) -> None:
    with capture_logs() as logs:
        server.check_bind(dataclasses.replace(settings, auth_insecure_bind=True), "0.0.0.0")
    [warning] = [entry for entry in logs if entry["log_level"] == "warning"]
    assert warning["event"].startswith("INSECURE")
    assert warning["host"] == "0.0.0.0"
    with pytest.raises(UsageError, match="--insecure-bind"):
        server.check_bind(settings, "0.0.0.0")
    server.check_bind(strict(settings), "0.0.0.0")  # strict mode may listen anywhere
    server.check_bind(settings, "127.0.0.1")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("example.com", False),
        ("localhost.example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert server.is_loopback(host) is loopback


# --- roles -----------------------------------------------------------------------------------


#: What fills a route's path parameters.
PATH_VALUES = {
    "workflowId": "w",
    "executionId": "00000000-0000-4000-8000-000000000000",
    "triggerId": "nightly",
    "tenant": "default",
    "path": "some/hook",
    "version": "1",
}
#: The least valid body of the routes that take one.
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/api/v1/workflows"): {"definition": flow("created")},
    ("POST", "/api/v1/workflows/{workflowId}/execute"): {},
    ("POST", "/api/v1/workflows/{workflowId}/triggers"): {
        "id": "nightly",
        "type": "schedule",
        "cron": "0 2 * * *",
    },
}


async def call(
    http: httpx.AsyncClient, route: tuple[str, str], values: dict[str, str], **headers: str
) -> httpx.Response:
    """Call `route` with its path filled from `values` and its least valid body."""
    method, path = route
    body = BODIES.get(route)
    return await http.request(method, filled(path, values), json=body, headers=headers or None)


@pytest.fixture
async def served(settings: Settings, db: Database) -> AsyncIterator[Served]:
    async with serving(strict(settings), db) as running:
        await running.daemon.versions.record(
            flow("w"), tenant="default", source_kind="api", status="Active"
        )
        yield running


async def test_every_route_has_a_role(served: Served) -> None:
    assert api_routes(served.app) == set(access.ROLES)


def expected_role(method: str, path: str) -> Role:
    """The issue's rule: viewer reads; operator executes and cancels; admin changes workflows
    and their triggers, and sees sync runs."""
    if path.endswith(("/execute", "/cancel")):
        return Role.OPERATOR
    if method == "GET" and not path.startswith(("/api/v1/sync", "/metrics")):
        return Role.VIEWER
    return Role.ADMIN


def test_each_routes_role_follows_the_rule() -> None:
    wrong = {
        route: (role, expected_role(*route))
        for route, role in access.ROLES.items()
        if role is not access.PUBLIC and role != expected_role(*route)
    }
    assert not wrong
    public = {route for route, role in access.ROLES.items() if role is access.PUBLIC}
    assert public == {
        ("GET", "/health"),
        ("GET", "/ready"),
        ("POST", "/api/v1/sync"),
        ("POST", "/api/v1/hooks/{tenant}/{path:path}"),
        ("GET", "/ui"),  # the UI's files hold no data: it reads /api/v1 with the caller's token
        ("GET", "/ui/{path:path}"),
    }


ROLE_TOKENS = {
    "viewer": Role.VIEWER,
    "operator": Role.OPERATOR,
    "admin": Role.ADMIN,
    "auditor": None,  # a role this runner does not know
}


async def test_role_matrix(served: Served) -> None:
    routes = api_routes(served.app)
    assert routes == set(access.ROLES)  # read from the app: a new route cannot be skipped
    guarded = sorted(route for route in routes if access.ROLES[route] is not access.PUBLIC)
    assert guarded
    answers = {}
    for route in guarded:
        needed = access.ROLES[route]
        assert needed is not None
        assert_refused(await call(served.http, route, PATH_VALUES), 401, "needs a bearer token")
        for name, held in ROLE_TOKENS.items():
            authorization = f"Bearer {token(f'{name}-user', roles=[name])}"
            response = await call(served.http, route, PATH_VALUES, Authorization=authorization)
            answers[(*route, name)] = response.status_code
            if held is not None and held >= needed:
                allowed = response.status_code not in (401, 403) and response.status_code < 500
                assert allowed, (route, name, response.status_code, response.text)
            else:
                gives = name if held is not None else "no role"
                assert_refused(
                    response, 403, f"needs the {needed.label} role; the token gives {gives}"
                )
    # Each role is refused somewhere and let in somewhere, but the unknown one.
    assert any(status == 403 for (*_, name), status in answers.items() if name == "viewer")
    assert any(status == 403 for (*_, name), status in answers.items() if name == "operator")
    assert all(status == 403 for (*_, name), status in answers.items() if name == "auditor")


async def test_roles_are_checked_before_the_body_is(served: Served) -> None:
    # A viewer learns nothing of what a body of an admin's route should hold.
    response = await served.http.post(
        "/api/v1/workflows", json={"nonsense": True}, headers=bearer(token(roles=["viewer"]))
    )
    assert_refused(response, 403, "needs the admin role")
    response = await served.http.post("/api/v1/workflows", json={"nonsense": True})
    assert_refused(response, 401, "needs a bearer token")


async def test_a_malformed_body_from_an_anonymous_caller_is_401(served: Served) -> None:
    response = await served.http.post(
        "/api/v1/workflows", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_refused(response, 401, "needs a bearer token")


async def test_public_routes_need_no_token(served: Served) -> None:
    assert (await served.http.get("/health")).status_code == 200
    assert (await served.http.get("/ready")).status_code == 200
    response = await served.http.post("/api/v1/hooks/default/no/such/hook", json={})
    assert_problem(response, 404)  # the webhook's own answer, not a 401


async def test_openapi_marks_every_operation_with_its_role(served: Served) -> None:
    response = await served.http.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    scheme = document["components"]["securitySchemes"][access.SCHEME]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    assert scheme["bearerFormat"] == "JWT"
    seen = set()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            key = (method.upper(), path.replace("{path}", "{path:path}"))
            seen.add(key)
            role = access.ROLES[key]
            if role is access.PUBLIC:
                assert operation["security"] == [], key
                assert "x-dwf-role" not in operation
            else:
                assert operation["security"] == [{access.SCHEME: []}], key
                assert operation["x-dwf-role"] == role.label, key
                assert {"401", "403"} <= set(operation["responses"]), key
    # The UI's files are not operations of the API: served, but not in its document.
    assert seen == {route for route in access.ROLES if not route[1].startswith("/ui")}


# --- the principal ---------------------------------------------------------------------------


async def test_the_tokens_subject_is_the_executions_principal(served: Served) -> None:
    operator = bearer(token("olivia@example.test", roles=["operator"]))
    response = await served.http.post("/api/v1/workflows/w/execute", json={}, headers=operator)
    assert response.status_code == 202, response.text
    execution_id = response.json()["executionId"]
    viewer = bearer(token("victor", roles=["viewer"]))
    document = (await served.http.get(f"/api/v1/executions/{execution_id}", headers=viewer)).json()
    assert document["principal"] == "olivia@example.test"
    # The same subject may say so; anyone else it may not claim to be.
    response = await served.http.post(
        "/api/v1/workflows/w/execute",
        json={"principal": "olivia@example.test", "requestId": "again"},
        headers=operator,
    )
    assert response.status_code == 202, response.text
    response = await served.http.post(
        "/api/v1/workflows/w/execute", json={"principal": "mallory"}, headers=operator
    )
    problem = assert_problem(response, 400, "olivia@example.test")
    assert [error["field"] for error in problem["errors"]] == ["body.principal"]
