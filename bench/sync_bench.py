"""GitOps sync of a large repository: `python bench/sync_bench.py [--files 1000] [--runs 5]
[--database-url URL]`.

Commits N workflow files (the lint benchmark's clean 20-node, ~100-line workflows, each with a
schedule and a manual trigger) to a local git repository and syncs them into a fresh database
as the daemon does (`Syncer.sync`, one process, its lint memo warm after the first sync):

1. first sync: fetch, lint every file, write N workflows, N versions and 2N trigger rows;
2. resync with no change (median of --runs);
3. resync after a commit changing one file (median of --runs, a different file each time);

then the same two resyncs as a fresh `dwf sync` process each time (nothing in memory: it reads
what the last sync stored in `sync_files` and lints only files whose blob changed). Figures
are medians, with the spread (min-max) of the runs. Without --database-url (or
DWF_DATABASE_URL) it uses a private embedded Postgres (pgserver) in a temporary home; with one,
it creates a scratch database on that server and drops it afterwards. Exits 1 when a target
is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.lint_bench import workflow_text
from tests.gitrepo import GitRepo

TARGETS = {
    "first sync": 10.0,
    "resync, no change": 1.0,
    "resync, one file changed": 1.5,
    "`dwf sync` process, no change": 1.0,
}
Figure = tuple[float, float, float]  # median, min, max (seconds)


def spread(times: list[float]) -> Figure:
    return statistics.median(times), min(times), max(times)


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


async def measure(url: str, home: Path, repo: GitRepo, files: int, runs: int) -> dict[str, Figure]:
    from runner.daemon import Daemon
    from runner.settings import Settings

    settings = Settings(database_url=url, home=home, sync_repo=str(repo.root))
    figures: dict[str, Figure] = {}
    async with Daemon(settings) as daemon:
        syncer = daemon.syncer()
        start = time.perf_counter()
        run = await syncer.sync("cli")
        first = time.perf_counter() - start
        figures["first sync"] = (first, first, first)
        assert run is not None and run.status == "applied", (run.status, run.error)
        assert run.summary.get("added") == files, run.summary
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            run = await syncer.sync("cli")
            times.append(time.perf_counter() - start)
            assert run is not None and run.status == "unchanged", run.status
        figures["resync, no change"] = spread(times)
        times = []
        for i in range(runs):
            path = f"workflows/wf-{i * 97 % files:04d}.yaml"
            text = (repo.root / path).read_text().replace("start {{", f"start ({i}) {{{{")
            repo.write(path, text)
            repo.commit(f"change {i}")
            start = time.perf_counter()
            run = await syncer.sync("cli")
            times.append(time.perf_counter() - start)
            assert run is not None and run.summary.get("updated") == 1, run.summary
        figures["resync, one file changed"] = spread(times)
    return figures


def cli_figures(url: str, home: Path, repo: GitRepo, runs: int) -> dict[str, Figure]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DWF_")}
    env |= {"DWF_DATABASE_URL": url, "DWF_HOME": str(home), "DWF_LOG_FORMAT": "json"}
    dwf = shutil.which("dwf", path=str(Path(sys.executable).parent)) or "dwf"
    out: dict[str, Figure] = {}
    for label, change in (("no change", False), ("one file changed", True)):
        times = []
        for i in range(runs):
            if change:
                path = repo.root / f"workflows/wf-{(i * 31 + 7) % 1000:04d}.yaml"
                path.write_text(path.read_text().replace("start {{", f"start [{i}] {{{{"))
                repo.commit(f"cli change {i}")
            start = time.perf_counter()
            proc = subprocess.run(
                [dwf, "sync", "--repo", str(repo.root)], env=env, check=False,
                capture_output=True, timeout=120, text=True,
            )  # fmt: skip
            if proc.returncode != 0:
                raise SystemExit(f"`dwf sync` failed ({proc.returncode}):\n{proc.stdout[-3000:]}")
            times.append(time.perf_counter() - start)
        out[f"`dwf sync` process, {label}"] = spread(times)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database-url", default=os.environ.get("DWF_DATABASE_URL"))
    args = parser.parse_args()
    import compileall

    import runner
    from runner import logs

    compileall.compile_dir(str(Path(runner.__file__).parent), quiet=1)
    logs.configure("json", "warning")
    print(machine())
    with tempfile.TemporaryDirectory() as temp:
        home = Path(temp) / "home"
        repo = GitRepo(Path(temp) / "repo")
        for i in range(args.files):
            repo.write(f"workflows/wf-{i:04d}.yaml", workflow_text(i, None)[0])
        repo.commit("1,000 workflows")
        url, scratch = args.database_url, None
        if url is None:
            from runner.store import embedded

            print("database: embedded pgserver")
            url = embedded.embedded_url(home)
        else:
            print("database: a scratch database on the given server")
            scratch = f"dwf_sync_bench_{uuid.uuid4().hex[:8]}"
            url = _create(url, scratch)
        try:
            figures = asyncio.run(measure(url, home, repo, args.files, args.runs))
            figures |= cli_figures(url, home, repo, args.runs)
        finally:
            if scratch is None:
                from runner.store import embedded

                embedded.stop(home)
            else:
                _drop(args.database_url, scratch)
    ok = True
    print(f"{args.files} workflow files; medians (min-max) of {args.runs} runs")
    for name, (seconds, low, high) in figures.items():
        target = TARGETS.get(name)
        verdict = ""
        if target is not None:
            verdict = f"(target <= {target:g} s) " + ("ok" if seconds <= target else "MISSED")
            ok = ok and seconds <= target
        print(f"  {name:<40} {seconds:7.3f} s ({low:.3f}-{high:.3f})  {verdict}")
    sys.exit(0 if ok else 1)


def _create(server_url: str, name: str) -> str:
    import psycopg
    from psycopg import sql

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    from tests.conftest import with_database

    return with_database(server_url, name)


def _drop(server_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


if __name__ == "__main__":
    main()
