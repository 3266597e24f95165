"""``python -m bench``: measure Squall against peers and limits in one run.

Examples::

    python -m bench                     # quick (< 2 minutes): the make bench target
    python -m bench --full              # every workload, 10 s each, 100,000-object list bucket
    python -m bench --systems squall,moto --no-ceilings --duration 2
    python -m bench --endpoint minio=http://127.0.0.1:9000,KEY,SECRET --systems squall,minio
    python -m bench --report bench/results/latest.json   # redo plots and docs only
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from bench import plots, report, results
from bench.runner import Parameters, Run, full_parameters, quick_parameters, say

docs_template = """# Benchmarks

<!-- The generated block below is rewritten by `python -m bench`; edit outside it. -->
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])  # fmt: skip
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="short run (the default)")
    mode.add_argument("--full", action="store_true", help="every workload at full size")
    parser.add_argument(
        "--systems",
        help="comma-separated: squall,squall-volatile,rgw,moto,starlette-bare and names "
        "given by --endpoint",
    )
    parser.add_argument("--endpoint", action="append", default=[], metavar="NAME=URL,ACCESS_KEY,SECRET_KEY[,PID]",
                        help="an extra S3 endpoint to measure (started and stopped by you; "
                        "with its PID, its CPU per request is measured too)")  # fmt: skip
    parser.add_argument(
        "--no-ceilings", action="store_true", help="skip loopback, LMDB and bare-framework limits"
    )
    parser.add_argument("--duration", type=float, help="seconds per workload")
    parser.add_argument(
        "--workloads",
        help="comma-separated subset: put_4k,get_4k,head_4k,mixed_80_20,list_1000,"
        "put_64m,get_64m,multipart (default: all)",
    )
    parser.add_argument("--concurrency", help="comma-separated sweep, e.g. 1,8,64")
    parser.add_argument("--list-objects", type=int, help="objects in the list bucket")
    parser.add_argument("--big-ops", type=int, help="64 MiB PUTs and GETs per system")
    parser.add_argument("--multipart-mib", type=int, help="size of the multipart upload")
    parser.add_argument(
        "--profile", type=float, help="py-spy Squall for this many seconds per workload (0: no)"
    )
    parser.add_argument("--results-dir", help="where the JSON and PNGs go (default bench/results)")
    parser.add_argument(
        "--docs",
        help="markdown file whose generated block is rewritten (default docs/benchmarks.md; '' for none)",
    )
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument(
        "--client",
        choices=("raw", "http.client"),
        help="HTTP client of the load generator (default raw)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        metavar="RESULT_JSON",
        help="only redo plots and docs from a result file",
    )
    return parser


def parameters_from(args: argparse.Namespace) -> Parameters:
    parameters = full_parameters() if args.full else quick_parameters()
    if args.duration is not None:
        parameters.duration_seconds = args.duration
    if args.concurrency:
        parameters.sweep_concurrency = [int(c) for c in args.concurrency.split(",")]
        if parameters.headline_concurrency not in parameters.sweep_concurrency:
            parameters.headline_concurrency = max(parameters.sweep_concurrency)
    if args.workloads:
        parameters.workloads = [w for w in args.workloads.split(",") if w]
    if args.list_objects is not None:
        parameters.list_object_count = args.list_objects
    if args.big_ops is not None:
        parameters.big_ops = args.big_ops
    if args.multipart_mib is not None:
        parameters.multipart_total_bytes = args.multipart_mib * 2**20
    if args.profile is not None:
        parameters.profile_seconds = args.profile
    for spec in args.endpoint:
        name, _, rest = spec.partition("=")
        parameters.external[name] = rest
    if args.systems:
        parameters.systems = [s for s in args.systems.split(",") if s]
    elif parameters.external:
        parameters.systems += list(parameters.external)
    parameters.ceilings = not args.no_ceilings
    if args.client:
        parameters.client = args.client
    if args.results_dir:
        parameters.results_directory = args.results_dir
    if args.docs is not None:
        parameters.docs_path = args.docs
    return parameters


def publish(document: dict[str, Any], directory: Path, docs_path: str, with_plots: bool) -> None:
    written: dict[str, str] = {}
    if with_plots:
        try:
            written = plots.plot_all(document, directory)
        except ImportError as error:
            say(f"! no plots: {error} (pip install matplotlib)")
    if docs_path:
        docs = Path(docs_path)
        relative = {
            title: _relative(directory / name, docs.parent) for title, name in written.items()
        }
        report.update_docs(docs, report.generated_markdown(document, relative), docs_template)
        say(f"updated {docs}")


def _relative(path: Path, start: Path) -> str:
    import os

    return os.path.relpath(path.resolve(), start.resolve())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.report:
        document = results.read_document(args.report)
        parameters = parameters_from(args)
        publish(document, args.report.parent, parameters.docs_path, not args.no_plots)
        return 0
    parameters = parameters_from(args)
    command = "python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:])
    run = Run(parameters, command.strip())
    path = run.execute()
    say(f"wrote {path}")
    publish(run.document, path.parent, parameters.docs_path, not args.no_plots)
    for goal in run.document["goals"]:
        verdict = {True: "met", False: "NOT met", None: "not measured"}[goal["met"]]
        ratio = "—" if goal["ratio"] is None else f"{goal['ratio']:.2f}x"
        say(f"goal {goal['name']:<40} {ratio:>8}  {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
