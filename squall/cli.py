"""The ``squall`` command: the composition root that wires storage and the gateway.

``squall serve`` runs the embedded store: one process, one storage node, one shard, the
in-process transport and the S3 gateway on uvicorn. It is the same code path a cluster
uses, with a one-member view.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import importlib
import ipaddress
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storage import limits
from triggers.devices import DEVICE_CHOICES

if TYPE_CHECKING:
    from storage.engine.cipher import ChunkCipher

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

DEV_ROOT_USER = "squall-dev"
DEV_ROOT_PASSWORD = "squall-dev-secret-change-me"
DEFAULT_PRE_COMMIT_HOOK = "triggers.hook:TriggerHook"
FUNCTION_FILE_SUFFIXES = (".yaml", ".yml", ".json")
DAY_SECONDS = 24 * 3600.0  # a lifecycle day, unless --lifecycle-day-seconds says otherwise
_PROBLEMS_SHOWN_MAX = 100  # squall verify lists at most this many, then counts the rest


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


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


def load_by_import_string(import_string: str) -> Any:
    """``package.module:attribute`` -> the attribute (how hooks are named in config)."""
    module_name, _, attribute = import_string.partition(":")
    if not module_name or not attribute:
        raise SystemExit(f"squall: {import_string!r} is not package.module:attribute")
    return getattr(importlib.import_module(module_name), attribute)


async def _register_function_files(hook: Any, directory: Path) -> None:
    """``--functions DIR``: register every definition file (NAME.yaml / .yml / .json)."""
    from storage.api import InvalidArgument

    if hook is None:
        raise SystemExit("squall: --functions needs a pre-commit hook")
    for path in sorted(directory.iterdir()):
        if path.suffix in FUNCTION_FILE_SUFFIXES:
            try:
                await hook.put_function(path.stem, path.read_bytes())
            except InvalidArgument as error:
                raise SystemExit(f"squall: function {path.stem} ({path}): {error}") from None
            logging.getLogger("squall").info("registered function %s from %s", path.stem, path)


def load_users_file(path: Path) -> list[dict[str, Any]]:
    """``--users FILE``: a JSON or YAML list of {"access_key", "secret_key",
    "display_name"}; exits with a message naming the entry when one is malformed."""
    from gateway.users import parse_user
    from storage.api import InvalidArgument

    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            entries = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise SystemExit(f"squall: --users {path}: {error}") from None
    else:
        try:
            entries = json.loads(text)
        except ValueError as error:
            raise SystemExit(f"squall: --users {path}: {error}") from None
    if not isinstance(entries, list):
        raise SystemExit(f"squall: --users {path}: a list of users, please")
    for number, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or not isinstance(entry.get("access_key"), str):
            raise SystemExit(f"squall: --users {path}: entry {number} needs an access_key")
        try:
            parse_user(entry["access_key"], entry)
        except InvalidArgument as error:
            raise SystemExit(f"squall: --users {path}: entry {number}: {error}") from None
    return entries


def parse_webhooks(values: list[str]) -> dict[str, str]:
    """``--webhook ID=URL`` (repeatable) -> {ID: URL}; exits with a message when malformed."""
    from storage.api import webhook_target_id

    webhooks: dict[str, str] = {}
    for value in values:
        target_id, _, url = value.partition("=")
        if webhook_target_id(f"arn:squall:sqs::{target_id}:webhook") is None:
            raise SystemExit(f"squall: --webhook {value!r}: ID must be 1-64 letters, digits, "
                             "'_', '.' or '-' (then =URL)")
        if not url.startswith(("http://", "https://")):
            raise SystemExit(f"squall: --webhook {value!r}: URL must be http:// or https://")
        if target_id in webhooks:
            raise SystemExit(f"squall: --webhook {target_id} given twice")
        webhooks[target_id] = url
    if len(webhooks) > limits.webhooks_max:
        raise SystemExit(f"squall: at most {limits.webhooks_max} webhooks")
    return webhooks


def _build_hook(args: argparse.Namespace, webhooks: dict[str, str]) -> Any:
    if not args.pre_commit_hook:
        if webhooks:
            raise SystemExit("squall: --webhook needs the triggers hook (--pre-commit-hook)")
        return None
    factory = load_by_import_string(args.pre_commit_hook)
    # The hook delivers post-commit notifications too; it is told the webhooks (and the
    # inference threads) only when given, so a custom hook without them still loads.
    options: dict[str, Any] = {}
    if webhooks:
        options.update(webhooks=webhooks, region=args.region)
    if args.inference_threads is not None:
        if not 1 <= args.inference_threads <= limits.trigger_inference_threads_max:
            raise SystemExit(f"squall: --inference-threads must be 1 to "
                             f"{limits.trigger_inference_threads_max}")
        options.update(inference_threads=args.inference_threads)
    options.update(_tensorflow_options(args))
    return factory(**options)


def _tensorflow_options(args: argparse.Namespace) -> dict[str, Any]:
    """``--tensorflow-device`` and ``--gpu-memory-limit-mib`` as the hook's options (only
    those given: a custom hook without them still loads); exits when they conflict."""
    options: dict[str, Any] = {}
    if args.tensorflow_device is not None:
        options.update(tensorflow_device=args.tensorflow_device)
    limit_mib = args.gpu_memory_limit_mib
    if limit_mib is not None:
        low, high = (limits.tensorflow_gpu_memory_limit_mib_min,
                     limits.tensorflow_gpu_memory_limit_mib_max)
        if not low <= limit_mib <= high:
            raise SystemExit(f"squall: --gpu-memory-limit-mib must be {low} to {high}")
        if args.tensorflow_device == "cpu":
            raise SystemExit("squall: --gpu-memory-limit-mib needs a GPU; "
                             "--tensorflow-device cpu hides them")
        options.update(gpu_memory_limit_mib=limit_mib)
    return options


async def _serve(args: argparse.Namespace, access_key: str, secret_key: str) -> None:
    import uvicorn

    from gateway.app import Gateway
    from gateway.s3.common import GatewayConfig
    from gateway.users import UserDirectory
    from storage.api import EventDelivery, MetricsSource, StorageError
    from storage.client import open_embedded
    from storage.lifecycle import SweeperSettings

    lifecycle = SweeperSettings(period_seconds=args.lifecycle_period_seconds,
                                day_ms=round(args.lifecycle_day_seconds * 1000))
    metrics_access = _metrics_access(args)
    webhooks = parse_webhooks(args.webhook)
    users_file = load_users_file(Path(args.users)) if args.users else []
    if args.cluster:
        _check_cluster_gateway(args, webhooks)
        # A cluster runs no pre-commit functions and no notifications (docs/cluster.md):
        # the gateway then refuses their configurations with its usual messages.
        hook = cipher = None
    else:
        # The pre-commit hook is named by an import string: storage never imports triggers.
        hook = _build_hook(args, webhooks)
        cipher = _cipher(args.encryption_key_file)
    try:
        if args.cluster:
            from storage.cluster_client import open_cluster_client
            from storage.cluster_config import load_cluster_config

            storage = await open_cluster_client(load_cluster_config(Path(args.cluster)),
                                                retry_ms=args.cluster_retry_ms)
        else:
            storage = await open_embedded(
                Path(args.data_dir), durable=not args.volatile, lifecycle=lifecycle,
                pre_commit_hook=hook, outbox_entries_max=args.outbox_entries_max,
                cipher=cipher,
            )
    except StorageError as error:  # e.g. the store was created with another key
        raise SystemExit(f"squall: {error}") from None
    if cipher is not None:
        logging.getLogger("squall").info(
            "object data encrypted at rest (AES-256, key id %s)", cipher.key_id)
    try:
        if args.functions:
            await _register_function_files(hook, Path(args.functions))
        users = UserDirectory(storage, {access_key: secret_key})
        await users.start()
        await _register_users(users, users_file)
        gateway = Gateway(
            storage,
            GatewayConfig(
                credentials={access_key: secret_key},
                users=users,
                region=args.region,
                domains=tuple(d for d in args.domain if d),
                functions=hook,
                webhook_targets=frozenset(webhooks),
                delivery=hook if webhooks and isinstance(hook, EventDelivery) else None,
                lifecycle_day_ms=lifecycle.day_ms,
                encryption_at_rest=cipher is not None,
                sse_c_over_http=args.allow_sse_c_over_http,
                cluster=bool(args.cluster),
                metrics_access=metrics_access,
                metrics_sources=(hook,) if isinstance(hook, MetricsSource) else (),
            ),
        )
        from gateway.http_protocol import CoalescingHttpToolsProtocol

        config = uvicorn.Config(
            gateway,
            host=args.host,
            port=args.port,
            # uvicorn's httptools protocol, sending a small response in one write.
            http=CoalescingHttpToolsProtocol,
            lifespan="on",
            server_header=False,
            proxy_headers=False,  # no proxy is trusted: X-Forwarded-* are not believed
            log_level=args.log_level,
            access_log=args.access_log,
            # --tls-cert-file / --tls-key-file: HTTPS on the same port (checked up front).
            ssl_certfile=args.tls_cert_file,
            ssl_keyfile=args.tls_key_file,
            timeout_keep_alive=limits.keep_alive_idle_seconds_max,
            limit_concurrency=limits.connections_max,
        )
        await _uvicorn_server(config).serve()
    finally:
        await storage.close()


def _tls_problem(cert_file: str | None, key_file: str | None) -> str | None:
    """Why the TLS files cannot serve HTTPS (None: they can, or TLS is off), before the
    store is opened: both or neither, readable, and a key that matches the certificate."""
    if not cert_file and not key_file:
        return None
    if not (cert_file and key_file):
        return "give both --tls-cert-file and --tls-key-file, or neither"
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as error:
        return f"--tls-cert-file {cert_file} / --tls-key-file {key_file}: {error}"
    return None


def _cipher(key_file: str | None) -> ChunkCipher | None:
    """The ``ChunkCipher`` of ``--encryption-key-file`` (None without one)."""
    if not key_file:
        return None
    from storage.engine.cipher import ChunkCipher, KeyFileError, load_key

    try:
        return ChunkCipher(load_key(Path(key_file)))
    except KeyFileError as error:
        raise SystemExit(f"squall: --encryption-key-file: {error}") from None


async def _register_users(users: Any, entries: list[dict[str, Any]]) -> None:
    """``--users FILE``: store (or replace) each user before serving."""
    from storage.api import InvalidArgument

    for entry in entries:
        document = {name: value for name, value in entry.items() if name != "access_key"}
        try:
            await users.put(entry["access_key"], document)
        except InvalidArgument as error:
            raise SystemExit(f"squall: --users: {entry['access_key']}: {error}") from None
        logging.getLogger("squall").info("registered user %s", entry["access_key"])


def _metrics_access(args: argparse.Namespace) -> Any:
    from gateway.metrics import MetricsAccess

    token = None
    if args.metrics_token_file:
        token = Path(args.metrics_token_file).read_text().strip()
        if len(token) < limits.metrics_token_chars_min:
            raise SystemExit(f"squall: --metrics-token-file: a token of at least "
                             f"{limits.metrics_token_chars_min} characters, please")
    return MetricsAccess(public=args.metrics_public, bearer_token=token)


def _check_cluster_gateway(args: argparse.Namespace, webhooks: dict[str, str]) -> None:
    """``squall serve --cluster``: refuse what a replicated cluster does not run yet."""
    refused = [name for name, given in (
        ("--webhook", bool(webhooks)), ("--functions", bool(args.functions)),
        ("--encryption-key-file", bool(args.encryption_key_file)),
        ("--volatile", args.volatile)) if given]
    if refused:
        raise SystemExit(f"squall: {', '.join(refused)} cannot be used with --cluster: a "
                         "replicated cluster runs no pre-commit functions, no bucket "
                         "notifications and no encryption at rest yet (docs/cluster.md)")


def _node_command(args: argparse.Namespace) -> int:
    from storage.cluster_config import ClusterConfigError, load_cluster_config, split_address

    try:
        config = load_cluster_config(Path(args.cluster))
        listen = split_address(args.listen) if args.listen else None
        config.node(args.node_id)
    except ClusterConfigError as error:
        print(f"squall: {error}", file=sys.stderr)
        return 2
    print(f"Squall node {args.node_id}: shards {list(config.shards_of(args.node_id))}, data "
          f"{Path(args.data_dir).resolve()}", flush=True)
    try:
        import uvloop
    except ImportError:
        asyncio.run(_run_node(args, config, listen))
    else:
        uvloop.run(_run_node(args, config, listen))
    return 0


async def _run_node(args: argparse.Namespace, config: Any, listen: Any) -> None:
    import signal

    from storage.cluster_node import ClusterNode
    from storage.lifecycle import SweeperSettings

    lifecycle = SweeperSettings(period_seconds=args.lifecycle_period_seconds,
                                day_ms=round(args.lifecycle_day_seconds * 1000))
    node = ClusterNode(config, args.node_id, Path(args.data_dir), listen=listen,
                       raft=args.raft, durable=not args.volatile,
                       write_timeout_ms=args.write_timeout_ms,
                       log_entries_max=args.replication_log_entries_max,
                       lifecycle=lifecycle)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await node.start()
    print(f"ready {node.node_id}", flush=True)
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(node.failed.wait())]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await node.close()
    if node.failure is not None:
        raise SystemExit(f"squall: node stopped: {node.failure}")


def _serve_command(args: argparse.Namespace) -> int:
    access_key, secret_key, is_dev_pair = _credentials(args)
    if is_dev_pair and not _is_loopback(args.host):
        print(
            f"squall: refusing to listen on {args.host} with the development credentials; "
            "set SQUALL_ROOT_USER and SQUALL_ROOT_PASSWORD",
            file=sys.stderr,
        )
        return 2
    tls_problem = _tls_problem(args.tls_cert_file, args.tls_key_file)
    if tls_problem is not None:
        print(f"squall: {tls_problem}", file=sys.stderr)
        return 2
    scheme = "https" if args.tls_cert_file else "http"
    endpoint = f"{scheme}://{args.host}:{args.port}"
    where = (f"cluster: {Path(args.cluster).resolve()}" if args.cluster
             else f"data: {Path(args.data_dir).resolve()}")
    print(f"Squall S3 endpoint: {endpoint}  ({where})", flush=True)
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
    serve.add_argument(
        "--lifecycle-day-seconds",
        type=_positive_seconds,
        default=DAY_SECONDS,
        help="length of a 'day' in lifecycle rules (default 86400); shorter only to "
        "watch expiry in tests, like RGW's rgw_lc_debug_interval",
    )
    serve.add_argument("--log-level", default="info")
    serve.add_argument("--access-log", action="store_true")
    serve.add_argument(
        "--pre-commit-hook",
        default=os.environ.get("SQUALL_PRE_COMMIT_HOOK", DEFAULT_PRE_COMMIT_HOOK),
        help="package.module:Class of the hook that judges writes before they commit "
        "(ML triggers); '' to run without",
    )
    serve.add_argument(
        "--inference-threads",
        type=int,
        default=None,
        metavar="N",
        help="batches of all functions that may run at once, one thread each "
        "(default: the usable cores)",
    )
    serve.add_argument(
        "--tensorflow-device",
        choices=DEVICE_CHOICES,
        default=None,
        help="where tensorflow functions run their models: auto (GPU:0 when TensorFlow "
        "lists a GPU, else the CPU; the default), cpu (GPUs hidden from TensorFlow), gpu "
        "(without one, tensorflow functions refuse to run: docs/triggers.md, 'GPU')",
    )
    serve.add_argument(
        "--gpu-memory-limit-mib",
        type=int,
        default=None,
        metavar="N",
        help="GPU memory TensorFlow may take, per GPU (default: grows as the models need)",
    )
    serve.add_argument(
        "--functions",
        default=None,
        metavar="DIR",
        help="register every function definition DIR/NAME.yaml|.yml|.json at start-up",
    )
    serve.add_argument(
        "--webhook",
        action="append",
        default=[],
        metavar="ID=URL",
        help="a bucket-notification target: events of queue/topic configurations naming "
        "arn:squall:sqs::ID:webhook are POSTed to URL (repeatable)",
    )
    serve.add_argument(
        "--outbox-entries-max",
        type=int,
        default=limits.outbox_entries_max,
        help="undelivered notification events kept; a write that would add more is "
        "refused with SlowDown",
    )
    serve.add_argument(
        "--metrics-public",
        action="store_true",
        help="let anyone read GET /_squall/metrics (default: SigV4 by the root credentials, "
        "or the bearer token of --metrics-token-file)",
    )
    serve.add_argument(
        "--metrics-token-file",
        default=None,
        metavar="FILE",
        help="a file whose content is a bearer token that may read /_squall/metrics "
        "(Prometheus: authorization.credentials_file)",
    )
    serve.add_argument(
        "--tls-cert-file",
        default=os.environ.get("SQUALL_TLS_CERT_FILE") or None,
        metavar="FILE",
        help="serve HTTPS with this PEM certificate (chain) and --tls-key-file "
        "(or SQUALL_TLS_CERT_FILE); requests then count as aws:SecureTransport",
    )
    serve.add_argument(
        "--tls-key-file",
        default=os.environ.get("SQUALL_TLS_KEY_FILE") or None,
        metavar="FILE",
        help="the PEM private key of --tls-cert-file (or SQUALL_TLS_KEY_FILE)",
    )
    serve.add_argument(
        "--encryption-key-file",
        default=os.environ.get("SQUALL_ENCRYPTION_KEY_FILE") or None,
        metavar="FILE",
        help="encrypt object data at rest with the 32-byte key in FILE (raw, hex or "
        "base64: openssl rand -base64 32 > FILE), and honour SSE-S3 requests "
        "(x-amz-server-side-encryption: AES256); a store that holds data opens only with "
        "the key it is encrypted with (or SQUALL_ENCRYPTION_KEY_FILE)",
    )
    serve.add_argument(
        "--allow-sse-c-over-http",
        action="store_true",
        default=os.environ.get("SQUALL_ALLOW_SSE_C_OVER_HTTP", "") == "1",
        help="accept SSE-C requests (x-amz-server-side-encryption-customer-key) over plain "
        "HTTP. AWS refuses them (400 InvalidRequest): a key sent in clear text is a key "
        "given away. Only for a server behind a TLS-terminating proxy that clients reach "
        "over HTTPS, or for tests (or SQUALL_ALLOW_SSE_C_OVER_HTTP=1)",
    )
    serve.add_argument(
        "--users",
        default=None,
        metavar="FILE",
        help="store the users of FILE (a JSON or YAML list of {access_key, secret_key, "
        "display_name}) at start-up, replacing any with the same access key",
    )
    serve.add_argument(
        "--cluster",
        default=None,
        metavar="FILE",
        help="serve a replicated cluster (the nodes of the cluster file, started with "
        "squall node) instead of an embedded store; --data-dir is then unused",
    )
    serve.add_argument(
        "--cluster-retry-ms",
        type=int,
        default=limits.cluster_retry_ms,
        help="with --cluster: how long a request is retried on a shard's new leader during "
        "a failover before the client gets 503",
    )
    serve.set_defaults(run=_serve_command)
    node = commands.add_parser("node", help="run one storage node of a replicated cluster")
    node.add_argument("--node-id", required=True, help="this node's id in the cluster file")
    node.add_argument("--data-dir", required=True)
    node.add_argument("--cluster", required=True, metavar="FILE",
                      help="the cluster file (docs/cluster.md); the cluster secret comes "
                      "from SQUALL_CLUSTER_SECRET or the file's secret_file")
    node.add_argument("--listen", default=None, metavar="HOST:PORT",
                      help="the storage transport's address (default: the cluster file's)")
    node.add_argument("--raft", default=None, metavar="HOST:PORT",
                      help="where membership (Raft) listens (default: the cluster file's "
                      "raft address, which stays the node's identity to the others)")
    node.add_argument("--volatile", action="store_true",
                      help="do not fsync (tests only: a crash may lose acknowledged writes)")
    node.add_argument("--write-timeout-ms", type=int,
                      default=limits.replication_write_timeout_ms,
                      help="a write not acknowledged by every replica by then is answered "
                      "503 SlowDown (it may still be stored)")
    node.add_argument("--replication-log-entries-max", type=int,
                      default=limits.replication_log_entries_max,
                      help="applied entries a shard keeps in its log for replicas that fall "
                      "behind; one further behind gets a snapshot instead")
    node.add_argument("--lifecycle-period-seconds", type=_positive_seconds,
                      default=limits.lifecycle_sweep_period_seconds,
                      help="how often a shard leader applies its buckets' expiry rules")
    node.add_argument("--lifecycle-day-seconds", type=_positive_seconds, default=DAY_SECONDS,
                      help="length of a 'day' in lifecycle rules (tests only; give the "
                      "gateway the same)")
    node.set_defaults(run=_node_command)
    _add_function_commands(commands)
    _add_user_commands(commands)
    _add_store_commands(commands)
    outbox = commands.add_parser(
        "outbox", help="print the notification outbox depth and the webhooks' delivery state"
    )
    outbox.set_defaults(run=_outbox_command)
    metrics = commands.add_parser(
        "metrics", help="print the server's Prometheus metrics (GET /_squall/metrics)")
    metrics.set_defaults(run=_metrics_command)
    for command in (outbox, metrics):
        command.add_argument(
            "--endpoint", default=os.environ.get("SQUALL_ENDPOINT", "http://127.0.0.1:9000"))
        command.add_argument("--region", default=os.environ.get("SQUALL_REGION", "us-east-1"))
    return parser


def _admin_client(args: argparse.Namespace) -> Any:
    from squall.admin_client import AdminClient

    user = os.environ.get("SQUALL_ROOT_USER") or DEV_ROOT_USER
    password = os.environ.get("SQUALL_ROOT_PASSWORD") or DEV_ROOT_PASSWORD
    return AdminClient(args.endpoint, user, password, args.region)


def _outbox_command(args: argparse.Namespace) -> int:
    from squall.admin_client import AdminError

    try:
        status = _admin_client(args).outbox_status()
    except (AdminError, OSError) as error:
        print(f"squall outbox: {error}", file=sys.stderr)
        return 1
    print(json.dumps(status, indent=2, sort_keys=True))
    return 0


def _metrics_command(args: argparse.Namespace) -> int:
    from squall.admin_client import AdminError

    try:
        text = _admin_client(args).metrics()
    except (AdminError, OSError) as error:
        print(f"squall metrics: {error}", file=sys.stderr)
        return 1
    print(text, end="")
    return 0


def _add_function_commands(commands: Any) -> None:
    function = commands.add_parser(
        "function", help="register, list, show and remove pre-commit functions"
    )
    function.add_argument(
        "--endpoint", default=os.environ.get("SQUALL_ENDPOINT", "http://127.0.0.1:9000")
    )
    function.add_argument("--region", default=os.environ.get("SQUALL_REGION", "us-east-1"))
    actions = function.add_subparsers(dest="function_command", required=True)
    put = actions.add_parser("put", help="register (or replace) NAME from FILE (YAML/JSON)")
    put.add_argument("name")
    put.add_argument("file", type=Path)
    actions.add_parser("ls", help="list registered functions")
    show = actions.add_parser("show", help="print a function's stored definition")
    show.add_argument("name")
    rm = actions.add_parser("rm", help="remove a function")
    rm.add_argument("name")
    function.set_defaults(run=_function_command)


def _function_command(args: argparse.Namespace) -> int:
    from squall.admin_client import AdminError

    client = _admin_client(args)
    try:
        if args.function_command == "put":
            result = client.put_function(args.name, args.file.read_bytes())
            print(f"registered {args.name} (version {result['version_id']})")
        elif args.function_command == "ls":
            for entry in client.list_functions():
                target = entry.get("model") or entry.get("entry_point", "")
                print(f"{entry['name']}\t{entry['kind']}\t{target}\t{entry['version_id']}")
        elif args.function_command == "show":
            print(json.dumps(client.get_function(args.name), indent=2, sort_keys=True))
        else:
            client.delete_function(args.name)
            print(f"removed {args.name}")
    except AdminError as error:
        print(f"squall function {args.function_command}: {error.body}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"squall function {args.function_command}: {error}", file=sys.stderr)
        return 1
    return 0


def _add_store_commands(commands: Any) -> None:
    """squall backup and squall verify: on a store's files (or, for a backup, a server)."""
    backup = commands.add_parser(
        "backup", help="copy a store, consistently, while it serves (a backup is a store: "
        "squall serve --data-dir DEST serves it)")
    backup.add_argument("--data-dir", default="./data",
                        help="the store to copy, on this machine (default)")
    backup.add_argument("--endpoint", default=None,
                        help="or: take it from this server (GET /_squall/backup, signed "
                        "with SQUALL_ROOT_USER / SQUALL_ROOT_PASSWORD)")
    backup.add_argument("--shard", type=int, default=0, help="with --endpoint: which shard")
    backup.add_argument("--region", default=os.environ.get("SQUALL_REGION", "us-east-1"))
    backup.add_argument("dest", metavar="DEST",
                        help="a new (or empty) directory for the copy")
    backup.add_argument("--quiet", action="store_true", help="no progress on stderr")
    backup.set_defaults(run=_backup_command)

    check = commands.add_parser(
        "verify", help="check a store's object data against its records (read-only; while "
        "it serves): every chunk there, sizes right, single-part bodies' MD5 = ETag")
    check.add_argument("--data-dir", default="./data")
    check.add_argument("--encryption-key-file",
                       default=os.environ.get("SQUALL_ENCRYPTION_KEY_FILE") or None,
                       metavar="FILE", help="an encrypted store's key (without it: sizes only)")
    check.add_argument("--quiet", action="store_true", help="no progress on stderr")
    check.set_defaults(run=_verify_command)


