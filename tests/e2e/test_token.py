"""`dwf token`: development tokens that strict mode accepts, refused without a secret."""

from __future__ import annotations

import asyncio

import jwt

from runner.auth.identity import Identity, Role
from runner.auth.tokens import TokenVerifier
from runner.settings import Settings
from tests.e2e.test_cli import dwf

SECRET = "a-development-secret-of-32-bytes-or-more"
ENV = {
    "DWF_JWT_SECRET": SECRET,
    "DWF_JWT_ISSUER": "https://idp.example",
    "DWF_JWT_AUDIENCE": "dwf-dev",
}


def test_a_minted_token_is_one_strict_mode_accepts():
    proc = dwf("token", "--sub", "ann", "--role", "operator", "--role", "viewer",
               "--tenant", "acme", "--ttl", "15m", env=ENV)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    token = proc.stdout.strip()
    settings = Settings.from_env(ENV | {"DWF_AUTH_MODE": "strict"})
    identity = asyncio.run(TokenVerifier.from_settings(settings).verify(token))
    assert identity == Identity(principal="ann", tenant="acme", role=Role.OPERATOR)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 15 * 60
    assert claims["roles"] == ["operator", "viewer"]


def test_the_tenant_defaults_to_the_runners_and_the_claims_follow_the_settings():
    env = ENV | {"DWF_TENANT": "globex", "DWF_JWT_ROLES_CLAIM": "groups",
                 "DWF_JWT_TENANT_CLAIM": "org"}  # fmt: skip
    proc = dwf("token", "--sub", "bob", env=env)
    assert proc.returncode == 0, proc.stderr
    claims = jwt.decode(proc.stdout.strip(), options={"verify_signature": False})
    assert (claims["org"], claims["groups"], claims["sub"]) == ("globex", ["viewer"], "bob")


def test_without_a_secret_no_token_is_minted():
    env = {"DWF_JWT_SECRET": "", "DWF_JWT_ISSUER": "", "DWF_JWT_AUDIENCE": ""}
    proc = dwf("token", "--sub", "ann", env=env)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "DWF_JWT_SECRET" in proc.stderr


def test_an_unknown_role_or_a_bad_ttl_is_a_usage_error():
    bad_role = dwf("token", "--sub", "ann", "--role", "root", env=ENV)
    assert bad_role.returncode == 2
    assert "root" in bad_role.stderr
    bad_ttl = dwf("token", "--sub", "ann", "--ttl", "soon", env=ENV)
    assert bad_ttl.returncode == 2
    assert "--ttl" in bad_ttl.stderr
