"""gateway/metrics.py: the text format (read back with Prometheus's parser) and access."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import MetricsAccess, RequestMetrics, render
from storage import api


def test_histogram_buckets_are_cumulative_and_counts_add_up() -> None:
    metrics = RequestMetrics()
    for seconds in (0.0001, 0.0007, 0.003, 0.003, 42.0):
        metrics.observe("GetObject", 200, seconds)
    metrics.observe("GetObject", 404, 0.0002)
    families = {f.name: f for f in text_string_to_metric_families(
        render(metrics.render(), []).decode())}
    requests = {s.labels["status"]: s.value for s in families["squall_requests"].samples}
    assert requests == {"200": 5, "404": 1}
    buckets = {s.labels["le"]: s.value
               for s in families["squall_request_duration_seconds"].samples
               if s.name.endswith("_bucket")}
    assert buckets["0.0005"] == 2 and buckets["0.001"] == 3 and buckets["0.005"] == 5
    assert buckets["30.0"] == 5 and buckets["+Inf"] == 6
    count = [s.value for s in families["squall_request_duration_seconds"].samples
             if s.name.endswith("_count")]
    assert count == [6]


def test_label_values_are_escaped() -> None:
    odd = 'a "quoted"\\ name\nwith a newline'
    family = api.MetricFamily("squall_things", "gauge", "help with \\ and\nnewline",
                              (((("name", odd),), 1.5), ((), 7)))
    parsed = list(text_string_to_metric_families(render([], [family]).decode()))
    assert [(s.labels, s.value) for s in parsed[0].samples] == [({"name": odd}, 1.5), ({}, 7)]


def test_access() -> None:
    assert not MetricsAccess().admits(None)
    assert not MetricsAccess().admits("Bearer anything")
    assert MetricsAccess(public=True).admits(None)
    token = MetricsAccess(bearer_token="s3cr3t-token-value")
    assert token.admits("Bearer s3cr3t-token-value")
    assert token.admits("bearer s3cr3t-token-value")
    assert not token.admits("Bearer s3cr3t-token-valuE")
    assert not token.admits("Basic s3cr3t-token-value")
    assert not token.admits(None)


def test_a_sources_histogram_family_renders_as_prometheus_reads_it() -> None:
    fast, slow = api.Histogram(), api.Histogram()
    for seconds in (0.0002, 0.02, 0.02):
        fast.observe(seconds)
    slow.observe(100.0)  # past the last bound: only +Inf counts it
    family = api.MetricFamily("squall_trigger_inference_seconds", "histogram", "Inference.",
                              (((("function", "fast"),), fast), ((("function", "slow"),), slow)))
    parsed = list(text_string_to_metric_families(render([], [family]).decode()))
    assert [f.type for f in parsed] == ["histogram"]
    values = {(s.name, s.labels["function"], s.labels.get("le")): s.value
              for s in parsed[0].samples}
    assert values[("squall_trigger_inference_seconds_bucket", "fast", "0.0005")] == 1
    assert values[("squall_trigger_inference_seconds_bucket", "fast", "0.01")] == 1
    assert values[("squall_trigger_inference_seconds_bucket", "fast", "0.025")] == 3
    assert values[("squall_trigger_inference_seconds_bucket", "fast", "+Inf")] == 3
    assert values[("squall_trigger_inference_seconds_count", "fast", None)] == 3 == fast.count
    assert abs(values[("squall_trigger_inference_seconds_sum", "fast", None)] - 0.0402) < 1e-9
    assert values[("squall_trigger_inference_seconds_bucket", "slow", "30.0")] == 0
    assert values[("squall_trigger_inference_seconds_bucket", "slow", "+Inf")] == 1
