"""Masking: a revealed secret, and its URL-encoded and base64 forms, become `***` everywhere."""

from __future__ import annotations

import base64
import io
import json
from urllib.parse import quote, quote_plus

import pytest
import structlog

from runner import logs
from runner.actions.base import ActionError, ActionResult, ResourceLink
from runner.credentials import CredentialProvider, masking
from runner.credentials.masking import Masker

SECRET = "s3cr3t/+ value&more"


@pytest.fixture
def masker() -> Masker:
    made = Masker()
    made.remember(SECRET)
    return made


def test_nothing_is_masked_before_a_secret_is_revealed():
    fresh = Masker()
    value = {"a": ["b", 1]}
    assert fresh.mask(value) is value  # the fast path returns the very object


@pytest.mark.parametrize(
    "form",
    [
        SECRET,
        quote(SECRET, safe=""),
        quote_plus(SECRET),
        base64.b64encode(SECRET.encode()).decode(),
        base64.urlsafe_b64encode(SECRET.encode()).decode(),
    ],
)
def test_every_form_of_the_value_is_masked(masker, form):
    assert masker.mask_text(f"before {form} after") == "before *** after"


@pytest.mark.parametrize("prefix", ["", "u", "us", "user:", "Basic-x:"])
def test_base64_of_a_longer_text_holding_the_secret_is_masked(masker, prefix):
    encoded = base64.b64encode(f"{prefix}{SECRET}".encode()).decode()
    masked = masker.mask_text(f"Authorization: Basic {encoded}")
    head, tail = masked.removeprefix("Authorization: Basic ").split("***")
    # Left: the prefix's own characters before, at most a partial character and padding after.
    assert len(head) <= -(-len(prefix) * 8 // 6) and len(tail) <= 3


def test_nested_values_and_keys_are_masked_without_touching_the_original(masker):
    value = {"params": [{"token": SECRET}], SECRET: 3, "n": 1.5, "ok": True}
    masked = masker.mask(value)
    assert masked == {"params": [{"token": "***"}], "***": 3, "n": 1.5, "ok": True}
    assert value["params"][0]["token"] == SECRET


def test_short_values_are_not_masked():
    short = Masker()
    short.remember("on")
    assert short.pattern is None
    assert short.mask_text("turn it on") == "turn it on"


def test_the_provider_feeds_the_process_masker(monkeypatch):
    canary = "canary-" + base64.b16encode(__name__.encode()).decode()[:12]
    provider = CredentialProvider({"DWF_SECRET_API_KEY": canary})
    assert provider.get("api-key") == canary
    assert masking.mask({"x": f"key={canary}"}) == {"x": "key=***"}


def test_action_results_are_masked_in_outputs_errors_and_links():
    canary = "result-canary-0123456789"
    masking.remember(canary)
    result = ActionResult(
        "Failed",
        {"echo": canary},
        ActionError("HTTP 401", f"bad token {canary}"),
        (ResourceLink("x", "y", canary, f"https://h/{canary}"),),
    ).masked()
    assert result.outputs == {"echo": "***"}
    assert result.error == ActionError("HTTP 401", "bad token ***")
    assert result.resource_links == (ResourceLink("x", "y", "***", "https://h/***"),)


def test_log_lines_are_masked_tracebacks_included(capsys):
    canary = "log-canary-9876543210"
    masking.remember(canary)
    logs.configure("json", "info")
    try:
        log = structlog.get_logger("test")
        log.info("calling", url=f"https://api/?key={quote(canary)}")
        try:
            raise RuntimeError(f"failed with {canary}")
        except RuntimeError:
            log.exception("boom")
    finally:
        structlog.reset_defaults()
    err = capsys.readouterr().err
    assert canary not in err and quote(canary) not in err
    lines = [json.loads(line) for line in io.StringIO(err)]
    assert lines[0]["url"] == "https://api/?key=***"
    assert "failed with ***" in lines[1]["exception"]
