"""Child process of test_transport_kill: one StorageNode (durable) on DATA_DIR, served
over TCP on 127.0.0.1:PORT (0: any). Prints ``listening <port>`` once it accepts
connections, then serves until it is killed."""

from __future__ import annotations

import asyncio
import pathlib
import sys

from storage.node import StorageNode
from storage.transport.tcp import TcpNodeServer


async def main(data_dir: pathlib.Path, port: int) -> None:
    node = StorageNode.open("n0", data_dir, durable=True)
    server = TcpNodeServer(node, "127.0.0.1", port)
    _, bound_port = await server.start()
    print(f"listening {bound_port}", flush=True)
    await asyncio.Event().wait()  # until SIGKILL


if __name__ == "__main__":
    asyncio.run(main(pathlib.Path(sys.argv[1]), int(sys.argv[2])))
