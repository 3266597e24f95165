"""The benchmark harness's pure parts: histogram percentiles and the result schema.
Nothing here starts a server or runs a benchmark."""

from __future__ import annotations

import copy
import json
import math
import random
import shutil

import pytest

from bench.histogram import Histogram
from bench.loadgen import Endpoint, Presigner
from bench.report import generated_markdown, goals, update_docs
from bench.results import find, new_document, result_entry, system_entry, validate_document
from bench.workloads import ListPages, Mixed, PutObjects, ReadObjects


def nearest_rank(values: list[int], percent: float) -> int:
    ordered = sorted(values)
    rank = max(1, math.ceil(percent * len(ordered) / 100 - 1e-9))
    return ordered[rank - 1]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("percent", [1, 50, 90, 99, 99.9])
def test_percentiles_are_within_the_relative_error_of_the_exact_value(
    seed: int, percent: float
) -> None:
    chooser = random.Random(seed)
    values = [int(chooser.lognormvariate(13, 1.5)) + 1 for _ in range(5000)]
    histogram = Histogram.of(values)
    exact = nearest_rank(values, percent)
    assert abs(histogram.percentile_ns(percent) - exact) <= exact * histogram.relative_error


def test_extremes_count_and_mean_are_exact() -> None:
    values = [1_000, 2_000, 3_000, 1_000_000]
    histogram = Histogram.of(values)
    assert histogram.percentile_ns(0) == 1_000 and histogram.min_ns == 1_000
    assert histogram.percentile_ns(100) == 1_000_000 and histogram.max_ns == 1_000_000
    assert histogram.count == 4 and histogram.mean_ns() == sum(values) / 4
    assert histogram.percentile_ns(50) == pytest.approx(2_000, rel=0.01)


def test_empty_histogram_answers_zero() -> None:
    histogram = Histogram()
    assert histogram.percentile_ns(99) == 0.0 and histogram.mean_ns() == 0.0
    assert histogram.cdf_points() == []


def test_merge_equals_recording_everything_in_one() -> None:
    chooser = random.Random(7)
    a = [chooser.randrange(1, 10**8) for _ in range(1000)]
    b = [chooser.randrange(1, 10**6) for _ in range(300)]
    merged = Histogram.of(a).merge(Histogram.of(b))
    together = Histogram.of(a + b)
    assert merged.to_dict() == together.to_dict()


def test_serialisation_round_trips_through_json() -> None:
    histogram = Histogram.of([5, 50, 500, 5_000_000])
    back = Histogram.from_dict(json.loads(json.dumps(histogram.to_dict())))
    assert back.to_dict() == histogram.to_dict()
    assert back.summary_ms() == histogram.summary_ms()


def test_cdf_is_monotonic_and_ends_at_one() -> None:
    histogram = Histogram.of(random.Random(3).randrange(1, 10**7) for _ in range(2000))
    points = histogram.cdf_points()
    assert [p[0] for p in points] == sorted(p[0] for p in points)
    assert [p[1] for p in points] == sorted(p[1] for p in points)
    assert points[-1][1] == 1.0


def test_summary_percentiles_are_ordered() -> None:
    summary = Histogram.of(random.Random(4).randrange(1, 10**9) for _ in range(500)).summary_ms()
    assert summary["min"] <= summary["p50"] <= summary["p90"] <= summary["p99"] <= summary["max"]


# --- result documents ---------------------------------------------------------------------


def sample_document() -> dict:
    document = new_document(
        "quick",
        "python -m bench",
        {
            "headline_concurrency": 8,
            "duration_seconds": 1.0,
            "sweep_concurrency": [8],
            "list_object_count": 10,
            "multipart_total_bytes": 2**20,
        },
    )
    document["systems"] = [
        system_entry("squall", "squall", "squall serve", "ok"),
        system_entry("rgw", "peer", "Ceph RGW", "ok"),
        system_entry("moto", "peer", "moto", "unavailable", reason="moto_server not found"),
        system_entry("loopback", "limit", "socket", "ok"),
    ]
    for system, per_second in (("squall", 3000), ("rgw", 1000)):
        histogram = Histogram.of([1_000_000, 2_000_000, 3_000_000])
        for workload in ("put_4k", "get_4k"):
            document["results"].append(
                result_entry(
                    system,
                    workload,
                    8,
                    "ok",
                    ops=per_second,
                    elapsed_seconds=1.0,
                    object_size_bytes=4096,
                    bytes_moved=per_second * 4096,
                    histogram=histogram.to_dict(),
                    latency_ms=histogram.summary_ms(),
                )
            )
    for system, mib in (("squall", 500), ("loopback", 1000)):
        histogram = Histogram.of([100_000_000])
        document["results"].append(
            result_entry(
                system,
                "put_64m",
                1,
                "ok",
                ops=mib // 64,
                elapsed_seconds=1.0,
                bytes_moved=mib * 2**20,
                object_size_bytes=64 * 2**20,
                histogram=histogram.to_dict(),
                latency_ms=histogram.summary_ms(),
            )
        )
    document["results"].append(
        result_entry("squall", "multipart", 4, "not_supported", detail="501")
    )
    document["goals"] = goals(document)
    return document


def test_a_complete_document_is_valid_and_survives_json() -> None:
    document = sample_document()
    assert validate_document(document) == []
    assert validate_document(json.loads(json.dumps(document))) == []


