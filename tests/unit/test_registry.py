"""The action registry: built-ins, and plugins found through the entry-point group."""

from __future__ import annotations

import sys
import textwrap

import pytest

from runner.actions import registry
from runner.errors import ActionRegistryError


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A real installed-looking distribution (dist-info with entry points) on sys.path."""

    def install(module_source: str, entry_points: str) -> None:
        (tmp_path / "fake_plugin.py").write_text(textwrap.dedent(module_source))
        info = tmp_path / "fake_plugin-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-plugin\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
        monkeypatch.syspath_prepend(str(tmp_path))
        registry.clear_cache()

    yield install
    registry.clear_cache()
    sys.modules.pop("fake_plugin", None)


def test_builtins_are_known_and_registered_as_entry_points():
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group=registry.ENTRY_POINT_GROUP)}
    assert {"core.echo", "core.delay"} <= names
    assert registry.get("core.echo").type == "core.echo"


def test_unknown_type_names_the_registered_ones():
    with pytest.raises(ActionRegistryError, match=r"unknown action type 'nope'.*core\.echo"):
        registry.get("nope")


def test_a_plugin_registers_through_the_entry_point_group(plugin_dir):
    plugin_dir(
        """
        from runner.actions.base import Action, ActionResult

        class Shout(Action):
            type = "fake.shout"
            parameters_schema = {"type": "object", "required": ["text"]}

            async def execute(self, context, params):
                return ActionResult.ok({"shout": params["text"].upper()})
        """,
        """
        [dataworkflows.actions]
        fake.shout = fake_plugin:Shout
        """,
    )
    assert registry.get("fake.shout").__name__ == "Shout"
    assert "fake.shout" in registry.all_types()


def test_a_plugin_registered_under_the_wrong_name_is_refused(plugin_dir):
    plugin_dir(
        """
        from runner.actions.base import Action

        class Shout(Action):
            type = "fake.shout"
        """,
        """
        [dataworkflows.actions]
        fake.other = fake_plugin:Shout
        """,
    )
    with pytest.raises(ActionRegistryError, match=r"declares type 'fake\.shout'"):
        registry.get("fake.other")


def test_a_broken_plugin_is_reported_not_crashed_on(plugin_dir):
    plugin_dir(
        "raise ImportError('missing sdk')\n", "[dataworkflows.actions]\nfake.x = fake_plugin:X\n"
    )
    with pytest.raises(ActionRegistryError, match=r"failed to load: missing sdk"):
        registry.get("fake.x")


def test_lint_checks_connector_parameters_against_their_schemas():
    from runner.lint import linter

    source = b"""\
apiVersion: dataworkflows/v1
kind: Workflow
id: w
startNode: post
nodes:
  - id: post
    actionType: slack.post-message
    parameters: {channel: 5, text: hi, thread: x}
    edges: [{targetNode: fetch}]
  - id: fetch
    actionType: monday.get-items
    parameters: {boardId: "{{ trigger.board }}", limit: 0}
"""
    found = {
        (d.rule, d.line, d.message.split(": ", 1)[1])
        for d in linter.lint_source("w.yaml", source).diagnostics
    }
    assert found == {
        ("action-parameters", 8, "parameters.channel: 5 is not of type 'string'"),
        ("action-parameters", 8, "parameters: unknown parameter `thread`; did you mean "
         "`threadTs`? (allowed: blocks, channel, text, threadTs)"),
        ("action-parameters", 12, "parameters.limit: 0 is less than the minimum of 1"),
    }  # fmt: skip