def _add_user_commands(commands: Any) -> None:
    user = commands.add_parser("user", help="add, list and remove users (root only)")
    user.add_argument(
        "--endpoint", default=os.environ.get("SQUALL_ENDPOINT", "http://127.0.0.1:9000"))
    user.add_argument("--region", default=os.environ.get("SQUALL_REGION", "us-east-1"))
    actions = user.add_subparsers(dest="user_command", required=True)
    put = actions.add_parser("put", help="add (or replace) the user ACCESS_KEY")
    put.add_argument("access_key")
    put.add_argument("--secret-key", required=True)
    put.add_argument("--display-name", default=None)
    actions.add_parser("ls", help="list users (never their secrets)")
    rm = actions.add_parser("rm", help="remove a user: refused from the next request on")
    rm.add_argument("access_key")
    user.set_defaults(run=_user_command)


def _user_command(args: argparse.Namespace) -> int:
    from squall.admin_client import AdminError

    client = _admin_client(args)
    try:
        if args.user_command == "put":
            document = {"secret_key": args.secret_key}
            if args.display_name is not None:
                document["display_name"] = args.display_name
            shown = client.put_user(args.access_key, document)
            print(f"stored {shown['access_key']} (canonical id {shown['canonical_id']})")
        elif args.user_command == "ls":
            for entry in client.list_users():
                print(f"{entry['access_key']}\t{entry['display_name']}\t{entry['canonical_id']}")
        else:
            client.delete_user(args.access_key)
            print(f"removed {args.access_key}")
    except (AdminError, OSError) as error:
        print(f"squall user {args.user_command}: {getattr(error, 'body', error)}",
              file=sys.stderr)
        return 1
    return 0


