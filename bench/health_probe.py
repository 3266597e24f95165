"""Server CPU per ``GET /_squall/health`` (the Kubernetes probe), beside an anonymous
``GET /`` (403, the cheapest refused request) and a bearer-token metrics scrape.

One real ``squall serve`` (volatile), one keep-alive connection; the server's utime +
stime from /proc over N requests of each kind, the kinds interleaved after a warm-up
round so a noisy neighbour hits them alike. Run: ``python -m bench.health_probe``.
"""

from __future__ import annotations

import argparse
import http.client
import os
import pathlib
import tempfile

from squall.launcher import ServerProcess

TOKEN = "health-probe-bench-token-0123456789"


def server_cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    directory = pathlib.Path(tempfile.mkdtemp(prefix="squall-health-"))
    token_file = directory / "token"
    token_file.write_text(TOKEN)
    with ServerProcess(directory / "data", access_key="HEALTHBENCHROOT0000",
                       secret_key="health-bench-secret-0000000000",
                       extra_args=("--volatile", "--metrics-token-file",
                                   str(token_file))) as server:
        assert server.process is not None
        pid = server.process.pid
        connection = http.client.HTTPConnection("127.0.0.1", server.port)

        def cpu_microseconds_per_request(path: str, count: int,
                                         headers: dict[str, str]) -> tuple[float, int]:
            before = server_cpu_seconds(pid)
            status = 0
            for _ in range(count):
                connection.request("GET", path, headers=headers)
                response = connection.getresponse()
                response.read()
                status = response.status
            return (server_cpu_seconds(pid) - before) / count * 1e6, status

        cases = {
            "GET /_squall/health": ("/_squall/health", args.requests, {}),
            "anonymous GET / (403)": ("/", args.requests, {}),
            "metrics scrape (bearer)": ("/_squall/metrics", args.requests // 10,
                                        {"Authorization": f"Bearer {TOKEN}"}),
        }
        for _round in ("warm-up", "measured"):
            results = {name: cpu_microseconds_per_request(*case) for name, case in cases.items()}
        for name, (microseconds, status) in results.items():
            print(f"{name:26s} {status}  server CPU {microseconds:7.1f} us/request")


if __name__ == "__main__":
    main()
