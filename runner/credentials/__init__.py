"""Credentials: named secrets from the environment or a mounted folder (SPEC §10)."""

from runner.credentials.provider import CredentialProvider, env_name

__all__ = ["CredentialProvider", "env_name"]
