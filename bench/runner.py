"""One benchmark run: limits first, then each system in turn (start, populate, measure,
stop), then goals, the JSON document, plots and the report.

Every system runs the same plans through the same load generator with the same
parameters; a system that cannot start is recorded as unavailable with its reason, and
the run goes on without it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import ceilings, loadgen, results, workloads
from bench.histogram import Histogram
from bench.systems import (
    BareStarlette,
    CephRgw,
    External,
    Moto,
    Squall,
    System,
    Unavailable,
    ensure_bucket,
)
from bench.workloads import KiB, MiB

bucket = "bench"
small_size_bytes = 4 * KiB
big_size_bytes = 64 * MiB
small_prefix = "obj4k"
list_prefix = "list"
big_prefix = "big"
populate_concurrency = 32
multipart_part_bytes = 64 * MiB
multipart_concurrency = 4


@dataclass
class Parameters:
    mode: str
    duration_seconds: float
    sweep_concurrency: list[int]
    headline_concurrency: int
    list_object_count: int
    small_key_count: int
    big_ops: int
    multipart_total_bytes: int
    puts_per_second_guess: int  # sizes the presigned PUT pool; beyond it, PUTs overwrite
    systems: list[str]
    ceilings: bool
    volatile_workloads: list[str]
    profile_seconds: float
    results_directory: str
    docs_path: str
    external: dict[str, str] = field(default_factory=dict)
    # Only these workloads (small ones by name, plus put_64m/get_64m, multipart,
    # list_1000); None: all of them.
    workloads: list[str] | None = None
    client: str = loadgen.default_client  # raw | http.client (see bench.loadgen.RawConnection)


def quick_parameters() -> Parameters:
    return Parameters(
        mode="quick", duration_seconds=1.0, sweep_concurrency=[1, 8], headline_concurrency=8,
        list_object_count=1_000, small_key_count=256, big_ops=2,
        multipart_total_bytes=128 * MiB, puts_per_second_guess=3000,
        systems=["squall", "squall-volatile", "rgw", "moto"], ceilings=True,
        volatile_workloads=["put_4k", "get_4k"], profile_seconds=0.0,
        results_directory=str(results.results_directory), docs_path="docs/benchmarks.md",
    )  # fmt: skip


def full_parameters() -> Parameters:
    return Parameters(
        mode="full", duration_seconds=10.0, sweep_concurrency=[1, 8, 64], headline_concurrency=8,
        list_object_count=100_000, small_key_count=1000, big_ops=6,
        multipart_total_bytes=1024 * MiB, puts_per_second_guess=3000,
        systems=["squall", "squall-volatile", "rgw", "moto"], ceilings=True,
        volatile_workloads=["put_4k", "get_4k", "head_4k", "mixed_80_20", "put_64m", "get_64m"],
        profile_seconds=10.0,
        results_directory=str(results.results_directory), docs_path="docs/benchmarks.md",
    )  # fmt: skip


def process_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU of a process and all its threads so far (Linux /proc)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # utime and stime are fields 14 and 15 of stat(5); [0] here is field 3 (state).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Run:
    def __init__(self, parameters: Parameters, command: str) -> None:
        self.parameters = parameters
        self.document = results.new_document(parameters.mode, command, vars(parameters))
        self.work_dir = Path(tempfile.mkdtemp(prefix="squall-bench-"))
        loadgen.default_client = parameters.client  # the forked workers inherit it
        self.run_id = self.document["run"]["id"]

    # --- recording ----------------------------------------------------------------------

    def record_system(self, system: System, status: str, reason: str = "") -> None:
        self.document["systems"].append(
            results.system_entry(
                system.name,
                system.kind,
                system.description,
                status,
                reason=reason,
                started_seconds=system.started_seconds,
                notes=system.notes,
            )  # fmt: skip
        )

    def record(
        self,
        system: str,
        workload: str,
        concurrency: int,
        outcome: loadgen.RunOutcome,
        size: int,
        detail: str = "",
    ) -> dict[str, Any]:
        if outcome.ops == 0 and outcome.not_implemented:
            status = "not_supported"
        elif outcome.ops == 0:
            status = "failed"
        else:
            status = "ok"
        if outcome.errors:
            detail = (
                detail + f"; {outcome.errors} errors, e.g. {outcome.error_samples[:2]}"
            ).lstrip("; ")
        entry = results.result_entry(
            system, workload, concurrency, status, ops=outcome.ops, errors=outcome.errors,
            elapsed_seconds=outcome.elapsed_seconds, object_size_bytes=size,
            bytes_moved=max(outcome.bytes_sent, outcome.bytes_received),
            histogram=outcome.histogram.to_dict(), latency_ms=outcome.histogram.summary_ms(),
            client_cpu_seconds=outcome.client_cpu_seconds, detail=detail,
        )  # fmt: skip
        self.document["results"].append(entry)
        latency = entry["latency_ms"]
        say(
            f"= {system:<16} {workload:<12} c={concurrency:<3} {status:<13} {entry['ops_per_second']:10.1f} ops/s"
            f" {entry['mib_per_second']:9.1f} MiB/s  p50 {latency.get('p50', 0):8.3f} ms"
            f"  p99 {latency.get('p99', 0):8.3f} ms  errors {outcome.errors}"
        )
        return entry

    def record_figure(
        self,
        system: str,
        workload: str,
        concurrency: int,
        histogram: Histogram,
        elapsed: float,
        ops: int,
        size: int,
        detail: str = "",
    ) -> None:
        entry = results.result_entry(
            system, workload, concurrency, "ok" if ops else "failed", ops=ops,
            elapsed_seconds=elapsed, object_size_bytes=size, bytes_moved=ops * size,
            histogram=histogram.to_dict(), latency_ms=histogram.summary_ms(), detail=detail,
        )  # fmt: skip
        self.document["results"].append(entry)
        say(
            f"= {system:<16} {workload:<12} c={concurrency:<3} {entry['ops_per_second']:10.1f} ops/s {entry['mib_per_second']:9.1f} MiB/s  p50 {entry['latency_ms']['p50']:.3f} ms"
        )

    # --- limits -------------------------------------------------------------------------

    def measure_ceilings(self) -> None:
        p = self.parameters
        overhead = ceilings.http_overhead_bytes
        loopback = System()
        loopback.name, loopback.kind = "loopback", "limit"
        loopback.description = (
            "raw TCP socket copy on 127.0.0.1 (Python sendall/recv_into, two processes)"
        )
        self.record_system(loopback, "ok")
        shapes = {
            "put_4k": (small_size_bytes + overhead, overhead, small_size_bytes),
            "get_4k": (overhead, small_size_bytes + overhead, small_size_bytes),
        }
        for workload, (request_bytes, reply_bytes, size) in shapes.items():
            for concurrency in p.sweep_concurrency:
                histogram, elapsed = ceilings.loopback(
                    request_bytes, reply_bytes, concurrency, p.duration_seconds
                )
                self.record_figure("loopback", workload, concurrency, histogram, elapsed, histogram.count, size,
                                   f"request {request_bytes} B, reply {reply_bytes} B")  # fmt: skip
        for workload, (request_bytes, reply_bytes) in {
            "put_64m": (big_size_bytes + overhead, overhead),
            "get_64m": (overhead, big_size_bytes + overhead),
        }.items():
            histogram, elapsed = ceilings.loopback(
                request_bytes, reply_bytes, 1, max(p.duration_seconds, 1.0)
            )
            self.record_figure("loopback", workload, 1, histogram, elapsed, histogram.count, big_size_bytes,
                               f"request {request_bytes} B, reply {reply_bytes} B")  # fmt: skip

        lmdb = System()
        lmdb.name, lmdb.kind = "lmdb", "limit"
        lmdb.description = (
            "py-lmdb alone with the engine's flags (sync+metasync), one thread, same filesystem"
        )
        self.record_system(lmdb, "ok")
        figures = ceilings.lmdb_limits(self.work_dir, p.duration_seconds, p.big_ops)
        names = {"put_4k_txn_each": ("put_4k", "one synced write transaction per put"),
                 "put_4k_txn_1000": ("put_4k_txn_1000", "1000 puts per synced transaction; latency is per transaction"),
                 "get_4k_read_txn": ("get_4k", "gets from one read transaction, copied out"),
                 "put_64m": ("put_64m", "64 x 1 MiB chunks in one synced transaction"),
                 "get_64m": ("get_64m", "64 x 1 MiB chunks read from one read transaction, copied out")}  # fmt: skip
        for key, figure in figures.items():
            workload, detail = names[key]
            self.record_figure(
                "lmdb",
                workload,
                1,
                figure.histogram,
                figure.elapsed_seconds,
                figure.ops,
                figure.bytes_per_op,
                detail,
            )

        bare = BareStarlette(self.work_dir)
        try:
            bare.start()
        except Unavailable as error:
            self.record_system(bare, "unavailable", str(error))
            return
        try:
            self.record_system(bare, "ok")
            for workload in ("put_4k", "get_4k", "head_4k"):
                for concurrency in p.sweep_concurrency:
                    if p.mode == "quick" and concurrency != p.headline_concurrency:
                        continue
                    self.small_workload(bare, workload, concurrency)
        finally:
            bare.stop()

    # --- workloads ----------------------------------------------------------------------

    def put_pool(self, concurrency: int) -> int:
        p = self.parameters
        rate = p.puts_per_second_guess if concurrency > 1 else p.puts_per_second_guess // 2
        return max(concurrency * 64, int(p.duration_seconds * rate))

    def plan_for(self, workload: str, concurrency: int) -> tuple[loadgen.Plan, int]:
        p = self.parameters
        tag = f"{workload}-c{concurrency}"
        if workload == "put_4k":
            return workloads.PutObjects(
                tag, bucket, tag, self.put_pool(concurrency), small_size_bytes
            ), small_size_bytes
        if workload in ("get_4k", "head_4k"):
            method = "GET" if workload == "get_4k" else "HEAD"
            return workloads.ReadObjects(tag, method, bucket, small_prefix, p.small_key_count), 0
        if workload == "list_1000":
            return workloads.ListPages(tag, bucket, list_prefix, p.list_object_count), 0
        if workload == "mixed_80_20":
            per_thread = max(64, self.put_pool(concurrency) // concurrency)
            return workloads.Mixed(
                tag, bucket, small_prefix, p.small_key_count, tag, per_thread, small_size_bytes
            ), small_size_bytes
        raise ValueError(workload)

    def small_workload(self, system: System, workload: str, concurrency: int) -> dict[str, Any]:
        plan, payload = self.plan_for(workload, concurrency)
        cpu_before = process_cpu_seconds(system.server_pid)
        outcome = loadgen.run(
            system.endpoint, plan, concurrency=concurrency, duration_seconds=self.parameters.duration_seconds,
            payload_bytes=payload, label=f"{system.name} {workload} c={concurrency}", report=say,
        )  # fmt: skip
        cpu_after = process_cpu_seconds(system.server_pid)
        detail = ""
        if workload == "put_4k" and outcome.ops > self.put_pool(concurrency):
            detail = f"{outcome.ops - self.put_pool(concurrency)} of the PUTs overwrote a key (presigned pool {self.put_pool(concurrency)})"
        size = small_size_bytes if workload != "list_1000" else 0
        entry = self.record(system.name, workload, concurrency, outcome, size, detail)
        if cpu_before is not None and cpu_after is not None and outcome.ops:
            # The server's own CPU per request (all its threads, user + system), which
            # the load generator on the same cores does not blur as it blurs ops/s.
            entry["server_cpu_us_per_op"] = round((cpu_after - cpu_before) / outcome.ops * 1e6, 1)
            say(f"  {system.name} {workload} c={concurrency}: server CPU {entry['server_cpu_us_per_op']:.1f} µs/request")
        return entry

    def populate(self, system: System, prefix: str, count: int, size: int) -> float:
        """PUT ``count`` keys over HTTP with many connections; returns seconds taken."""
        plan = workloads.PutObjects(f"populate-{prefix}", bucket, prefix, count, size)
        began = time.monotonic()
        outcome = loadgen.run(system.endpoint, plan, concurrency=min(populate_concurrency, count),
                              payload_bytes=size, label=f"{system.name} populate {prefix} x{count}", report=say)  # fmt: skip
        if outcome.ops != count:
            raise RuntimeError(
                f"populating {prefix}: {outcome.ops} of {count} PUTs succeeded; {outcome.error_samples[:2]}"
            )
        return time.monotonic() - began

    def big_objects(self, system: System) -> None:
        p = self.parameters
        put = workloads.PutObjects("put_64m", bucket, big_prefix, p.big_ops, big_size_bytes)
        outcome = loadgen.run(system.endpoint, put, concurrency=1, payload_bytes=big_size_bytes,
                              label=f"{system.name} put_64m", report=say)  # fmt: skip
        entry = self.record(
            system.name, "put_64m", 1, outcome, big_size_bytes, f"{p.big_ops} PUTs, one connection"
        )
        if entry["status"] != "ok":
            return
        get = workloads.ReadObjects("get_64m", "GET", bucket, big_prefix, p.big_ops)
        outcome = loadgen.run(
            system.endpoint, get, concurrency=1, label=f"{system.name} get_64m", report=say
        )
        if outcome.ops and outcome.bytes_received != outcome.ops * big_size_bytes:
            outcome.errors += 1
            outcome.error_samples.append(
                f"read {outcome.bytes_received} bytes for {outcome.ops} GETs"
            )
        self.record(
            system.name, "get_64m", 1, outcome, big_size_bytes, f"{p.big_ops} GETs, one connection"
        )

    def multipart(self, system: System) -> None:
        p = self.parameters
        say(f"  {system.name} multipart {p.multipart_total_bytes // MiB} MiB ...")
        outcome = workloads.multipart_upload(system.endpoint, bucket, "multipart/object", p.multipart_total_bytes,
                                             multipart_part_bytes, multipart_concurrency)  # fmt: skip
        detail = f"{p.multipart_total_bytes // MiB} MiB in {multipart_part_bytes // MiB} MiB parts, {multipart_concurrency} at once"
        if outcome.detail:
            detail += f": {outcome.detail[:300]}"
        entry = results.result_entry(
            system.name, "multipart", multipart_concurrency, outcome.status,
            ops=1 if outcome.status == "ok" else 0, elapsed_seconds=outcome.elapsed_seconds,
            object_size_bytes=outcome.total_bytes, bytes_moved=outcome.total_bytes,
            histogram=outcome.part_latency.to_dict() if outcome.status == "ok" else None,
            latency_ms=outcome.part_latency.summary_ms() if outcome.status == "ok" else None, detail=detail,
        )  # fmt: skip
        self.document["results"].append(entry)
        say(
            f"= {system.name:<16} multipart    {outcome.status:<13} {entry['mib_per_second']:9.1f} MiB/s  {outcome.detail[:120]}"
        )

    # --- systems ------------------------------------------------------------------------

    def make_system(self, name: str) -> System:
        if name == "squall":
            return Squall(self.work_dir, durable=True)
        if name == "squall-volatile":
            return Squall(self.work_dir, durable=False)
        if name == "rgw":
            return CephRgw(self.work_dir)
        if name == "moto":
            return Moto(self.work_dir)
        if name == BareStarlette.name:  # the framework ceiling, as a system of its own
            return BareStarlette(self.work_dir)
        if name in self.parameters.external:
            spec = self.parameters.external[name]
            url, access_key, secret_key, *pid = spec.split(",")
            # No keys ('NAME=URL,,,PID'): unsigned requests, as to the bare framework.
            endpoint = loadgen.Endpoint(url, access_key or None, secret_key or None)
            return External(name, endpoint, server_pid=int(pid[0]) if pid and pid[0] else None)
        raise ValueError(f"unknown system {name!r}")

    def workload_list(self, system: System) -> list[tuple[str, int]]:
        p = self.parameters
        pairs: list[tuple[str, int]] = []
        for workload in ("put_4k", "get_4k", "head_4k", "mixed_80_20"):
            for concurrency in p.sweep_concurrency:
                if (
                    p.mode == "quick"
                    and workload in ("head_4k", "mixed_80_20")
                    and concurrency != p.headline_concurrency
                ):
                    continue
                pairs.append((workload, concurrency))
        pairs.append(("list_1000", p.headline_concurrency))
        if system.name == "squall-volatile":
            pairs = [pair for pair in pairs if pair[0] in p.volatile_workloads]
            if p.mode == "quick":
                pairs = [pair for pair in pairs if pair[1] == p.headline_concurrency]
        if p.workloads is not None:
            pairs = [pair for pair in pairs if pair[0] in p.workloads]
        return pairs

    def wants(self, workload: str) -> bool:
        return self.parameters.workloads is None or workload in self.parameters.workloads

    def measure_system(self, system: System) -> None:
        p = self.parameters
        needs_list = self.wants("list_1000") and (
            system.name != "squall-volatile" or "list_1000" in p.volatile_workloads
        )
        try:
            if system.populates_in_process and needs_list:
                began = time.monotonic()
                system.populate_in_process(
                    bucket, list_prefix, p.list_object_count, small_size_bytes
                )
                system.notes.append(
                    f"list bucket ({p.list_object_count} objects) populated in-process in {time.monotonic() - began:.1f} s"
                )
            system.start()
            if system.endpoint.access_key is not None:  # the bare framework takes any PUT
                ensure_bucket(system.endpoint, bucket)
            seconds = self.populate(system, small_prefix, p.small_key_count, small_size_bytes)
            system.notes.append(
                f"{p.small_key_count} x 4 KiB populated over HTTP in {seconds:.1f} s"
            )
            if needs_list and not system.populates_in_process:
                seconds = self.populate(system, list_prefix, p.list_object_count, small_size_bytes)
                system.notes.append(f"list bucket ({p.list_object_count} objects) populated over HTTP "
                                    f"({populate_concurrency} connections) in {seconds:.1f} s = {p.list_object_count / seconds:.0f} PUT/s")  # fmt: skip
        except (Unavailable, RuntimeError, OSError) as error:
            say(f"! {system.name} unavailable: {error}")
            self.record_system(system, "unavailable", str(error)[:500])
            system.stop()
            return
        self.record_system(system, "ok")
        try:
            for workload, concurrency in self.workload_list(system):
                self.small_workload(system, workload, concurrency)
            big = self.wants("put_64m") or self.wants("get_64m")
            if big and (system.name != "squall-volatile" or "put_64m" in p.volatile_workloads):
                self.big_objects(system)
            if system.name != "squall-volatile" and self.wants("multipart"):
                self.multipart(system)
            if system.name == "squall" and p.profile_seconds > 0:
                self.profile(system)
        finally:
            system.stop()

    def profile(self, system: System) -> None:
        """py-spy on the server while put_4k and get_4k run again (not counted)."""
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        pid = system.server_pid
        if not Path(py_spy).exists() or pid is None:
            say("! py-spy not found: no profile")
            return
        directory = Path(self.parameters.results_directory)
        for workload in ("put_4k", "get_4k"):
            path = directory / f"{self.run_id}-profile-{system.name}-{workload}.txt"
            recorder = subprocess.Popen(
                [py_spy, "record", "--pid", str(pid), "--duration", str(int(self.parameters.profile_seconds)),
                 "--rate", "200", "--format", "raw", "--output", str(path), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            plan, payload = self.plan_for(workload, self.parameters.headline_concurrency)
            loadgen.run(system.endpoint, plan, concurrency=self.parameters.headline_concurrency,
                        duration_seconds=self.parameters.profile_seconds, payload_bytes=payload,
                        label=f"{system.name} {workload} (profiling)", report=say)  # fmt: skip
            recorder.wait(timeout=60)
            if path.exists():
                self.document["profiles"].append(
                    {"system": system.name, "workload": workload, "path": path.name}
                )

    # --- the whole run ------------------------------------------------------------------

    def execute(self, after: Callable[[dict[str, Any]], None] | None = None) -> Path:
        began = time.monotonic()
        try:
            if self.parameters.ceilings:
                self.measure_ceilings()
            for name in self.parameters.systems:
                self.measure_system(self.make_system(name))
        finally:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        self.document["run"]["wall_seconds"] = round(time.monotonic() - began, 1)
        from bench.report import goals

        self.document["goals"] = goals(self.document)
        path = results.write_document(self.document, Path(self.parameters.results_directory))
        if after is not None:
            after(self.document)
        return path
