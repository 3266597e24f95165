"""The Dockerfile cannot be built here (no container engine): its instructions are read
and held to the code and the Helm chart they must agree with."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import yaml

from gateway.router import HEALTH_PATH
from squall.cli import build_parser

REPOSITORY = Path(__file__).resolve().parents[2]


def instructions() -> dict[str, list[str]]:
    """{INSTRUCTION: [arguments of each occurrence]}, continuation lines joined."""
    text = (REPOSITORY / "Dockerfile").read_text().replace("\\\n", " ")
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            instruction, _, arguments = line.strip().partition(" ")
            found.setdefault(instruction.upper(), []).append(arguments.strip())
    return found


def test_the_command_is_squall_serve_on_all_addresses_with_data_in_data() -> None:
    found = instructions()
    entrypoint = json.loads(found["ENTRYPOINT"][-1])
    command = json.loads(found["CMD"][-1])
    assert entrypoint == ["squall"]
    parsed = build_parser().parse_args(command)
    assert (parsed.command, parsed.host, parsed.port, parsed.data_dir) == (
        "serve", "0.0.0.0", 9000, "/data")
    assert found["EXPOSE"] == ["9000"]
    assert found["FROM"][0].startswith("${PYTHON_IMAGE}")
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in (REPOSITORY / "Dockerfile").read_text()


def test_healthcheck_asks_the_health_path() -> None:
    [healthcheck] = instructions()["HEALTHCHECK"]
    assert f"http://127.0.0.1:9000{HEALTH_PATH}" in healthcheck


def test_runs_as_the_user_the_chart_names() -> None:
    [user] = instructions()["USER"]
    uid, _, gid = user.partition(":")
    values = yaml.safe_load((REPOSITORY / "deploy/helm/squall/values.yaml").read_text())
    assert int(uid) != 0
    assert (int(uid), int(gid)) == (values["podSecurityContext"]["runAsUser"],
                                    values["podSecurityContext"]["runAsGroup"])


def test_lmdb_is_built_as_the_makefile_builds_it() -> None:
    flags = re.compile(r'CFLAGS="-DMDB_MAXKEYSIZE=0" .*--no-binary lmdb')
    assert flags.search((REPOSITORY / "Makefile").read_text())
    assert flags.search((REPOSITORY / "Dockerfile").read_text())


def test_the_build_context_holds_every_package() -> None:
    """.dockerignore lets in what `pip install .` needs: pyproject's packages and readme."""
    project = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())
    allowed = {line[1:].rstrip("/") for line in
               (REPOSITORY / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    packages = {name.rstrip("*") for name in
                project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages | {"pyproject.toml", project["project"]["readme"]} <= allowed
    copied = instructions()["COPY"]
    for name in packages:
        assert f"{name} ./{name}" in copied, name
