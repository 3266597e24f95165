"""The cluster file (storage/cluster_config.py)."""

from __future__ import annotations

import json
import pathlib

import pytest

from storage.cluster_config import ClusterConfigError, load_cluster_config
from storage.placement import View

SECRET = "s" * 20


def _write(tmp_path: pathlib.Path, document: object) -> pathlib.Path:
    (tmp_path / "secret").write_text(SECRET + "\n")
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(document))
    return path


def _nodes(count: int) -> dict[str, dict[str, str]]:
    return {f"n{i}": {"address": f"127.0.0.1:{9100 + i}", "raft": f"127.0.0.1:{9200 + i}"}
            for i in range(1, count + 1)}


def test_homes_rotate_so_leaders_spread(tmp_path: pathlib.Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SQUALL_CLUSTER_SECRET", raising=False)
    config = load_cluster_config(_write(tmp_path, {
        "nodes": _nodes(4), "shards": 3, "replication_factor": 3, "secret_file": "secret"}))
    assert config.secret == SECRET
    assert config.first_view() == View(0, (("n1", "n2", "n3"), ("n2", "n3", "n4"),
                                           ("n3", "n4", "n1")))
    assert config.shards_of("n4") == (1, 2)
    assert config.addresses()["n2"] == ("127.0.0.1", 9102)
    with pytest.raises(ClusterConfigError, match="not in the cluster file"):
        config.node("n9")


def test_the_secret_comes_from_the_environment_first(tmp_path: pathlib.Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQUALL_CLUSTER_SECRET", "e" * 16)
    config = load_cluster_config(_write(tmp_path, {"nodes": _nodes(1)}))
    assert config.secret == "e" * 16 and config.replication_factor == 1


@pytest.mark.parametrize("document, message", [
    ([], "JSON object"),
    ({"nodes": {}}, "at least one node"),
    ({"nodes": {"a": {"address": "x"}}}, "needs"),
    ({"nodes": {"a": {"address": "host", "raft": "h:1"}}}, "host:port"),
    ({"nodes": _nodes(2), "shards": 0}, "shards"),
    ({"nodes": _nodes(2), "replication_factor": 3}, "replication_factor"),
    ({"nodes": _nodes(2)}, "no cluster secret"),
    ({"nodes": _nodes(2), "secret_file": "missing"}, "cannot read"),
])
def test_malformed_files_say_why(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                 document: object, message: str) -> None:
    monkeypatch.delenv("SQUALL_CLUSTER_SECRET", raising=False)
    with pytest.raises(ClusterConfigError, match=message):
        load_cluster_config(_write(tmp_path, document))


def test_a_short_secret_is_refused(tmp_path: pathlib.Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQUALL_CLUSTER_SECRET", "short")
    with pytest.raises(ClusterConfigError, match="at least 16"):
        load_cluster_config(_write(tmp_path, {"nodes": _nodes(1)}))
