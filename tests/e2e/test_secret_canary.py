"""The canary corpus (issue 14): every transform of a secret and every error path that can quote
one, run for real; then no derived form of either canary is anywhere a user can look.

Two canaries: one of mixed case, digits and `-`, one with `"`, `\\` and letters outside ASCII
(for the escaped forms). The transforms are refused by `dwf lint` (the finding, never a value),
and, registered past lint, by the engine at run time, in `dwf serve` and in `dwf run`. The error
paths are lint-clean placements whose failures quote what the secret went into: a refused
private address, a closed port, a server answering 500 with the header in its body, a body
longer than the error's cut, a scripted failure, a missing secret, a subworkflow handed the
secret, a trigger payload holding it after the process revealed it. Then `pg_dump`, the logs
(JSON and console), API documents, lists and SSE streams, and the CLI's output are searched.
"""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests import fakes
from tests.documents import workflow
from tests.e2e.test_run import dwf  # noqa: F401 (a fixture: the CLI against the test database)
from tests.e2e.test_secrets import pg_dump
from tests.e2e.test_serve import (
    DWF,
    ROOT,
    TERMINAL,
    Served,
    env,  # noqa: F401 (a fixture)
    free_port,
    register,
    wait_for_health,
    wait_for_status,
)
from tests.unit.test_secret_placement import REFUSED, derived

pytestmark = pytest.mark.slow

_HEX = uuid.uuid4().hex
#: Mixed case, digits and `-`.
CANARY = f"Kq{_HEX[:4].upper()}7-{_HEX[4:10]}-Zx{_HEX[10:14].upper()}"
#: A quote, a backslash and letters outside ASCII: what JSON, repr and URLs escape.
CANARY2 = f'Ünï"{_HEX[14:20]}\\Çø-{_HEX[20:26]}'
SECRET_ENV = {"DWF_SECRET_CANARY": CANARY, "DWF_SECRET_CANARY2": CANARY2}
#: core.http quotes this much of an error response's body; the long bodies straddle it.
ERROR_CUT = 300
PG_DUMP = "/usr/bin/pg_dump" if Path("/usr/bin/pg_dump").exists() else pg_dump()


def forms(value: str) -> set[str]:
    """Every derived form searched for: the refused transforms' results, the part a cut would
    leave, and the encodings (URL as Python and httpx write them, base64, JSON, repr)."""
    found = (
        set(derived(value))
        | {
            value[:8],  # what an error cut just after it would leave
            value[1:],
            quote_whatwg_path(value),
            quote_whatwg_query(value),
            base64.urlsafe_b64encode(value.encode()).decode(),
            json.dumps(value, ensure_ascii=False)[1:-1],
            ascii(value)[1:-1],
        }
    )
    return {form for form in found if len(form) >= 4}


def quote_whatwg_path(value: str) -> str:
    return httpx.URL(f"http://h/{value}").raw_path.decode()[1:]


def quote_whatwg_query(value: str) -> str:
    return httpx.URL(f"http://h/?{value}").query.decode()


def in_copy_text(form: str) -> str:
    """A form as pg_dump's COPY text writes it: each backslash doubled (jsonb escapes it once)."""
    return form.replace("\\", "\\\\")