@pytest.mark.parametrize(
    "break_it, complaint",
    [
        (lambda d: d.update(schema="other/9"), "schema"),
        (lambda d: d["run"].pop("git"), "missing 'git'"),
        (lambda d: d["results"][0].update(system="minio"), "not in systems"),
        (lambda d: d["results"][0].update(workload="put_5k"), "unknown"),
        (lambda d: d["results"][0].update(status="great"), "status"),
        (lambda d: d["results"][0].update(concurrency=0), "concurrency"),
        (lambda d: d["results"][0]["latency_ms"].update(p50=10**6), "out of order"),
        (lambda d: d["results"][0]["latency_ms"].pop("p99"), "p99"),
        (lambda d: d["results"][0]["histogram"].update(count=10**6), "add up"),
        (lambda d: d["systems"][2].update(reason=""), "without a reason"),
        (lambda d: d["results"][0].update(ops_per_second=-1.0), "negative"),
    ],
)
def test_validation_names_each_breakage(break_it, complaint: str) -> None:
    document = copy.deepcopy(sample_document())
    break_it(document)
    problems = validate_document(document)
    assert any(complaint in problem for problem in problems), problems


def test_result_entry_computes_rates_only_when_ok() -> None:
    entry = result_entry(
        "squall", "put_64m", 1, "ok", ops=2, elapsed_seconds=2.0, bytes_moved=128 * 2**20
    )
    assert entry["ops_per_second"] == 1.0 and entry["mib_per_second"] == 64.0
    failed = result_entry(
        "squall", "put_64m", 1, "failed", ops=2, elapsed_seconds=2.0, bytes_moved=128 * 2**20
    )
    assert failed["ops_per_second"] == 0.0 and failed["mib_per_second"] == 0.0


def test_goals_compute_ratios_and_say_what_was_not_measured() -> None:
    by_name = {g["name"]: g for g in sample_document()["goals"]}
    assert by_name["put_4k c=8: squall >= 2 x rgw"]["ratio"] == 3.0
    assert by_name["put_4k c=8: squall >= 2 x rgw"]["met"] is True
    assert by_name["get_4k c=8: squall >= 10 x moto"]["met"] is None
    assert by_name["put_64m c=1: squall >= 0.6 x loopback"]["ratio"] == 0.5
    assert by_name["put_64m c=1: squall >= 0.6 x loopback"]["met"] is False


def test_find_picks_the_ok_result() -> None:
    document = sample_document()
    assert find(document, "squall", "put_4k", 8)["ops_per_second"] == 3000
    assert find(document, "squall", "multipart") is None


def test_report_block_is_replaced_and_hand_written_text_kept(tmp_path) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\nhand-written method\n\n## Analysis\n\nkept\n")
    update_docs(docs, generated_markdown(sample_document(), {}), "")
    first = docs.read_text()
    assert "3.00×" in first and "hand-written method" in first and "kept" in first
    update_docs(docs, generated_markdown(sample_document(), {}), "")
    assert docs.read_text().count("bench:generated:begin") == 1


# --- request plans ------------------------------------------------------------------------


def test_put_plan_covers_each_key_once_across_threads() -> None:
    presigner = Presigner(Endpoint("http://127.0.0.1:1"))  # unsigned: no keys
    plan = PutObjects("p", "b", "k", 10, 4096)
    targets = [t for i in range(3) for _, t, _ in plan.requests_for(presigner, i, 3)]
    assert sorted(targets) == [f"/b/k/{n:08d}" for n in range(10)]


def test_presigned_targets_carry_a_sigv4_query_signature() -> None:
    presigner = Presigner(Endpoint("http://127.0.0.1:1", "AKID", "secret"))
    method, target, size = ReadObjects("g", "GET", "b", "k", 4).requests_for(presigner, 0, 2)[0]
    assert method == "GET" and size == 0 and target.startswith("/b/k/00000000?")
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in target and "X-Amz-Signature=" in target


def test_list_and_mixed_plans() -> None:
    presigner = Presigner(Endpoint("http://127.0.0.1:1"))
    pages = ListPages("l", "b", "list", 3000).requests_for(presigner, 0, 1)
    assert len(pages) == 3 and "start-after=list%2F00000999" in pages[1][1]
    mixed = Mixed("m", "b", "g", 100, "p", 1000, 4096).requests_for(presigner, 0, 1)
    puts = sum(1 for method, _, _ in mixed if method == "PUT")
    assert 150 < puts < 250


def test_workloads_and_the_bare_framework_as_a_system() -> None:
    from bench.__main__ import build_parser, parameters_from
    from bench.runner import Run
    from bench.systems import BareStarlette, External

    args = build_parser().parse_args([
        "--systems", "starlette-bare,old", "--workloads", "get_4k,put_4k", "--concurrency", "1,8",
        "--endpoint", "old=http://127.0.0.1:1,AK,SK,4242", "--endpoint", "raw=http://127.0.0.1:2,,,",
    ])  # fmt: skip
    parameters = parameters_from(args)
    assert parameters.workloads == ["get_4k", "put_4k"]
    run = Run(parameters, "test")
    shutil.rmtree(run.work_dir)  # made by Run for servers' data; none is started here
    bare = run.make_system("starlette-bare")
    assert isinstance(bare, BareStarlette)
    assert run.workload_list(bare) == [("put_4k", 1), ("put_4k", 8), ("get_4k", 1), ("get_4k", 8)]
    assert not run.wants("list_1000") and not run.wants("multipart")
    old = run.make_system("old")
    assert isinstance(old, External) and old.server_pid == 4242
    assert old.endpoint.access_key == "AK"
    raw = run.make_system("raw")
    assert raw.server_pid is None and raw.endpoint.access_key is None


def test_server_cpu_of_this_process_is_read_and_grows() -> None:
    import os

    from bench.runner import process_cpu_seconds

    before = process_cpu_seconds(os.getpid())
    sum(i * i for i in range(300_000))
    after = process_cpu_seconds(os.getpid())
    assert before is not None and after is not None and after >= before
    assert process_cpu_seconds(None) is None
