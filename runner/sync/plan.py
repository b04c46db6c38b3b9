"""`dwf plan`: what syncing a checkout would change, as text, markdown (a pull-request comment)
or JSON. The change set is the one `dwf sync` would apply (`runner.sync.diff.decide`); this
module adds the details a reviewer wants: node-level diffs and trigger changes with the next
fire times of each changed schedule.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from runner.sync.diff import ChangeSet, FileChange

FIRE_TIMES = 3
#: Top-level fields of a workflow compared one by one (nodes and triggers have their own diff).
WORKFLOW_FIELDS = ("displayName", "description", "startNode", "vars", "options", "onFailure",
                   "outputs", "apiVersion", "kind")  # fmt: skip
_VERBS = {"added": "add", "updated": "update", "status": "status", "archived": "archive",
          "invalid": "invalid", "ignored": "ignored"}  # fmt: skip
_MARKS = {"added": "+", "updated": "~", "status": "*", "archived": "-", "invalid": "!",
          "ignored": "?"}  # fmt: skip


def build(
    changes: ChangeSet, previous: Mapping[str, Mapping[str, Any]], *, now: datetime
) -> dict[str, Any]:
    """The plan document (the JSON format). `previous`: the current definition of each
    workflow that changes, by id; `now`: from when schedules' next fire times count."""
    workflows: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    for change in changes.files:
        if change.outcome == "unchanged":
            continue
        if change.outcome in ("invalid", "ignored"):
            problems.append(_problem(change))
            continue
        workflows.append(_entry(change, previous.get(str(change.workflow_id)), now))
    counts = {k: v for k, v in changes.counts.items() if k != "unchanged"}
    return {
        "changes": changes.changed and changes.refused is None,
        "errors": changes.errors,
        "refused": changes.refused,
        "summary": counts | {"unchanged": changes.counts.get("unchanged", 0)},
        "workflows": workflows,
        "problems": problems,
    }


def _problem(change: FileChange) -> dict[str, Any]:
    kept = change.previous
    return {
        "path": change.path,
        "workflowId": change.workflow_id,
        "outcome": change.outcome,
        # What keeps running meanwhile: the workflow's current version, if it has one.
        "keeps": None if kept is None else {"version": kept.version, "status": kept.status},
        "diagnostics": [d.as_dict() for d in change.diagnostics],
    }


def _entry(change: FileChange, old: Mapping[str, Any] | None, now: datetime) -> dict[str, Any]:
    before = change.previous
    entry: dict[str, Any] = {
        "workflowId": change.workflow_id,
        "path": change.path,
        "action": change.outcome,
        "status": {"from": before.status if before else None, "to": change.status},
        "version": {"from": before.version if before else None},
    }
    new = change.document if change.outcome != "archived" else None
    if change.outcome == "updated" and old is not None and new is not None:
        entry["nodes"] = node_diff(old.get("nodes") or [], new.get("nodes") or [])
        entry["fields"] = [
            name
            for name in WORKFLOW_FIELDS
            if _canonical(old.get(name)) != _canonical(new.get(name))
        ]
    was_active = before is not None and before.status == "Active"
    old_triggers = (old or {}).get("triggers") or [] if was_active else []
    new_triggers = (new or {}).get("triggers") or [] if change.status == "Active" else []
    entry["triggers"] = trigger_diff(old_triggers, new_triggers, now)
    if change.diagnostics:
        entry["diagnostics"] = [d.as_dict() for d in change.diagnostics]
    return entry


def node_diff(old: Sequence[Any], new: Sequence[Any]) -> dict[str, Any]:
    """Nodes added, removed, and changed (with the fields that changed), by node id."""
    before = {n["id"]: n for n in old if isinstance(n, Mapping) and "id" in n}
    after = {n["id"]: n for n in new if isinstance(n, Mapping) and "id" in n}
    changed = {}
    for node_id in after.keys() & before.keys():
        fields = _changed_fields(before[node_id], after[node_id])
        if fields:
            changed[node_id] = fields
    return {
        "added": [n for n in after if n not in before],
        "removed": [n for n in before if n not in after],
        "changed": dict(sorted(changed.items())),
    }


