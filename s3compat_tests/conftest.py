"""Fixtures: the endpoint under test, clients, and one fresh bucket per test.

With S3COMPAT_ENDPOINT set, the suite judges that endpoint (moto, Ceph RGW, AWS itself).
Without it, a session fixture starts `python -m squall serve` on a free port with a
temporary data directory and stops it at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from botocore import UNSIGNED

from s3compat_tests.support import (
    Endpoint,
    create_bucket,
    empty_and_delete_bucket,
    make_client,
    request_timeout_seconds,
    unique_bucket_name,
)
from squall.admin_client import AdminClient
from squall.launcher import ServerProcess

squall_root_user = "S3COMPATROOTUSER0000"
squall_root_password = "s3compat-root-secret-0000000000000000000"
# The second user ("alt" in ceph/s3-tests' terms), registered through the admin API.
squall_alt_user = "S3COMPATALTUSER00000"
squall_alt_password = "s3compat-alt-secret-00000000000000000000"


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory) -> Iterator[Endpoint]:
    region = os.environ.get("S3COMPAT_REGION", "us-east-1")
    vhost_domain = os.environ.get("S3COMPAT_VHOST_DOMAIN", "localhost")
    url = os.environ.get("S3COMPAT_ENDPOINT")
    if url:
        yield Endpoint(
            url=url.rstrip("/"),
            access_key=os.environ["S3COMPAT_ACCESS_KEY"],
            secret_key=os.environ["S3COMPAT_SECRET_KEY"],
            region=region,
            vhost_domain=vhost_domain,
            alt_access_key=os.environ.get("S3COMPAT_ALT_ACCESS_KEY", ""),
            alt_secret_key=os.environ.get("S3COMPAT_ALT_SECRET_KEY", ""),
            sse_c_over_http=os.environ.get("S3COMPAT_SSE_C_OVER_HTTP", "") == "1",
        )
        return
    key_file = tmp_path_factory.mktemp("squall-key") / "squall.key"
    key_file.write_bytes(os.urandom(32))
    yield from _squall_endpoint(tmp_path_factory.mktemp("squall-data"), region, vhost_domain,
                                key_file)


def _squall_endpoint(data_dir: Path, region: str, vhost_domain: str,
                     key_file: Path) -> Iterator[Endpoint]:
    # Squall's own launcher (squall/launcher.py): a child process on a free port, its
    # output in a file (never a pipe that could fill up), SIGTERM at the end. Its store
    # encrypts at rest, as AWS encrypts every new object (SSE-S3): every test of the
    # suite goes through the encrypted data path (docs/encryption.md). It speaks plain
    # HTTP, so it is told to take SSE-C keys there (test_sse_c.py), as behind a TLS proxy.
    server = ServerProcess(data_dir, access_key=squall_root_user,
                           secret_key=squall_root_password,
                           extra_args=("--encryption-key-file", str(key_file),
                                       "--allow-sse-c-over-http"))
    try:
        server.start()
    except RuntimeError as error:
        server.close()
        pytest.fail(str(error))
    try:
        AdminClient(server.url, squall_root_user, squall_root_password, region).put_user(
            squall_alt_user, {"secret_key": squall_alt_password, "display_name": "alt"})
        yield Endpoint(
            url=server.url,
            access_key=squall_root_user,
            secret_key=squall_root_password,
            region=region,
            vhost_domain=vhost_domain,
            alt_access_key=squall_alt_user,
            alt_secret_key=squall_alt_password,
            sse_c_over_http=True,
        )
    finally:
        server.close()


@pytest.fixture(scope="session")
def s3(s3_endpoint: Endpoint):
    """The default client: path-style, SigV4, boto3's default checksum behaviour."""
    client = make_client(s3_endpoint)
    yield client
    client.close()


@pytest.fixture(scope="session")
def alt(s3_endpoint: Endpoint):
    """A client of the second user (no special rights anywhere); skips without one."""
    if not s3_endpoint.alt_access_key:
        pytest.skip("no second user: set S3COMPAT_ALT_ACCESS_KEY / S3COMPAT_ALT_SECRET_KEY")
    client = make_client(s3_endpoint, access_key=s3_endpoint.alt_access_key,
                         secret_key=s3_endpoint.alt_secret_key)
    yield client
    client.close()


@pytest.fixture(scope="session")
def anonymous(s3_endpoint: Endpoint):
    """A client that signs nothing (botocore's UNSIGNED), as a browser or curl."""
    client = make_client(s3_endpoint, signature_version=UNSIGNED)
    yield client
    client.close()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=request_timeout_seconds) as client:
        yield client


@pytest.fixture
def make_bucket(s3, s3_endpoint: Endpoint) -> Iterator[Callable[[], str]]:
    """Create as many fresh buckets as a test needs; all are emptied and deleted after."""
    created: list[str] = []

    def make(tag: str = "") -> str:
        name = unique_bucket_name(tag)
        create_bucket(s3, s3_endpoint, name)
        created.append(name)
        return name

    yield make
    for name in created:
        empty_and_delete_bucket(s3, name)


@pytest.fixture
def bucket(make_bucket) -> str:
    return make_bucket()


# ---- command-line clients (aws cli v1, s3cmd) -----------------------------------------
#
# Both run with a temporary HOME and generated config files only, so nothing from the
# developer's ~/.aws or ~/.s3cfg leaks in. Each fixture is a function that runs the tool
# with its arguments and asserts exit status 0. Tests that use them are marked `cli`.

cli_timeout_seconds = 60
venv_bin = Path(sys.executable).parent


def _tool(name: str) -> Path:
    path = venv_bin / name
    if not path.exists():
        pytest.skip(f"{name} is not installed next to {sys.executable}")
    return path


def _run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(
        command,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=cli_timeout_seconds,
        check=False,
    )
    assert result.returncode == 0, (
        f"{' '.join(command[1:4])}... exited {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result


@pytest.fixture
def aws(s3_endpoint: Endpoint, tmp_path: Path):
    aws_path = _tool("aws")
    home = tmp_path / "home"
    home.mkdir()
    config = home / "aws-config"
    config.write_text("[default]\ns3 =\n    addressing_style = path\n")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "AWS_ACCESS_KEY_ID": s3_endpoint.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_endpoint.secret_key,
        "AWS_DEFAULT_REGION": s3_endpoint.region,
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_MAX_ATTEMPTS": "1",
    }

    def run(*arguments: str) -> subprocess.CompletedProcess:
        command = [sys.executable, str(aws_path), "--endpoint-url", s3_endpoint.url, *arguments]
        return _run(command, env, tmp_path)

    return run


@pytest.fixture
def s3cmd(s3_endpoint: Endpoint, tmp_path: Path):
    s3cmd_path = _tool("s3cmd")
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    config = home / "s3cfg"
    config.write_text(
        "[default]\n"
        f"access_key = {s3_endpoint.access_key}\n"
        f"secret_key = {s3_endpoint.secret_key}\n"
        f"host_base = {s3_endpoint.netloc}\n"
        f"host_bucket = {s3_endpoint.netloc}\n"  # no %(bucket)s: path-style
        f"bucket_location = {s3_endpoint.region}\n"
        "use_https = False\n"
        "signature_v2 = False\n"
        "check_ssl_certificate = False\n"
        "guess_mime_type = False\n"
        "progress_meter = False\n"
    )
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}

    def run(*arguments: str) -> subprocess.CompletedProcess:
        command = [sys.executable, str(s3cmd_path), "-c", str(config), *arguments]
        return _run(command, env, tmp_path)

    return run
