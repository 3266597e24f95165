"""Goals and the generated part of ``docs/benchmarks.md``, from a result document alone.

The generated text sits between two marker comments; everything outside them (method,
analysis, profiles) is written by hand and kept when the report is regenerated.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.results import find, workloads

begin_marker = "<!-- bench:generated:begin -->"
end_marker = "<!-- bench:generated:end -->"

# (workload, reference system, target ratio Squall / reference), from issue 5.
goal_table: list[tuple[str, str, float]] = [
    ("put_4k", "rgw", 2.0),
    ("get_4k", "rgw", 2.0),
    ("put_4k", "moto", 10.0),
    ("get_4k", "moto", 10.0),
    ("put_64m", "loopback", 0.6),
    ("get_64m", "loopback", 0.6),
]


def _figure(result: Mapping[str, Any] | None, workload: str) -> float | None:
    if result is None:
        return None
    return (
        result["mib_per_second"]
        if workload.endswith("64m") or workload == "multipart"
        else result["ops_per_second"]
    )


def ratio(
    document: Mapping[str, Any], system: str, reference: str, workload: str, concurrency: int | None
) -> tuple[float | None, float | None, float | None]:
    mine = _figure(find(document, system, workload, concurrency), workload)
    theirs = _figure(find(document, reference, workload, concurrency), workload)
    if mine is None or not theirs:
        return mine, theirs, None
    return mine, theirs, mine / theirs


def goals(document: Mapping[str, Any], system: str = "squall") -> list[dict[str, Any]]:
    concurrencies = sorted(
        {
            r["concurrency"]
            for r in document["results"]
            if r["system"] == system and r["workload"] == "put_4k"
        }
    )
    entries = []
    for workload, reference, target in goal_table:
        for concurrency in concurrencies if not workload.endswith("64m") else [1]:
            mine, theirs, value = ratio(document, system, reference, workload, concurrency)
            entries.append({
                "name": f"{workload} c={concurrency}: {system} >= {target:g} x {reference}",
                "workload": workload, "concurrency": concurrency, "system": system, "reference": reference,
                "value": mine, "reference_value": theirs,
                "ratio": None if value is None else round(value, 3), "target_ratio": target,
                "met": None if value is None else value >= target,
            })  # fmt: skip
    return entries


def _number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def _systems_in(document: Mapping[str, Any]) -> list[str]:
    return [s["name"] for s in document["systems"] if s["status"] == "ok"]


def results_table(document: Mapping[str, Any], concurrency: int) -> list[str]:
    """ops/s (MiB/s for 64 MiB and multipart) per workload and system, with p50/p99."""
    systems = _systems_in(document)
    lines = ["| workload | " + " | ".join(systems) + " |", "|---|" + "---|" * len(systems)]
    for workload in workloads:
        cells, any_value = [], False
        for system in systems:
            big = workload.endswith("64m") or workload in ("multipart", "put_4k_txn_1000")
            # LMDB is measured single-threaded only: its c=1 figure is the limit.
            wanted = None if big else 1 if system == "lmdb" else concurrency
            result = find(document, system, workload, wanted)
            unsupported = [
                r
                for r in document["results"]
                if r["system"] == system and r["workload"] == workload and r["status"] != "ok"
            ]
            if result is None:
                cells.append(unsupported[0]["status"].replace("_", " ") if unsupported else "")
                continue
            any_value = True
            unit = "MiB/s" if workload.endswith("64m") or workload == "multipart" else "/s"
            value = _figure(result, workload)
            latency = result["latency_ms"]
            cells.append(
                f"{_number(value, 1 if unit == 'MiB/s' else 0)} {unit}<br>p50 {latency['p50']:.2f} / p99 {latency['p99']:.2f} ms"
            )
        if any_value or any(cells):
            lines.append(f"| {workload} | " + " | ".join(cells) + " |")
    return lines


def sweep_table(document: Mapping[str, Any], workload: str) -> list[str]:
    systems = [
        s
        for s in _systems_in(document)
        if any(r["system"] == s and r["workload"] == workload for r in document["results"])
    ]
    concurrencies = sorted(
        {r["concurrency"] for r in document["results"] if r["workload"] == workload}
    )
    lines = [f"| {workload}: c | " + " | ".join(systems) + " |", "|---|" + "---|" * len(systems)]
    for concurrency in concurrencies:
        cells = []
        for system in systems:
            result = find(document, system, workload, concurrency)
            cells.append(
                ""
                if result is None
                else f"{result['ops_per_second']:,.0f}/s (p99 {result['latency_ms']['p99']:.1f} ms)"
            )
        lines.append(f"| {concurrency} | " + " | ".join(cells) + " |")
    return lines


def ratio_table(document: Mapping[str, Any], concurrency: int, system: str = "squall") -> list[str]:
    references = [
        s
        for s in ("rgw", "moto", "starlette-bare", "loopback", "lmdb")
        if s in _systems_in(document)
    ]
    lines = [f"| workload (c={concurrency}) | " + " | ".join(f"{system}/{r}" for r in references) + " |",
             "|---|" + "---|" * len(references)]  # fmt: skip
    for workload in (
        "put_4k",
        "get_4k",
        "head_4k",
        "list_1000",
        "mixed_80_20",
        "put_64m",
        "get_64m",
        "multipart",
    ):
        wanted = 1 if workload.endswith("64m") else None if workload == "multipart" else concurrency
        cells = []
        for reference in references:
            reference_concurrency = 1 if reference == "lmdb" else wanted
            mine = _figure(find(document, system, workload, wanted), workload)
            theirs = _figure(find(document, reference, workload, reference_concurrency), workload)
            cells.append("—" if mine is None or not theirs else f"{mine / theirs:.2f}×")
        if any(cell != "—" for cell in cells):
            lines.append(f"| {workload} | " + " | ".join(cells) + " |")
    return lines


def goals_table(document: Mapping[str, Any]) -> list[str]:
    lines = ["| goal | Squall | reference | ratio | met |", "|---|---|---|---|---|"]
    for goal in document["goals"]:
        unit = "MiB/s" if goal["workload"].endswith("64m") else "ops/s"
        met = {True: "yes", False: "**no**", None: "not measured"}[goal["met"]]
        lines.append(
            f"| {goal['name']} | {_number(goal['value'], 1)} {unit} | {_number(goal['reference_value'], 1)} {unit} "
            f"| {_ratio_text(goal['ratio'])} | {met} |"
        )
    return lines


def generated_markdown(document: Mapping[str, Any], plots: Mapping[str, str]) -> str:
    run = document["run"]
    machine = run["machine"]
    parameters = run["parameters"]
    headline = parameters["headline_concurrency"]
    lines = [
        begin_marker,
        "<!-- Generated by `python -m bench` (bench/report.py) from "
        f"bench/results/{run['id']}.json; edits here are overwritten. -->",
        "",
        f"### Run `{run['id']}`",
        "",
        f"- command: `{run['command']}`; mode **{run['mode']}**: {parameters['duration_seconds']} s per workload, "
        f"concurrency sweep {parameters['sweep_concurrency']}, list bucket of {parameters['list_object_count']:,} objects, "
        f"multipart of {parameters['multipart_total_bytes'] // 2**20} MiB",
        f"- commit `{run['git']['commit'][:12]}` ({run['git']['branch']}{', dirty' if run['git']['dirty'] else ''}), {run['date']}",
        f"- machine: {machine['cpu_count']} × {machine['cpu_model']}, {machine['memory_bytes'] / 2**30:.0f} GiB, "
        f"Linux {machine['kernel']}, Python {machine['python']}; load average at start "
        f"{', '.join(f'{v:.2f}' for v in machine['load_average_at_start'])}; run took {run['wall_seconds']:.0f} s",
        "",
        "Systems:",
        "",
    ]
    for system in document["systems"]:
        status = "" if system["status"] == "ok" else f" — **unavailable**: {system['reason']}"
        notes = f" ({'; '.join(system['notes'])})" if system["notes"] else ""
        lines.append(
            f"- `{system['name']}` ({system['kind']}): {system['description']}{status}{notes}"
        )
    lines += ["", f"#### Throughput and latency (small objects at c={headline})", ""]
    lines += results_table(document, headline)
    lines += ["", f"#### Ratios (Squall durable / other, c={headline}; 64 MiB at c=1)", ""]
    lines += ratio_table(document, headline)
    lines += ["", "#### Goals (issue 5)", ""]
    lines += goals_table(document)
    lines += ["", "#### Concurrency sweeps", ""]
    for workload in ("put_4k", "get_4k", "head_4k", "mixed_80_20"):
        if any(r["workload"] == workload for r in document["results"]):
            lines += sweep_table(document, workload) + [""]
    problems = [
        r for r in document["results"] if r["errors"] or r["status"] in ("failed", "not_supported")
    ]
    if problems:
        lines += ["#### Errors and unsupported operations", ""]
        for r in problems:
            lines.append(
                f"- {r['system']} {r['workload']} c={r['concurrency']}: {r['status']}, {r['errors']} errors. {r['detail'][:300]}"
            )
        lines.append("")
    if plots:
        lines += ["#### Plots", ""]
        for title, path in plots.items():
            lines.append(f"![{title}]({path})")
        lines.append("")
    lines.append(end_marker)
    return "\n".join(lines) + "\n"


def update_docs(docs_path: Path, generated: str, template: str) -> None:
    """Replace the generated block in ``docs_path`` (or create it from ``template``)."""
    text = docs_path.read_text() if docs_path.exists() else template
    if begin_marker in text and end_marker in text:
        before = text[: text.index(begin_marker)]
        after = text[text.index(end_marker) + len(end_marker) :].lstrip("\n")
        text = before + generated + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + generated
    docs_path.write_text(text)


def _ratio_text(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"
