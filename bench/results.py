"""The result document of one run: build, validate, write, read.

One JSON file per run under ``bench/results/`` named ``<run id>.json``; ``latest.json``
is a copy of the newest. Every figure the report and the plots show is in it, with the
histograms it came from, so a table can be recomputed from the file alone.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

schema_version = "squall-bench/1"
result_statuses = ("ok", "not_supported", "failed", "skipped")
system_statuses = ("ok", "unavailable")
system_kinds = ("squall", "peer", "limit")
latency_fields = ("p50", "p90", "p99", "max", "min", "mean")
results_directory = Path(__file__).resolve().parent / "results"

# The workloads, in report order; the value says what one operation is.
workloads: dict[str, str] = {
    "put_4k": "PUT of a new 4 KiB object",
    "get_4k": "GET of an existing 4 KiB object",
    "head_4k": "HEAD of an existing 4 KiB object",
    "list_1000": "ListObjectsV2 page of 1000 keys",
    "mixed_80_20": "80 % GET / 20 % PUT of 4 KiB",
    "put_64m": "PUT of a 64 MiB object",
    "get_64m": "GET of a 64 MiB object",
    "multipart": "multipart upload (64 MiB parts, 4 at once), timed whole",
    "put_4k_txn_1000": "LMDB only: 4 KiB put, 1000 per transaction",
}


def _git(*arguments: str) -> str:
    try:
        return subprocess.run(
            ["git", *arguments], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info() -> dict[str, Any]:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_bytes = 0
    try:
        memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        pass
    return {
        "hostname": platform.node(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "memory_bytes": memory_bytes,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_at_start": list(os.getloadavg()),
    }


def git_info() -> dict[str, Any]:
    return {
        "commit": _git("rev-parse", "HEAD"),
        "branch": _git("rev-parse", "--abbrev-ref", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }


def new_document(mode: str, command: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "schema": schema_version,
        "run": {
            "id": now.strftime("%Y%m%dT%H%M%SZ") + f"-{mode}",
            "date": now.isoformat(timespec="seconds"),
            "mode": mode,
            "command": command,
            "git": git_info(),
            "machine": machine_info(),
            "parameters": dict(parameters),
            "wall_seconds": 0.0,
        },
        "systems": [],
        "results": [],
        "goals": [],
        "profiles": [],
    }


def system_entry(
    name: str, kind: str, description: str, status: str, *, reason: str = "",
    started_seconds: float = 0.0, notes: list[str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    assert kind in system_kinds and status in system_statuses
    return {
        "name": name, "kind": kind, "description": description, "status": status,
        "reason": reason, "started_seconds": round(started_seconds, 2), "notes": notes or [],
    }  # fmt: skip


def result_entry(
    system: str,
    workload: str,
    concurrency: int,
    status: str,
    *,
    ops: int = 0,
    errors: int = 0,
    elapsed_seconds: float = 0.0,
    object_size_bytes: int = 0,
    bytes_moved: int = 0,
    histogram: Mapping[str, Any] | None = None,
    latency_ms: Mapping[str, float] | None = None,
    client_cpu_seconds: float = 0.0,
    detail: str = "",
) -> dict[str, Any]:
    """One measured figure. ``bytes_moved`` is the payload bytes (sent or received)."""
    assert status in result_statuses
    ops_per_second = ops / elapsed_seconds if status == "ok" and elapsed_seconds > 0 else 0.0
    mb_per_second = (
        bytes_moved / 2**20 / elapsed_seconds if status == "ok" and elapsed_seconds > 0 else 0.0
    )
    return {
        "system": system,
        "workload": workload,
        "concurrency": concurrency,
        "status": status,
        "ops": ops,
        "errors": errors,
        "elapsed_seconds": round(elapsed_seconds, 4),
        "ops_per_second": round(ops_per_second, 2),
        "mib_per_second": round(mb_per_second, 2),
        "object_size_bytes": object_size_bytes,
        "latency_ms": dict(latency_ms or {}),
        "histogram": dict(histogram) if histogram else None,
        "client_cpu_seconds": round(client_cpu_seconds, 3),
        "detail": detail,
    }


def validate_document(document: Mapping[str, Any]) -> list[str]:
    """Every way ``document`` breaks the schema; empty when it is valid."""
    problems: list[str] = []

    def need(
        mapping: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str
    ) -> Any:
        if key not in mapping:
            problems.append(f"{where}: missing {key!r}")
            return None
        if not isinstance(mapping[key], kind):
            problems.append(f"{where}.{key}: {type(mapping[key]).__name__}, expected {kind}")
            return None
        return mapping[key]

    if document.get("schema") != schema_version:
        problems.append(f"schema: {document.get('schema')!r}, expected {schema_version!r}")
    run = need(document, "run", dict, "document") or {}
    for key, kind in (("id", str), ("date", str), ("mode", str), ("command", str),
                      ("git", dict), ("machine", dict), ("parameters", dict)):  # fmt: skip
        need(run, key, kind, "run")
    if isinstance(run.get("git"), dict):
        need(run["git"], "commit", str, "run.git")
    if isinstance(run.get("machine"), dict):
        need(run["machine"], "cpu_count", int, "run.machine")
    names: set[str] = set()
    for index, system in enumerate(need(document, "systems", list, "document") or []):
        where = f"systems[{index}]"
        name = need(system, "name", str, where)
        names.add(name or "")
        if system.get("status") not in system_statuses:
            problems.append(f"{where}.status: {system.get('status')!r}")
        if system.get("kind") not in system_kinds:
            problems.append(f"{where}.kind: {system.get('kind')!r}")
        if system.get("status") == "unavailable" and not system.get("reason"):
            problems.append(f"{where}: unavailable without a reason")
    for index, result in enumerate(need(document, "results", list, "document") or []):
        where = f"results[{index}]"
        if result.get("system") not in names:
            problems.append(f"{where}.system: {result.get('system')!r} is not in systems")
        if result.get("workload") not in workloads:
            problems.append(f"{where}.workload: {result.get('workload')!r} is unknown")
        if result.get("status") not in result_statuses:
            problems.append(f"{where}.status: {result.get('status')!r}")
        concurrency = need(result, "concurrency", int, where)
        if concurrency is not None and concurrency < 1:
            problems.append(f"{where}.concurrency: {concurrency} < 1")
        for key in ("ops_per_second", "mib_per_second", "elapsed_seconds"):
            value = need(result, key, (int, float), where)
            if value is not None and value < 0:
                problems.append(f"{where}.{key}: negative")
        if result.get("status") == "ok":
            latency = need(result, "latency_ms", dict, where) or {}
            for key in latency_fields:
                if not isinstance(latency.get(key), (int, float)):
                    problems.append(f"{where}.latency_ms: missing {key!r}")
            if all(isinstance(latency.get(k), (int, float)) for k in ("p50", "p90", "p99", "max")):
                if not latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]:
                    problems.append(f"{where}.latency_ms: percentiles out of order")
            histogram = result.get("histogram")
            if histogram is not None:
                if sum(histogram.get("buckets", {}).values()) != histogram.get("count"):
                    problems.append(f"{where}.histogram: bucket counts do not add up to count")
    for index, goal in enumerate(need(document, "goals", list, "document") or []):
        where = f"goals[{index}]"
        for key, kind in (
            ("name", str),
            ("target_ratio", (int, float)),
            ("met", (bool, type(None))),
        ):
            need(goal, key, kind, where)
    return problems


def write_document(document: Mapping[str, Any], directory: Path = results_directory) -> Path:
    problems = validate_document(document)
    assert not problems, f"result document breaks its schema: {problems[:5]}"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{document['run']['id']}.json"
    text = json.dumps(document, indent=1, sort_keys=False) + "\n"
    path.write_text(text)
    (directory / "latest.json").write_text(text)
    return path


def read_document(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    problems = validate_document(document)
    if problems:
        raise ValueError(f"{path}: {problems[:5]}")
    return document


def find(
    document: Mapping[str, Any], system: str, workload: str, concurrency: int | None = None
) -> dict[str, Any] | None:
    """The ok result for (system, workload, concurrency); with no concurrency, the best."""
    candidates = [
        r for r in document["results"]
        if r["system"] == system and r["workload"] == workload and r["status"] == "ok"
        and (concurrency is None or r["concurrency"] == concurrency)
    ]  # fmt: skip
    return max(candidates, key=lambda r: r["ops_per_second"], default=None)