class _ProgressLine:
    """One line of progress on stderr, rewritten in place; ``end`` closes it (if it was
    shown), so what follows starts on a line of its own."""

    def __init__(self) -> None:
        self._shown = False

    def show(self, text: str) -> None:
        self._shown = True
        print(f"\r{text}", end="", file=sys.stderr, flush=True)

    def end(self) -> None:
        if self._shown:
            print(file=sys.stderr)
            self._shown = False


def _backup_command(args: argparse.Namespace) -> int:
    from squall.admin_client import AdminError
    from storage.engine.backup import BackupError, backup, save

    line = _ProgressLine()

    def progress(done: int, bound: int) -> None:
        share = f" of at most {_size(bound)} ({100 * done // max(bound, 1)} %)" if bound else ""
        line.show(f"copied {_size(done)}{share}")

    dest = Path(args.dest)
    source = args.endpoint or args.data_dir
    try:
        if args.endpoint:  # the size is not known ahead: progress counts bytes
            chunks = _admin_client(args).backup(args.shard)
            summary = save(dest, chunks, 0, None if args.quiet else progress)
        else:
            summary = backup(Path(args.data_dir), dest, None if args.quiet else progress)
    except (BackupError, AdminError, OSError, http.client.HTTPException) as error:
        # HTTPException: the server's stream broke off (IncompleteRead ...), which says
        # little as a string.
        reason = repr(error) if isinstance(error, http.client.HTTPException) else str(error)
        line.end()
        print(f"squall: backup: {reason}", file=sys.stderr)
        return 1
    line.end()
    entries = summary.entries
    print(f"backup of {source} in {dest}: {_size(summary.bytes_written)} in "
          f"{summary.seconds:.1f} s; buckets {entries['buckets']}, versions "
          f"{entries['versions']}, chunks {entries['chunks']}, undelivered events "
          f"{entries['outbox']}")
    if summary.encryption_key_id:
        print(f"its data is encrypted with key id {summary.encryption_key_id}: it opens only "
              "with that key (keep the key, apart from the backup)")
    return 0


