"""What the trigger machinery alone costs a PUT over HTTP.

A plain PUT against the same PUT judged by an async ``kind: python`` function
(``triggers.examples:has_magic``: no TensorFlow, no thread hop, ``annotate``), interleaved
in 6 rounds (order alternated) on one keep-alive connection to a real
``squall serve --volatile``; p50 wall time and the server's CPU per op (from /proc).
Subtracting it from a TensorFlow function's judged-PUT overhead (``bench/ml_pipeline.py``,
``trigger_minus_put_minus_bare_cpu_ms``) leaves what running the model in the server
costs beyond bare inference.

    .venv/bin/python bench/hook_cost.py [OPS]
"""

from __future__ import annotations

import http.client
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from squall.launcher import ServerProcess  # noqa: E402
from tests.integration import triggers_support as support  # noqa: E402

ROUNDS = 6
BODY = b"\x89PNG" + b"x" * 300


def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ops = int(sys.argv[1]) if len(sys.argv) > 1 else 1800
    with tempfile.TemporaryDirectory() as data_dir, ServerProcess(
        Path(data_dir), access_key=support.ACCESS_KEY, secret_key=support.SECRET_KEY,
        extra_args=("--volatile",),
    ) as server:
        assert server.process is not None
        s3 = support.s3_client(server.url)
        s3.create_bucket(Bucket="bench")
        support.register(server, "magic", {
            "kind": "python", "entry_point": "triggers.examples:has_magic",
            "actions": [{"annotate": True}]})
        support.bind(s3, "bench", "magic", prefix="judged/")
        paths = {name: [s3.generate_presigned_url(
            "put_object", Params={"Bucket": "bench", "Key": f"{name}/{i}"}
        ).split(server.url, 1)[1] for i in range(ops)] for name in ("plain", "judged")}
        connection = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]))
        wall: dict[str, list[float]] = {"plain": [], "judged": []}
        cpu = dict.fromkeys(wall, 0.0)
        per_round = ops // ROUNDS
        for round_index in range(ROUNDS):
            order = ("plain", "judged") if round_index % 2 == 0 else ("judged", "plain")
            for name in order:
                began_cpu = process_cpu_s(server.process.pid)
                for path in paths[name][round_index * per_round:(round_index + 1) * per_round]:
                    began = time.perf_counter()
                    connection.request("PUT", path, BODY)
                    response = connection.getresponse()
                    response.read()
                    wall[name].append(time.perf_counter() - began)
                    if response.status != 200:
                        raise SystemExit(f"PUT {name}: {response.status}")
                cpu[name] += process_cpu_s(server.process.pid) - began_cpu
        connection.close()
    print(f"load average {os.getloadavg()}")
    for name, samples in wall.items():
        print(f"{name:7} p50 {statistics.median(samples) * 1e6:6.0f} us   server CPU "
              f"{cpu[name] / len(samples) * 1e6:6.0f} us/op   ({len(samples)} ops)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
