"""Shared by the trigger tests: a live ``squall serve``, boto3 clients, function admin."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from squall.admin_client import AdminClient
from squall.launcher import ServerProcess

ACCESS_KEY = "TRIGGERTESTROOT00000"
SECRET_KEY = "trigger-test-secret-0000000000000000000"
FUNCTION_ARN = "arn:squall:function:{}"


def s3_client(url: str, *, retries: int = 3, verify: str | None = None) -> Any:
    """``verify``: the CA bundle an https endpoint's certificate is checked against."""
    return boto3.client(
        "s3",
        endpoint_url=url,
        verify=verify,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            retries={"total_max_attempts": retries, "mode": "standard"},
            max_pool_connections=32,
        ),
    )


def server(
    tmp_path_factory: pytest.TempPathFactory, *extra_args: str
) -> Iterator[ServerProcess]:
    data_dir = tmp_path_factory.mktemp("triggers-data")
    with ServerProcess(data_dir, access_key=ACCESS_KEY, secret_key=SECRET_KEY,
                       extra_args=("--volatile", *extra_args)) as process:
        yield process


def admin(process: ServerProcess) -> AdminClient:
    return AdminClient(process.url, ACCESS_KEY, SECRET_KEY)


def register(process: ServerProcess, name: str, definition: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = admin(process).put_function(name, json.dumps(definition).encode())
    return result


def bind(s3: Any, bucket: str, *functions: str, prefix: str | None = None) -> None:
    rules = [{"Name": "prefix", "Value": prefix}] if prefix is not None else []
    configurations = []
    for name in functions:
        configuration: dict[str, Any] = {
            "Id": f"bind-{name}",
            "LambdaFunctionArn": FUNCTION_ARN.format(name),
            "Events": ["s3:ObjectCreated:*"],
        }
        if rules:
            configuration["Filter"] = {"Key": {"FilterRules": rules}}
        configurations.append(configuration)
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={"LambdaFunctionConfigurations": configurations},
    )


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of a whole exposition, read with
    Prometheus's own parser (``squall_x_total``'s samples keep their suffix)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def verdict(response: dict[str, Any]) -> dict[str, Any]:
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    parsed: dict[str, Any] = json.loads(headers["x-squall-verdict"])
    return parsed


def keys(s3: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def aws_cli(process: ServerProcess, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The aws cli (v1, installed next to this interpreter) against the server, with a
    private HOME and path-style addressing; the caller checks the exit status."""
    aws = Path(sys.executable).parent / "aws"
    if not aws.exists():
        pytest.skip(f"the aws cli is not installed next to {sys.executable}")
    config = home / "aws-config"
    config.write_text("[default]\ns3 =\n    addressing_style = path\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "AWS_ACCESS_KEY_ID": ACCESS_KEY,
           "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_CONFIG_FILE": str(config), "AWS_EC2_METADATA_DISABLED": "true",
           "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-credentials"),
           "AWS_MAX_ATTEMPTS": "1"}
    if process.tls is not None:  # trust the server's own (self-signed) certificate
        env["AWS_CA_BUNDLE"] = str(process.tls[0])
    return subprocess.run([sys.executable, str(aws), "--endpoint-url", process.url, *args],
                          capture_output=True, text=True, env=env, timeout=120, check=False,
                          cwd=home)


def squall_cli(process: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"SQUALL_ROOT_USER": ACCESS_KEY, "SQUALL_ROOT_PASSWORD": SECRET_KEY,
           "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "squall", "function", "--endpoint", process.url, *args],
        capture_output=True, text=True, env=env, timeout=60, check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
