"""Views agreed through Raft by real processes (``storage.membership.agreement``).

Three node processes (``membership_node.py``), each a ``ViewAgreement`` with its Raft
journal on disk, on loopback. Checked: a proposal installs the view on every node; of two
concurrent proposals for one epoch exactly one wins and the other learns the winner; a
majority goes on installing views with one node killed (-9); a minority cannot install
one; restarted nodes converge on the cluster's view, and a cluster killed whole keeps it
(the Raft journals on disk); a member started with the wrong cluster secret takes no
part (with the right one it does).
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from squall.launcher import free_port

NODE_SCRIPT = pathlib.Path(__file__).with_name("membership_node.py")
SECRET = "cluster-secret-for-the-test"
ANSWER_TIMEOUT_S = 30


class Node:
    def __init__(self, address: str, peers: list[str], journal: pathlib.Path,
                 secret: str = SECRET) -> None:
        self.address, self.peers, self.journal, self.secret = address, peers, journal, secret
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> Node:
        self.process = subprocess.Popen(
            [sys.executable, str(NODE_SCRIPT), self.address, ",".join(self.peers),
             self.secret, str(self.journal)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self._read() == {"started": self.address}
        return self

    def _read(self) -> Any:
        assert self.process is not None and self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, f"node {self.address} exited with {self.process.poll()}"
        return json.loads(line)

    def ask(self, command: str) -> Any:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._read()

    def propose(self, epoch: int, shards: list[list[str]]) -> Any:
        return self.ask(f"propose {epoch} {json.dumps(shards)}")

    def view(self) -> Any:
        return self.ask("view")["view"]

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._close_pipes()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_pipes()

    def _close_pipes(self) -> None:
        if self.process is not None:
            for pipe in (self.process.stdin, self.process.stdout):
                if pipe is not None and not pipe.closed:
                    pipe.close()


def _until(check: Any, timeout_s: float = ANSWER_TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


def _propose_until_agreed(node: Node, epoch: int, shards: list[list[str]]) -> Any:
    """Right after start there is no Raft leader yet: no_quorum until one is elected."""
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    while True:
        answer = node.propose(epoch, shards)
        if "no_quorum" not in answer or time.monotonic() > deadline:
            return answer


@pytest.fixture
def cluster(tmp_path: pathlib.Path) -> Iterator[list[Node]]:
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    nodes = [Node(address, [a for a in addresses if a != address], tmp_path / f"node{i}")
             for i, address in enumerate(addresses)]
    try:
        for node in nodes:
            node.start()
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def test_views_are_agreed_by_a_majority_and_never_by_a_minority(cluster: list[Node]) -> None:
    a, b, c = cluster
    assert [node.view() for node in cluster] == [[0, [["a", "b", "c"]]]] * 3

    one = [["a", "b", "c"], ["b", "c", "a"]]
    assert _propose_until_agreed(a, 1, one) == {"installed": [1, one]}
    assert _until(lambda: all(node.view() == [1, one] for node in cluster))

    # An epoch that is not the next one is refused with the current view.
    assert a.propose(5, [["a"]]) == {"stale": [1, one]}

    # Two proposals for epoch 2: one wins; the loser is told which view won.
    first = b.ask(f"propose 2 {json.dumps([['b', 'c']])}")
    second = c.ask(f"propose 2 {json.dumps([['c', 'b']])}")
    winner = first.get("installed") or second.get("installed")
    assert winner is not None and winner[0] == 2
    assert {"installed", "stale"} == {*first, *second}
    assert (first.get("stale") or second.get("stale")) == winner
    assert _until(lambda: all(node.view() == winner for node in cluster))

    # One node killed: the other two are a majority and go on agreeing.
    c.kill()
    without_c = [["a", "b"]]
    assert _propose_until_agreed(a, 3, without_c) == {"installed": [3, without_c]}
    assert _until(lambda: b.view() == [3, without_c])

    # Two killed: the survivor alone is a minority. Its proposal is not agreed and its
    # view does not change.
    b.kill()
    answer = a.propose(4, [["a"]])
    assert "no_quorum" in answer, answer
    assert a.view() == [3, without_c]

    # The killed nodes restart on their journals and converge on one view: epoch 3, or 4
    # if Raft later committed the minority's proposal, which stayed in a's log
    # (NoQuorum means "not agreed in time", not "never").
    b.start()
    c.start()
    assert _until(lambda: len({json.dumps(node.view()) for node in cluster}) == 1)
    final = a.view()
    assert final in ([3, without_c], [4, [["a"]]])
    next_epoch = final[0] + 1
    again = [["a", "b", "c"]]
    assert _propose_until_agreed(c, next_epoch, again) == {"installed": [next_epoch, again]}
    assert _until(lambda: all(node.view() == [next_epoch, again] for node in cluster))

    # The whole cluster crashes and restarts: the journals keep the agreed view (a
    # cluster that forgot it would start again from epoch 0).
    for node in cluster:
        node.kill()
    for node in cluster:
        node.start()
    assert _until(lambda: all(node.view() == [next_epoch, again] for node in cluster))
    assert _propose_until_agreed(b, next_epoch + 1, one) == {"installed": [next_epoch + 1, one]}


def test_a_member_without_the_cluster_secret_takes_no_part(
    cluster: list[Node], tmp_path: pathlib.Path
) -> None:
    a, b, c = cluster
    c.stop()
    outsider = Node(c.address, c.peers, tmp_path / "fresh", secret="not-the-secret").start()
    try:
        one = [["a", "b", "c"]]
        assert _propose_until_agreed(a, 1, one) == {"installed": [1, one]}
        assert _until(lambda: b.view() == [1, one])
        time.sleep(2)  # several Raft heartbeats: a member would have heard by now
        assert outsider.view() == [0, [["a", "b", "c"]]]
        assert "no_quorum" in outsider.propose(2, [["c"]])
        assert a.view() == b.view() == [1, one]
    finally:
        outsider.stop()
    # The control: the same address with the secret (and the same fresh journal) hears.
    member = Node(c.address, c.peers, tmp_path / "fresh").start()
    try:
        assert _until(lambda: member.view() == [1, one])
    finally:
        member.stop()
