"""PNG plots from a result document (matplotlib, Agg backend: no display needed).

* ``<run>-ops.png``: grouped bars, ops/s per workload (small objects at the headline
  concurrency) and MiB/s for 64 MiB objects, one bar per system; log scale, because
  limits and mocks differ by orders of magnitude.
* ``<run>-latency-cdf.png``: latency CDF per workload, one line per system.
* ``<run>-sweep.png``: ops/s against concurrency, per workload, one line per system.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.histogram import Histogram
from bench.results import find

small_workloads = ("put_4k", "get_4k", "head_4k", "list_1000", "mixed_80_20")
big_workloads = ("put_64m", "get_64m", "multipart")
sweep_workloads = ("put_4k", "get_4k", "head_4k", "mixed_80_20")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def _systems(document: Mapping[str, Any]) -> list[str]:
    return [s["name"] for s in document["systems"] if s["status"] == "ok"]


def _bars(
    axes: Any,
    document: Mapping[str, Any],
    workload_names: tuple[str, ...],
    concurrency: int | None,
    field: str,
    title: str,
) -> None:
    systems = [
        s
        for s in _systems(document)
        if any(
            find(document, s, w, concurrency if w not in big_workloads else None)
            for w in workload_names
        )
    ]
    width = 0.8 / max(1, len(systems))
    for index, system in enumerate(systems):
        values = []
        for workload in workload_names:
            result = find(
                document, system, workload, concurrency if workload not in big_workloads else None
            )
            values.append(result[field] if result else 0)
        positions = [
            w + (index - (len(systems) - 1) / 2) * width for w in range(len(workload_names))
        ]
        bars = axes.bar(positions, values, width, label=system)
        for bar, value in zip(bars, values, strict=True):
            if value:
                axes.annotate(
                    f"{value:,.0f}",
                    (bar.get_x() + bar.get_width() / 2, value),
                    ha="center",
                    va="bottom",
                    fontsize=6,
                    rotation=90,
                )
    axes.set_xticks(range(len(workload_names)), workload_names)
    axes.set_yscale("log")
    axes.set_title(title)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=7)
    axes.grid(axis="y", alpha=0.3)


def plot_all(document: Mapping[str, Any], directory: Path) -> dict[str, str]:
    """Write the PNGs; returns {title: file name}."""
    pyplot = _pyplot()
    run_id = document["run"]["id"]
    headline = document["run"]["parameters"]["headline_concurrency"]
    written: dict[str, str] = {}

    figure, (left, right) = pyplot.subplots(
        1, 2, figsize=(14, 5), gridspec_kw={"width_ratios": [5, 3]}
    )
    _bars(
        left,
        document,
        small_workloads,
        headline,
        "ops_per_second",
        f"small objects, ops/s (c={headline}; log scale)",
    )
    _bars(
        right,
        document,
        big_workloads,
        None,
        "mib_per_second",
        "large objects, MiB/s (c=1; multipart 4 parts at once)",
    )
    figure.tight_layout()
    name = f"{run_id}-ops.png"
    figure.savefig(directory / name, dpi=110)
    pyplot.close(figure)
    written["ops/s per system and workload"] = name

    shown = [
        w
        for w in small_workloads + big_workloads
        if any(r["workload"] == w for r in document["results"])
    ]
    columns = 4
    rows = -(-len(shown) // columns)
    figure, axes_grid = pyplot.subplots(
        rows, columns, figsize=(4 * columns, 3.2 * rows), squeeze=False
    )
    for axes, workload in zip([a for row in axes_grid for a in row], shown, strict=False):
        for system in _systems(document):
            result = find(
                document, system, workload, headline if workload not in big_workloads else None
            )
            if result is None or not result.get("histogram"):
                continue
            points = Histogram.from_dict(result["histogram"]).cdf_points()
            axes.plot(
                [p[0] for p in points], [p[1] for p in points], label=system, drawstyle="steps-post"
            )
        axes.set_xscale("log")
        axes.set_title(f"{workload} latency CDF", fontsize=9)
        axes.set_xlabel("ms", fontsize=8)
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=6)
    for axes in [a for row in axes_grid for a in row][len(shown) :]:
        axes.set_visible(False)
    figure.tight_layout()
    name = f"{run_id}-latency-cdf.png"
    figure.savefig(directory / name, dpi=110)
    pyplot.close(figure)
    written["latency CDFs"] = name

    figure, axes_row = pyplot.subplots(
        1, len(sweep_workloads), figsize=(4 * len(sweep_workloads), 3.5), squeeze=False
    )
    for axes, workload in zip(axes_row[0], sweep_workloads, strict=True):
        for system in _systems(document):
            points = sorted((r["concurrency"], r["ops_per_second"]) for r in document["results"]
                            if r["system"] == system and r["workload"] == workload and r["status"] == "ok")  # fmt: skip
            if points:
                axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=system)
        axes.set_xscale("log", base=2)
        axes.set_yscale("log")
        axes.set_title(f"{workload}: ops/s vs concurrency", fontsize=9)
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=6)
    figure.tight_layout()
    name = f"{run_id}-sweep.png"
    figure.savefig(directory / name, dpi=110)
    pyplot.close(figure)
    written["concurrency sweeps"] = name
    return written