def trigger_diff(old: Sequence[Any], new: Sequence[Any], now: datetime) -> dict[str, Any]:
    """Triggers added, removed and changed by id; schedules added or changed with their next
    fire times (from `now`)."""
    before = {t["id"]: t for t in old if isinstance(t, Mapping) and "id" in t}
    after = {t["id"]: t for t in new if isinstance(t, Mapping) and "id" in t}
    added = [_trigger(after[t], now) for t in after if t not in before]
    changed = []
    for trigger_id, trigger in after.items():
        fields = _changed_fields(before.get(trigger_id), trigger)
        if trigger_id in before and fields:
            changed.append(_trigger(trigger, now) | {"fields": fields})
    removed = [{"id": t, "type": before[t].get("type")} for t in before if t not in after]
    return {"added": added, "removed": removed, "changed": changed}


def _trigger(trigger: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    out: dict[str, Any] = {"id": trigger["id"], "type": trigger.get("type")}
    if trigger.get("type") == "schedule":
        out["cron"] = trigger.get("cron")
        out["timezone"] = trigger.get("timezone", "UTC")
        out["next"] = next_fire_times(str(out["cron"]), str(out["timezone"]), now)
    elif trigger.get("type") == "webhook":
        out["path"] = trigger.get("path")
    return out


def next_fire_times(cron: str, timezone: str, now: datetime, count: int = FIRE_TIMES) -> list[str]:
    """The next `count` fire times of a cron schedule after `now`, ISO 8601 in its time zone:
    the scheduler's own times (`runner.triggers.cron`), daylight-saving days included."""
    from runner.triggers.cron import fire_times

    try:
        times = fire_times(cron, timezone)
    except ValueError:
        return []
    zone = ZoneInfo(timezone)
    after = now if now.tzinfo else now.replace(tzinfo=UTC)
    until = datetime.max.replace(tzinfo=UTC)
    return [t.astimezone(zone).isoformat() for t in times.between(after, until, count)]


def _changed_fields(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[str]:
    old = old or {}
    keys = old.keys() | new.keys()
    return sorted(k for k in keys if _canonical(old.get(k)) != _canonical(new.get(k)))


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


# Rendering ---------------------------------------------------------------------------------


def render_json(plan: Mapping[str, Any]) -> str:
    """The plan as indented JSON."""
    return json.dumps(plan, indent=2, sort_keys=False)


def render_text(plan: Mapping[str, Any]) -> str:
    """The plan for a terminal: one block per workflow, then the problems and a summary."""
    lines: list[str] = []
    for entry in plan["workflows"]:
        lines.append(_headline(entry))
        lines.extend(f"    {line}" for line in _details(entry))
    for problem in plan["problems"]:
        what = "not read" if problem["outcome"] == "ignored" else "invalid"
        keeps = ""
        if problem["keeps"]:
            kept = problem["keeps"]
            keeps = f" ({problem['workflowId']} stays at v{kept['version']}, {kept['status']})"
        lines.append(f"{_MARKS[problem['outcome']]} {what:<8} {problem['path']}{keeps}")
        lines.extend(f"    {_diagnostic(d)}" for d in problem["diagnostics"])
    if plan["refused"]:
        lines.append(f"! {plan['refused']}")
    lines.append(_summary_line(plan))
    return "\n".join(lines)


def render_markdown(plan: Mapping[str, Any]) -> str:
    """The plan as a pull-request comment: a summary line, a table, details, then problems."""
    out = ["### dwf plan", "", _summary_line(plan), ""]
    if plan["refused"]:
        out += [f"> **Refused.** {plan['refused']}", ""]
    if plan["workflows"]:
        out += ["| | workflow | file | change | status |", "| --- | --- | --- | --- | --- |"]
        for entry in plan["workflows"]:
            status = entry["status"]
            moved = (
                f"{status['from']} → {status['to']}"
                if status["from"] and status["from"] != status["to"]
                else str(status["to"])
            )
            out.append(
                f"| {_MARKS[entry['action']]} | `{entry['workflowId']}` | `{entry['path']}` | "
                f"{_VERBS[entry['action']]} | {moved} |"
            )
        out.append("")
        for entry in plan["workflows"]:
            details = _details(entry)
            if details:
                out.append(f"<details><summary><code>{entry['workflowId']}</code></summary>")
                out += ["", *(f"- {_md(line)}" for line in details), "", "</details>", ""]
    if plan["problems"]:
        out += ["**Problems** (invalid files keep their last good version):", "", "```text"]
        for problem in plan["problems"]:
            out.extend(_diagnostic(d) for d in problem["diagnostics"])
        out += ["```", ""]
    return "\n".join(out).rstrip() + "\n"


def _headline(entry: Mapping[str, Any]) -> str:
    mark, verb = _MARKS[entry["action"]], _VERBS[entry["action"]]
    status, version = entry["status"], entry["version"]
    where = f"{entry['workflowId']} ({entry['path']})"
    if entry["action"] == "added":
        return f"{mark} {verb:<8} {where} as {status['to']}"
    if entry["action"] == "archived":
        return (
            f"{mark} {verb:<8} {where}: its file is gone (was {status['from']}, v{version['from']})"
        )
    moved = (
        f"{status['from']} -> {status['to']}" if status["from"] != status["to"] else status["to"]
    )
    if entry["action"] == "updated":
        return f"{mark} {verb:<8} {where}: v{version['from']} -> new version, {moved}"
    return f"{mark} {verb:<8} {where}: {moved}"


def _details(entry: Mapping[str, Any]) -> list[str]:
    lines = []
    nodes = entry.get("nodes")
    if nodes:
        parts = [f"+ {n}" for n in nodes["added"]] + [f"- {n}" for n in nodes["removed"]]
        parts += [f"~ {n} ({', '.join(f)})" for n, f in nodes["changed"].items()]
        if parts:
            lines.append("nodes: " + "; ".join(parts))
    if entry.get("fields"):
        lines.append("workflow: ~ " + ", ".join(entry["fields"]))
    triggers = entry.get("triggers") or {}
    for t in triggers.get("added", []):
        lines.append(f"trigger + {_trigger_text(t)}")
    for t in triggers.get("changed", []):
        lines.append(f"trigger ~ {_trigger_text(t)} (changed: {', '.join(t['fields'])})")
    for t in triggers.get("removed", []):
        lines.append(f"trigger - {t['id']} ({t['type']})")
    lines.extend(_diagnostic(d) for d in entry.get("diagnostics", []))
    return lines


def _trigger_text(t: Mapping[str, Any]) -> str:
    text = f"{t['id']} ({t['type']}"
    if t["type"] == "schedule":
        text += f" `{t['cron']}` {t['timezone']}"
        if t.get("next"):
            text += "; next " + ", ".join(t["next"])
    elif t["type"] == "webhook":
        text += f" {t['path']}"
    return text + ")"


def _diagnostic(d: Mapping[str, Any]) -> str:
    return f"{d['path']}:{d['line']}:{d['column']}: {d['severity']}: {d['message']} [{d['rule']}]"


def _summary_line(plan: Mapping[str, Any]) -> str:
    s = plan["summary"]
    parts = [
        f"{s.get('added', 0)} to add",
        f"{s.get('updated', 0)} to update",
        f"{s.get('status', 0)} status changes",
        f"{s.get('archived', 0)} to archive",
        f"{s.get('unchanged', 0)} unchanged",
    ]
    text = "Plan: " + ", ".join(parts)
    if s.get("invalid"):
        text += f"; {s['invalid']} invalid files"
    if s.get("ignored"):
        text += f"; {s['ignored']} files not read"
    if plan["refused"]:
        text += "; REFUSED: nothing would be changed"
    return text + "."


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;")