def chained(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each node followed by the next whatever its outcome, so every one of them runs."""
    for node, following in itertools.pairwise(nodes):
        node.setdefault("edges", []).append({"targetNode": following["id"], "when": "always"})
    return nodes


def echo(node_id: str, message: Any, params: dict[str, Any] | None = None, **more: Any) -> Any:
    parameters = {"message": message, **(params or {})}
    return {"id": node_id, "actionType": "core.echo", "parameters": parameters, **more}


def transform_templates() -> list[str]:
    """The corpus for both canaries (templates that name no secret only once)."""
    first = [template for template, _ in REFUSED]
    second = [t.replace("canary", "canary2") for t in first if "canary" in t]
    return first + second


def transforms() -> dict[str, Any]:
    """Every refused transform as a node (refused at run time too), then an idempotency key and
    a condition that read a secret: the condition fails the execution."""
    nodes = [echo(f"t{i:02d}", text) for i, text in enumerate(transform_templates())]
    nodes.append(echo("key", "placed {{ secrets.canary }}", idempotencyKey="{{ secrets.canary }}"))
    condition = {"targetNode": "end", "condition": "secrets.canary.length > 0"}
    nodes.append(echo("cond", "fine", edges=[condition]))
    nodes.append(echo("end", "never"))
    return workflow("canary-transforms", *chained(nodes))


def stored_values() -> list[dict[str, Any]]:
    """Secrets in vars and in workflow outputs: each refused at run time."""
    in_vars = workflow(
        "canary-vars",
        echo("a", "{{ vars.v }} {{ vars.w }}"),
        vars={"v": "{{ secrets.canary | upper }}", "w": "{{ secrets.canary2 }}"},
    )
    in_outputs = workflow(
        "canary-outputs",
        echo("a", "hi"),
        outputs={"o": "{{ secrets.canary }}", "p": "{{ secrets.canary2[::-1] }}"},
    )
    return [in_vars, in_outputs]


def long_header(secret: str) -> str:
    """`Bearer <padding><secret>`, the secret across the cut of the 500 body that echoes it
    (`{"error":"status 500","auth":"Bearer ` is 37 characters)."""
    return "Bearer " + "p" * (ERROR_CUT - 10 - 37) + "{{ secrets." + secret + " }}"


def http(node_id: str, url: str, **parameters: Any) -> dict[str, Any]:
    return {"id": node_id, "actionType": "core.http", "parameters": {"url": url, **parameters}}


def error_paths(web: str, failing: str, closed_port: int) -> dict[str, Any]:
    """Lint-clean placements whose failures quote what the secret went into. The second canary
    cannot go in a header (httpx sends ASCII only: that failure is a path of its own), so a
    server answering 500 with the request's own body echoes it."""
    both = "{{ secrets.canary }}/{{ secrets.canary2 }}"
    query = {"k": "{{ secrets.canary }}", "k2": "{{ secrets.canary2 }}"}
    bearer = {"Authorization": "Bearer {{ secrets.canary }}"}
    padding = "p" * (ERROR_CUT - 10 - len('{"pad":"","token":"'))
    nodes = [
        http("closed", f"http://127.0.0.1:{closed_port}/{both}", query=query),
        http("echo500", f"{web}/status/500?x={{{{ secrets.canary }}}}", headers=bearer),
        http("long", f"{web}/status/500", headers={"Authorization": long_header("canary")}),
        http("header2", f"{web}/status/500", headers={"X-Key": "{{ secrets.canary2 }}"}),
        http("body500", failing, method="POST", json={"token": "{{ secrets.canary2 }}"}),
        http(
            "long2", failing, method="POST", json={"pad": padding, "token": "{{ secrets.canary2 }}"}
        ),
        echo(
            "flaky",
            "{{ secrets.canary }} {{ secrets.canary2 }}",
            {"failTimes": 1},
            retry={"maxAttempts": 2, "initialDelay": "50ms", "rerenderOnRetry": True},
        ),
        echo("missing", "{{ secrets['canary-absent'] }}"),
        {
            "id": "child",
            "nodeType": "subworkflow",
            "workflowId": "canary-child",
            "waitForCompletion": True,
            "parameters": {"token": "{{ secrets.canary }}", "token2": "{{ secrets.canary2 }}"},
        },
        echo("after", "done"),
    ]
    return workflow("canary-errors", *chained(nodes))


def failing_server(received: list[bytes]) -> Starlette:
    """Answers every POST with 500 and the request's own body, as a careless API does."""

    async def fail(request: Request) -> Response:
        body = await request.body()
        received.append(body)
        return Response(body, status_code=500, media_type="application/json")

    return Starlette(routes=[Route("/fail", fail, methods=["POST"])])


def child() -> dict[str, Any]:
    """Handed the secrets as parameters (its trigger), it transforms what it was given."""
    return workflow(
        "canary-child",
        echo("c", "{{ trigger.token | upper }} {{ trigger.token2[::-1] }} {{ trigger.token }}"),
        outputs={"said": "{{ nodes.c.outputs.echo }}"},
    )


def payload() -> dict[str, Any]:
    """Started with the secrets' values in its trigger, after the process revealed them."""
    message = "{{ trigger.leak }} {{ trigger.leak | upper }} {{ trigger.leak2[::-1] }}"
    return workflow("canary-payload", echo("p", message))


def refused_address() -> dict[str, Any]:
    """Run by `dwf run`, which refuses private addresses: the secret in the URL and a header."""
    url = "http://10.255.255.1/{{ secrets.canary }}?k={{ secrets.canary2 }}"
    call = http("private", url, headers={"Authorization": "Bearer {{ secrets.canary }}"})
    flaky = echo(
        "flaky",
        "{{ secrets.canary }} {{ secrets.canary2 }}",
        {"failTimes": 1},
        retry={"maxAttempts": 2, "initialDelay": "50ms"},
    )
    return workflow("canary-refused", *chained([call, flaky]))


def write(folder: Path, name: str, document: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(json.dumps(document, indent=1), encoding="utf-8")  # JSON is YAML
    return path


# --- the test -----------------------------------------------------------------------------------


def test_no_derived_form_of_a_secret_leaves_the_runner(
    dwf,  # noqa: F811
    env,  # noqa: F811
    tmp_path: Path,
    database_url: str,
):
    outputs: dict[str, str] = {}  # where -> text, all searched at the end

    # 1. Lint refuses every transform, at its line, saying what is applied; clean paths pass.
    corpus = tmp_path / "transforms"
    templates = [template for template, _ in REFUSED]
    for i, template in enumerate(templates):
        write(corpus, f"t{i:02d}", workflow(f"t{i:02d}", echo("a", template)))
    for document in (*stored_values(), transforms()):
        write(corpus, document["id"], document)
    linted = dwf("lint", "--format", "json", str(corpus), env=SECRET_ENV)
    assert linted.returncode == 1
    outputs["dwf lint"] = linted.stdout + linted.stderr
    findings: dict[str, list[tuple[str, str]]] = {}
    for finding in json.loads(linted.stdout):
        findings.setdefault(Path(finding["path"]).stem, []).append(
            (finding["rule"], finding["message"])
        )
    for i, (_, applied) in enumerate(REFUSED):
        ((rule, message),) = findings[f"t{i:02d}"]
        assert rule == "secret-transformed" and applied in message, (templates[i], message)
    rules = {name: sorted({r for r, _ in found}) for name, found in findings.items()}
    assert rules["canary-vars"] == rules["canary-outputs"] == ["template-unknown-name"]
    assert rules["canary-transforms"] == ["secret-transformed", "template-unknown-name"]
    assert len(findings["canary-transforms"]) == len(transform_templates()) + 2  # key, condition

    received: list[bytes] = []
    with fakes.http() as web, fakes.serve(failing_server(received)) as failing:
        closed = free_port()
        clean = tmp_path / "clean"
        errors = error_paths(web.url, f"{failing}/fail", closed)
        clean_documents = [errors, child(), payload(), refused_address()]
        paths = {d["id"]: write(clean, d["id"], d) for d in clean_documents}
        checked = dwf("lint", "--format", "json", str(clean))
        assert checked.returncode == 0 and json.loads(checked.stdout) == [], checked.stdout

        # 2. Registered past lint, the same workflows are refused by the engine itself.
        for document in (transforms(), *stored_values(), *clean_documents[:3]):
            register(database_url, tmp_path, document)

        # 3. `dwf run`: a refused private address (console logs, the JSON document), then the
        # corpus with its live progress on stderr (JSON logs), which quotes every node's error.
        refused_env = SECRET_ENV | {"DWF_LOG_FORMAT": "console"}
        run = dwf("run", str(paths["canary-refused"]), "--output", "json", env=refused_env)
        assert run.returncode == 0, run.stdout + run.stderr  # the failure is handled (`always`)
        outputs |= {"dwf run --output json": run.stdout, "dwf run (stderr, console)": run.stderr}
        refused = json.loads(run.stdout)["nodes"]
        assert refused["private"]["error"]["type"] == "AddressRefused"
        assert refused["flaky"]["status"] == "Succeeded" and refused["flaky"]["attempts"] == 2
        assert refused["flaky"]["outputs"] == {"echo": "*** ***"}
        live = dwf("run", "canary-transforms", env=SECRET_ENV | {"DWF_LOG_FORMAT": "json"})
        assert live.returncode == 1
        assert live.stderr.count("may only be placed whole") == len(transform_templates())
        outputs |= {"dwf run (progress, JSON logs)": live.stderr, "dwf run": live.stdout}

        # 4. `dwf serve`, logging JSON then console: the corpus, the stored values and the
        # error paths, then a payload holding the values (the process has revealed them).
        documents = {}
        for log_format, names in (
            ("json", ("canary-transforms", "canary-vars", "canary-outputs", "canary-errors")),
            ("console", ("canary-errors",)),
        ):
            served = serve(env | {"DWF_LOG_FORMAT": log_format}, tmp_path / log_format)
            try:
                with httpx.Client(base_url=served.url, timeout=10) as client:
                    for name in names:
                        documents[name] = execute(client, name, {}, outputs)
                    trigger = {"leak": CANARY, "leak2": CANARY2}
                    documents["canary-payload"] = execute(
                        client, "canary-payload", trigger, outputs
                    )
                    if log_format == "console":
                        collect_api(client, outputs)
            finally:
                served.stop()
            outputs[f"dwf serve ({log_format} logs)"] = served.log_text()
        sent = [r.headers.get("authorization", "") for r in web.requests]

    # What went out carried the real values: the secrets were used, not just refused.
    assert f"Bearer {CANARY}" in sent and any(h.endswith("p" + CANARY) for h in sent)
    assert [json.loads(body)["token"] for body in received] == [CANARY2] * 4  # 2 servers
    assert_behaviour(documents)

    # 5. The CLI's view of the executions.
    for name in ("canary-errors", "canary-transforms", "canary-payload"):
        shown = dwf("executions", "show", documents[name]["executionId"])
        assert shown.returncode == 0, shown.stderr
        outputs[f"dwf executions show {name}"] = shown.stdout + shown.stderr
    as_json = dwf(
        "executions", "show", documents["canary-errors"]["executionId"], "--output", "json"
    )
    outputs["dwf executions show --output json"] = as_json.stdout

    # 6. The whole database, and every text gathered, hold no derived form of either canary.
    dump = subprocess.run(
        [PG_DUMP, "--data-only", database_url],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    assert "action_executions" in dump and "***" in dump
    searched = {CANARY: forms(CANARY), CANARY2: forms(CANARY2)}
    for canary, found in searched.items():
        for form in found | {in_copy_text(f) for f in found}:
            assert dump.count(form) == 0, f"{form!r} (of {canary!r}) found in pg_dump"
        for where, text in outputs.items():
            for form in found:
                assert text.count(form) == 0, f"{form!r} (of {canary!r}) found in {where}"
    for log_format in ("json", "console"):
        assert "***" in outputs[f"dwf serve ({log_format} logs)"]  # it did log them, masked
    for line in outputs["dwf serve (json logs)"].splitlines():
        json.loads(line)  # still structlog JSON lines


def serve(environ: dict[str, str], folder: Path) -> Served:
    """`dwf serve` (api and worker) with the secrets, allowed to call 127.0.0.1."""
    folder.mkdir(parents=True, exist_ok=True)
    log, port = folder / "serve.log", free_port()
    served_env = environ | SECRET_ENV | {"DWF_HTTP_ALLOW_PRIVATE": "true"}
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [DWF, "serve", "--roles", "api,worker", "--port", str(port)],
            cwd=ROOT, env=served_env, stdout=sink, stderr=sink,
        )  # fmt: skip
    served = Served(proc, f"http://127.0.0.1:{port}", log)
    try:
        wait_for_health(served)
    except BaseException:
        proc.kill()
        raise
    return served


def execute(
    client: httpx.Client, name: str, trigger: Any, outputs: dict[str, str]
) -> dict[str, Any]:
    """Start a workflow over the API and wait for the end of its execution (its document)."""
    started = client.post(f"/api/v1/workflows/{name}/execute", json={"trigger": trigger})
    assert started.status_code == 202, started.text
    outputs[f"POST execute {name} {started.json()['executionId']}"] = started.text
    return wait_for_status(client, str(started.json()["executionId"]), TERMINAL)


def collect_api(client: httpx.Client, outputs: dict[str, str]) -> None:
    """The list of every execution, and each one's document and events (JSON and SSE)."""
    listed = client.get("/api/v1/executions", params={"limit": 100})
    assert listed.status_code == 200
    outputs["GET /executions"] = listed.text
    items = listed.json()["items"]
    assert len(items) == 11  # 2 by `dwf run`, 9 by the servers (2 of them children)
    for item in items:
        execution_id = item["executionId"]
        for suffix, params in (("", {}), ("/events", {}), ("/events", {"follow": "true"})):
            answer = client.get(f"/api/v1/executions/{execution_id}{suffix}", params=params)
            assert answer.status_code == 200, answer.text
            outputs[f"GET {execution_id}{suffix} {params}"] = answer.text
        assert "event: " in outputs[f"GET {execution_id}/events {{'follow': 'true'}}"]


def assert_transforms_refused(document: dict[str, Any]) -> None:
    """Every transform node failed rendering, saying why; the key too; the condition ended it."""
    nodes = document["nodes"]
    assert document["status"] == "Failed"
    for i in range(len(transform_templates())):
        error = nodes[f"t{i:02d}"]["error"]
        assert error["type"] == "TemplateError", error
        assert "may only be placed whole" in error["message"], error
    assert "`secrets` cannot be read here" in nodes["key"]["error"]["message"]
    assert "ReferenceError" in document["error"]["message"], document["error"]
    assert "end" not in nodes or nodes["end"]["status"] == "Skipped"


def assert_behaviour(documents: dict[str, dict[str, Any]]) -> None:
    assert_transforms_refused(documents["canary-transforms"])
    assert "workflow vars at `vars.v`" in documents["canary-vars"]["error"]["message"]
    assert "workflow outputs at `outputs.o`" in documents["canary-outputs"]["error"]["message"]
    nodes = documents["canary-errors"]["nodes"]
    assert nodes["closed"]["error"]["type"] == "ConnectionError"
    for name in ("echo500", "long", "body500", "long2"):
        error = nodes[name]["error"]
        assert error["type"] == "HTTP 500" and "answered 500: {" in error["message"], error
        assert "***" in error["message"], error
    assert nodes["header2"]["status"] == "Failed"  # httpx refuses a header that is not ASCII
    assert nodes["flaky"]["attempts"] == 2 and nodes["flaky"]["outputs"] == {"echo": "*** ***"}
    assert "secret 'canary-absent' is not configured" in nodes["missing"]["error"]["message"]
    assert nodes["child"]["outputs"]["outputs"] == {"said": "*** *** ***"}
    assert documents["canary-payload"]["nodes"]["p"]["outputs"] == {"echo": "*** *** ***"}
