"""Lint throughput and start-up: `python bench/lint_bench.py [--files 1000] [--runs 5]`.

Generates N workflow files (~20 nodes, ~100 lines; a quarter with one planted error on a known
line), runs the installed `dwf lint` as a process several times and prints medians, then checks
that clean files get 0 findings and every planted error is found on its exact line.
The package is byte-compiled first: the machine sets PYTHONDONTWRITEBYTECODE=1, and a user's
installed package is compiled by pip.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import runner

NODES = 20
ERRORS = {
    # kind: (rule, the line to plant, where it goes)
    "unknown-edge-target": "      - {targetNode: nowhere}",
    "unknown-action-type": "    actionType: core.ecko",
    "invalid-cron": '    cron: "61 9 * * 1-5"',
    "template-syntax": '      message: "{{ trigger.name "',
    "condition-syntax": '        condition: "result.status ==="',
    "schema-unknown-key": "    retires: {maxAttempts: 3}",
}


def workflow_text(index: int, plant: str | None) -> tuple[str, int | None]:
    """A ~100-line workflow; with `plant`, one error of that kind and its 1-based line."""
    lines = [
        "# yaml-language-server: $schema=../schemas/workflow.schema.json",
        "apiVersion: dataworkflows/v1",
        "kind: Workflow",
        f"id: bench-{index}",
        f"displayName: Bench workflow {index}",
        "status: active",
        "startNode: n0",
        "vars: {region: eu, team: data}",
        "options: {maxParallelActions: 4, timeout: 1h}",
        "triggers:",
        "  - id: nightly",
        "    type: schedule",
        '    cron: "0 2 * * *"' if plant != "invalid-cron" else ERRORS["invalid-cron"],
        "    timezone: Europe/Berlin",
        "  - {id: by-hand, type: manual}",
        "nodes:",
    ]
    planted_line = 13 if plant == "invalid-cron" else None
    for n in range(NODES):
        lines.append(f"  - id: n{n}")
        if plant == "unknown-action-type" and n == 7:
            lines.append(ERRORS[plant])
            planted_line = len(lines)
        else:
            lines.append("    actionType: core.echo")
        lines.append("    parameters:")
        if plant == "template-syntax" and n == 9:
            lines.append(ERRORS[plant])
            planted_line = len(lines)
        elif n:
            lines.append(
                f"      message: \"{{{{ nodes['n{n - 1}'].outputs.echo }}}}"
                f' and {{{{ vars.region }}}}"'
            )
        else:
            lines.append('      message: "start {{ trigger.name | default(vars.team) }}"')
        if plant == "schema-unknown-key" and n == 11:
            lines.append(ERRORS[plant])
            planted_line = len(lines)
        elif n % 5 == 0:
            lines.append("    retry: {maxAttempts: 3, backoff: exponential, initialDelay: 1s}")
        if n < NODES - 1:
            lines.append("    edges:")
            lines.append(f"      - targetNode: n{n + 1}")
            if plant == "condition-syntax" and n == 5:
                lines.append(ERRORS[plant])
                planted_line = len(lines)
            elif n % 4 == 0:
                lines.append('        condition: "result.outputs.echo.length > 0"')
            if plant == "unknown-edge-target" and n == 3:
                lines.append(ERRORS[plant])
                planted_line = len(lines)
    lines.append("outputs:")
    lines.append(f"  last: \"{{{{ nodes['n{NODES - 1}'].outputs.echo }}}}\"")
    return "\n".join(lines) + "\n", planted_line


def generate(folder: Path, count: int, seed: int = 7) -> dict[str, tuple[str, int]]:
    """Write `count` files; return the planted error (rule, line) by file path."""
    rng = random.Random(seed)
    planted: dict[str, tuple[str, int]] = {}
    kinds = list(ERRORS)
    for i in range(count):
        plant = rng.choice(kinds) if i % 4 == 3 else None
        text, line = workflow_text(i, plant)
        path = folder / f"wf-{i:04d}.yaml"
        path.write_text(text)
        if plant is not None:
            assert line is not None
            planted[str(path)] = (plant, line)
    return planted


def run_lint(dwf: str, args: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(
        [dwf, "lint", "--format", "json", *args], capture_output=True, text=True, check=False
    )
    return time.perf_counter() - start, proc


def median_time(dwf: str, args: list[str], runs: int) -> tuple[float, subprocess.CompletedProcess]:
    times, proc = [], None
    for _ in range(runs):
        elapsed, proc = run_lint(dwf, args)
        times.append(elapsed)
    assert proc is not None
    return statistics.median(times), proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    dwf = shutil.which("dwf") or str(Path(sys.executable).with_name("dwf"))
    compileall.compile_dir(str(Path(runner.__file__).parent), quiet=1)

    print(
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "workflows"
        folder.mkdir()
        planted = generate(folder, args.files)
        seconds, proc = median_time(dwf, [str(folder)], args.runs)
        found = json.loads(proc.stdout)
        by_file: dict[str, list[tuple[str, int]]] = {}
        for d in found:
            by_file.setdefault(d["path"], []).append((d["rule"], d["line"]))
        clean_with_findings = [p for p in by_file if p not in planted]
        missed = [p for p, want in planted.items() if by_file.get(p) != [want]]
        print(
            f"{args.files} files, all checks: median {seconds:.3f} s"
            f" = {args.files / seconds:,.0f} files/s"
        )
        print(
            f"  planted errors: {len(planted)},"
            f" found on the exact line: {len(planted) - len(missed)}"
        )
        print(f"  clean files with findings: {len(clean_with_findings)}")
        for p in (clean_with_findings + missed)[:5]:
            print(f"    {p}: got {by_file.get(p)}, planted {planted.get(p)}")

        small = Path(tmp) / "small.yaml"
        small.write_text(
            (Path(__file__).parent.parent / "examples/workflows/hello.yaml").read_text()
        )
        seconds, proc = median_time(dwf, [str(small)], max(args.runs, 9))
        print(
            f"one small clean file, whole process: median {seconds * 1000:.0f} ms"
            f" (exit {proc.returncode})"
        )
        bad = Path(tmp) / "bad.yaml"
        bad.write_text(workflow_text(1, "unknown-edge-target")[0])
        seconds, proc = median_time(dwf, [str(bad)], max(args.runs, 9))
        print(
            f"one file with an error, whole process: median {seconds * 1000:.0f} ms"
            f" (exit {proc.returncode})"
        )
    ok = not missed and not clean_with_findings
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
