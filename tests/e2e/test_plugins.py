"""A third-party connector package, installed next to the runner, works with no change to it:
`dwf actions` lists it, `dwf lint` checks its parameters, `dwf run` runs it."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.e2e.test_serve import DWF, ROOT

pytestmark = pytest.mark.slow

MODULE = '''
from runner.actions.base import Action, ActionResult


class Greet(Action):
    """Greets someone, with the execution's correlation id as a witness."""

    type = "acme.greet"
    version = "2"
    description = "Say hello."
    parameters_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["name"],
        "properties": {"name": {"type": "string"}, "times": {"type": "integer"}},
    }
    outputs_schema = {"type": "object", "properties": {"greeting": {"type": "string"}}}

    async def execute(self, context, params):
        greeting = " ".join(["hello " + params["name"]] * params.get("times", 1))
        return ActionResult.ok({"greeting": greeting, "headers": context.outbound_headers()})
'''


def workflow(parameters: str) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: dataworkflows/v1
        kind: Workflow
        id: greeter
        startNode: greet
        nodes:
          - id: greet
            actionType: acme.greet
            parameters: {parameters}
        """
    )


@pytest.fixture
def installed(tmp_path: Path) -> Path:
    """`acme-connector` 0.1 installed into a folder: its module and its dist-info."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "acme_connector.py").write_text(MODULE)
    info = site / "acme_connector-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-connector\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[dataworkflows.actions]\nacme.greet = acme_connector:Greet\n"
    )
    (info / "RECORD").write_text("")
    return site


def dwf(args: list[str], site: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environ = env | {"PYTHONPATH": str(site)}
    return subprocess.run(
        [DWF, *args], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip


def test_an_installed_connector_is_listed_linted_and_run(installed, tmp_path, database_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DWF_")} | {
        "DWF_DATABASE_URL": database_url,
        "DWF_HOME": str(tmp_path / "home"),
    }
    listed = dwf(["actions", "--output", "json"], installed, env)
    assert listed.returncode == 0, listed.stderr
    entry = {e["type"]: e for e in json.loads(listed.stdout)}["acme.greet"]
    assert (entry["package"], entry["packageVersion"], entry["version"]) == (
        "acme-connector",
        "0.1",
        "2",
    )
    assert entry["parameters"]["required"] == ["name"]

    bad = tmp_path / "bad.yaml"
    bad.write_text(workflow('{name: ada, times: "twice"}'))
    linted = dwf(["lint", str(bad)], installed, env)
    assert linted.returncode == 1
    assert "parameters.times: 'twice' is not of type 'integer'" in linted.stdout
    assert "[action-parameters]" in linted.stdout

    good = tmp_path / "good.yaml"
    good.write_text(workflow("{name: ada, times: 2}"))
    assert dwf(["lint", str(good)], installed, env).returncode == 0
    ran = dwf(["run", str(good), "--output", "json"], installed, env)
    assert ran.returncode == 0, ran.stderr
    document = json.loads(ran.stdout)
    outputs = document["nodes"]["greet"]["outputs"]
    assert outputs["greeting"] == "hello ada hello ada"
    assert outputs["headers"] == {"X-Correlation-Id": document["correlationId"]}

    without = dwf(["lint", str(good)], tmp_path, env)  # not installed: unknown type
    assert without.returncode == 1 and "[unknown-action-type]" in without.stdout


def test_a_plugin_without_a_type_is_named_not_a_traceback(installed, tmp_path):
    # The class forgot `type = "acme.greet"`: a mistake a connector author makes once.
    module = installed / "acme_connector.py"
    module.write_text(MODULE.replace('    type = "acme.greet"\n', ""))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DWF_")} | {
        "DWF_HOME": str(tmp_path / "home"),  # neither command needs a database
    }
    named = "action plugin 'acme.greet' (acme_connector:Greet) declares no `type`"

    listed = dwf(["actions"], installed, env)
    assert listed.returncode == 1
    assert "Traceback" not in listed.stderr
    assert listed.stderr.startswith(f"dwf actions: {named}; give the class `type = 'acme.greet'`")

    uses = tmp_path / "uses.yaml"
    uses.write_text(workflow("{name: ada}"))
    linted = dwf(["lint", "--format", "json", str(uses)], installed, env)
    assert linted.returncode == 1, linted.stderr
    [finding] = json.loads(linted.stdout)
    assert finding["rule"] == "unknown-action-type"  # not internal-error
    assert finding["line"] == 7  # the node's actionType
    assert "node `greet`: action type `acme.greet` cannot be used: " in finding["message"]
    assert named in finding["message"]

    # A workflow that does not use the broken plugin is not hurt by it.
    other = tmp_path / "other.yaml"
    other.write_text(workflow("{message: hi}").replace("acme.greet", "core.echo"))
    assert dwf(["lint", str(other)], installed, env).returncode == 0
