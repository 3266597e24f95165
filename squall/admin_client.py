"""A tiny SigV4-signing client for Squall's admin API (``squall function ...``).

Uses the gateway's own SigV4 primitives (``gateway.auth.sigv4``) so the CLI needs
nothing beyond what the server has; the signature is the one any S3 client computes.
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

from gateway.auth import sigv4

request_timeout_seconds = 120.0


class AdminError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


def _message(body: str) -> str:
    """The <Message> of an S3 XML error, else the body."""
    start, end = body.find("<Message>"), body.find("</Message>")
    if start >= 0 and end > start:
        return body[start + len("<Message>"):end]
    return body.strip()


class AdminClient:
    def __init__(self, endpoint: str, access_key: str, secret_key: str,
                 region: str = "us-east-1") -> None:
        self.endpoint = endpoint.rstrip("/")
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region

    def _signed_headers(self, method: str, path: str, body: bytes) -> dict[str, str]:
        now = time.gmtime()
        timestamp = time.strftime("%Y%m%dT%H%M%SZ", now)
        date_stamp = timestamp[:8]
        host = urlsplit(self.endpoint).netloc
        payload_hash = hashlib.sha256(body).hexdigest()
        headers = {"host": host, "x-amz-content-sha256": payload_hash, "x-amz-date": timestamp}
        signed = sorted(headers)
        canonical = sigv4.canonical_request(
            method, path.encode(), [], {k: [v] for k, v in headers.items()}, signed,
            payload_hash)
        scope = f"{date_stamp}/{self.region}/{sigv4.SERVICE}/{sigv4.TERMINATOR}"
        signature = sigv4.sign_hex(
            sigv4.derive_signing_key(self.secret_key, date_stamp, self.region),
            sigv4.string_to_sign(timestamp, scope, canonical))
        headers["authorization"] = (
            f"{sigv4.ALGORITHM} Credential={self.access_key}/{scope}, "
            f"SignedHeaders={';'.join(signed)}, Signature={signature}")
        del headers["host"]
        return headers

    def request(self, method: str, path: str, body: bytes = b"") -> Any:
        payload = self.fetch(method, path, body)
        return json.loads(payload) if payload else None

    def fetch(self, method: str, path: str, body: bytes = b"") -> bytes:
        """The response body of a signed request; AdminError for an error status."""
        path = quote(path, safe="/")
        request = urllib.request.Request(
            self.endpoint + path, data=body if method == "PUT" else None, method=method,
            headers=self._signed_headers(method, path, body))
        try:
            with urllib.request.urlopen(request, timeout=request_timeout_seconds) as response:
                payload = response.read()
        except urllib.error.HTTPError as error:
            raise AdminError(error.code, _message(error.read().decode(errors="replace"))) \
                from None
        return payload

    def stream(self, path: str, chunk_bytes: int = 1024 * 1024) -> Iterator[bytes]:
        """The body of a signed GET, chunk by chunk (a backup: no memory bound);
        AdminError for an error status, before the first chunk."""
        path = quote(path, safe="/")
        request = urllib.request.Request(self.endpoint + path, method="GET",
                                         headers=self._signed_headers("GET", path, b""))
        try:
            response = urllib.request.urlopen(request, timeout=request_timeout_seconds)
        except urllib.error.HTTPError as error:
            raise AdminError(error.code, _message(error.read().decode(errors="replace"))) \
                from None
        with response:
            while chunk := response.read(chunk_bytes):
                yield chunk

    def backup(self, shard: int = 0) -> Iterator[bytes]:
        return self.stream(f"/_squall/backup/{shard}")

    def put_function(self, name: str, document: bytes) -> Any:
        return self.request("PUT", f"/_squall/functions/{name}", document)

    def get_function(self, name: str) -> Any:
        return self.request("GET", f"/_squall/functions/{name}")

    def list_functions(self) -> Any:
        return self.request("GET", "/_squall/functions")["functions"]

    def delete_function(self, name: str) -> None:
        self.request("DELETE", f"/_squall/functions/{name}")

    def put_user(self, access_key: str, document: dict[str, str]) -> Any:
        return self.request("PUT", f"/_squall/users/{access_key}",
                            json.dumps(document).encode())

    def list_users(self) -> Any:
        return self.request("GET", "/_squall/users")["users"]

    def delete_user(self, access_key: str) -> None:
        self.request("DELETE", f"/_squall/users/{access_key}")

    def outbox_status(self) -> Any:
        """GET /_squall/outbox: the notification outbox depth and the webhooks' state."""
        return self.request("GET", "/_squall/outbox")

    def metrics(self) -> str:
        """GET /_squall/metrics: Prometheus's text format."""
        return self.fetch("GET", "/_squall/metrics").decode()