def _verify_command(args: argparse.Namespace) -> int:
    from storage.engine.verify import VerifyError, verify

    line = _ProgressLine()

    def progress(versions: int, checked: int) -> None:
        line.show(f"checked {versions} versions, {_size(checked)}")

    try:
        report = verify(Path(args.data_dir), _cipher(args.encryption_key_file),
                        None if args.quiet else progress)
    except VerifyError as error:
        line.end()
        print(f"squall: verify: {error}", file=sys.stderr)
        return 2
    line.end()
    print(f"{args.data_dir}: {report.versions} versions, {_size(report.bytes_checked)} of "
          f"bodies checked, {report.bodies_hashed} MD5s compared with their ETags")
    if report.md5_skipped:
        print(f"MD5s not compared: {report.md5_skipped}")
    if report.customer_key_bodies:
        print(f"{report.customer_key_bodies} SSE-C bodies (a customer's key, not kept by the "
              "store): sizes checked, MD5s not")
    for problem in report.problems[:_PROBLEMS_SHOWN_MAX]:
        print(f"PROBLEM {problem}")
    if len(report.problems) > _PROBLEMS_SHOWN_MAX:
        print(f"... and {len(report.problems) - _PROBLEMS_SHOWN_MAX} more")
    print(f"{len(report.problems)} problem(s)")
    return 1 if report.problems else 0


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    value, unit = count / 1024, "KiB"
    for larger in ("MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, larger
    return f"{value:.1f} {unit}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
