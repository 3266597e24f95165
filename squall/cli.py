"""The ``squall`` command: the composition root that wires storage and the gateway.

``squall serve`` runs the embedded store: one process, one storage node, one shard, the
in-process transport and the S3 gateway on uvicorn. It is the same code path a cluster
uses, with a one-member view.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from storage import limits

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

DEV_ROOT_USER = "squall-dev"
DEV_ROOT_PASSWORD = "squall-dev-secret-change-me"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _credentials(args: argparse.Namespace) -> tuple[str, str, bool]:
    """(access key, secret key, whether it is the development pair)."""
    user = args.root_user or os.environ.get("SQUALL_ROOT_USER")
    password = args.root_password or os.environ.get("SQUALL_ROOT_PASSWORD")
    if bool(user) != bool(password):
        raise SystemExit("squall: set both SQUALL_ROOT_USER and SQUALL_ROOT_PASSWORD, or neither")
    if user and password:
        return user, password, False
    return DEV_ROOT_USER, DEV_ROOT_PASSWORD, True


def _uvicorn_server(config: Any) -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, minus re-raising SIGINT/SIGTERM once it has shut down.

        uvicorn re-raises a captured signal after its shutdown so the default handler
        ends the process; that would kill us before the storage is closed. We stop the
        server on the signal, close the storage, and exit with status 0 instead.
        """

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in _STOP_SIGNALS}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server(config)


async def _serve(args: argparse.Namespace, access_key: str, secret_key: str) -> None:
    import uvicorn

    from gateway.app import Gateway
    from gateway.s3.common import GatewayConfig
    from storage.client import open_embedded
    from storage.lifecycle import SweeperSettings

    lifecycle = SweeperSettings(period_seconds=args.lifecycle_period_seconds)
    storage = await open_embedded(
        Path(args.data_dir), durable=not args.volatile, lifecycle=lifecycle
    )
    try:
        gateway = Gateway(
            storage,
            GatewayConfig(
                credentials={access_key: secret_key},
                region=args.region,
                domains=tuple(d for d in args.domain if d),
            ),
        )
        config = uvicorn.Config(
            gateway,
            host=args.host,
            port=args.port,
            http="httptools",
            lifespan="on",
            server_header=False,
            proxy_headers=False,  # no proxy is trusted: X-Forwarded-* are not believed
            log_level=args.log_level,
            access_log=args.access_log,
            timeout_keep_alive=30,
        )
        await _uvicorn_server(config).serve()
    finally:
        await storage.close()


def _serve_command(args: argparse.Namespace) -> int:
    access_key, secret_key, is_dev_pair = _credentials(args)
    if is_dev_pair and not _is_loopback(args.host):
        print(
            f"squall: refusing to listen on {args.host} with the development credentials; "
            "set SQUALL_ROOT_USER and SQUALL_ROOT_PASSWORD",
            file=sys.stderr,
        )
        return 2
    endpoint = f"http://{args.host}:{args.port}"
    print(f"Squall S3 endpoint: {endpoint}  (data: {Path(args.data_dir).resolve()})", flush=True)
    if is_dev_pair:
        print(
            "Development credentials (set SQUALL_ROOT_USER / SQUALL_ROOT_PASSWORD to change):\n"
            f"  AWS_ACCESS_KEY_ID={access_key}\n  AWS_SECRET_ACCESS_KEY={secret_key}\n"
            f"  e.g. aws --endpoint-url {endpoint} s3 ls",
            flush=True,
        )
    try:
        import uvloop
    except ImportError:  # uvloop is optional (not on every platform)
        asyncio.run(_serve(args, access_key, secret_key))
    else:
        uvloop.run(_serve(args, access_key, secret_key))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="squall", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the embedded store (gateway + one node)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=9000)
    serve.add_argument("--data-dir", default="./data")
    serve.add_argument("--root-user", default=None, help="or SQUALL_ROOT_USER")
    serve.add_argument("--root-password", default=None, help="or SQUALL_ROOT_PASSWORD")
    serve.add_argument("--region", default=os.environ.get("SQUALL_REGION", "us-east-1"))
    serve.add_argument(
        "--domain",
        action="append",
        default=["localhost"],
        help="virtual-host-style domain: requests to <bucket>.<domain> address <bucket>",
    )
    serve.add_argument(
        "--volatile",
        action="store_true",
        help="acknowledge writes before they are synced to disk (faster, not crash-safe)",
    )
    serve.add_argument(
        "--lifecycle-period-seconds",
        type=float,
        default=limits.lifecycle_sweep_period_seconds,
        help="how often the lifecycle sweeper applies the buckets' expiry rules",
    )
    serve.add_argument("--log-level", default="info")
    serve.add_argument("--access-log", action="store_true")
    serve.set_defaults(run=_serve_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
