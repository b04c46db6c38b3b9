"""Pure parts of the GitOps sync: which files are workflow files, folders, URLs, fire times."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from runner.errors import SourceError
from runner.sync.plan import next_fire_times, node_diff
from runner.sync.source import SourceFile, check_folder, display_url, select


def paths(files: list[SourceFile]) -> list[str]:
    return [f.path for f in files]


def test_a_workflows_folder_narrows_the_search_like_dwf_lint():
    files = [SourceFile(p, "b", 1) for p in (
        "dwf.yaml", "templates/x/set.yaml", "workflows/a.yaml", "workflows/sub/b.yml",
        "workflows/.hidden/c.yaml", "workflows/notes.md",
    )]  # fmt: skip
    assert paths(select(files, "")) == ["workflows/a.yaml", "workflows/sub/b.yml"]
    flat = [SourceFile(p, "b", 1) for p in ("flows/a.yaml", "flows/.x.yaml", "other/b.yaml")]
    assert paths(select(flat, "flows")) == ["flows/a.yaml"]


@pytest.mark.parametrize("folder", ["../x", "/etc", "a/../../b", "./.."])
def test_a_folder_outside_the_repository_is_refused(folder):
    with pytest.raises(SourceError, match="inside the repository"):
        check_folder(folder)


def test_folders_are_normalised():
    assert check_folder("") == check_folder(".") == check_folder("/") == ""
    assert check_folder("teams/ops/") == "teams/ops"


def test_credentials_never_show_in_a_recorded_url():
    assert display_url("https://user:s3cret@git.example/r.git") == "https://git.example/r.git"
    assert display_url("https://token@git.example/r.git") == "https://git.example/r.git"
    assert display_url("ssh://git@host/r.git") == "ssh://git@host/r.git"
    assert display_url("/srv/repo") == "/srv/repo"


def test_next_fire_times_follow_the_time_zone_across_a_dst_change():
    now = datetime(2026, 3, 27, 12, 0, tzinfo=UTC)
    assert next_fire_times("0 9 * * *", "Europe/London", now) == [
        "2026-03-28T09:00:00+00:00",
        "2026-03-29T09:00:00+01:00",
        "2026-03-30T09:00:00+01:00",
    ]
    assert next_fire_times("not cron", "UTC", now) == []


def test_node_diff_names_added_removed_and_changed_fields():
    old = [{"id": "a", "actionType": "core.echo", "retry": {"maxAttempts": 2}}, {"id": "b"}]
    new = [{"id": "a", "actionType": "core.echo", "retry": {"maxAttempts": 3}}, {"id": "c"}]
    assert node_diff(old, new) == {"added": ["c"], "removed": ["b"], "changed": {"a": ["retry"]}}
