"""CORS: Put/Get/DeleteBucketCors, the preflight (OPTIONS), and CORS headers on responses.

Rules and theory of operation (AWS's "Cross-origin resource sharing" user guide):

* A configuration is 1..100 ``CORSRule``s; a rule names AllowedOrigin(s) and
  AllowedMethod(s) (GET, PUT, HEAD, POST, DELETE), optionally AllowedHeader(s),
  ExposeHeader(s), MaxAgeSeconds and an ID. An origin or header pattern may hold at most
  one '*' wildcard. The gateway validates it, stores it re-rendered (canonical XML)
  under the bucket config 'cors' and serves that to GetBucketCors.
* The first rule whose origin pattern matches the Origin, whose methods contain the
  (requested) method and, for a preflight, whose header patterns match every header of
  Access-Control-Request-Headers (case-insensitively) decides.
* A preflight (``OPTIONS``) is answered from the rules without authentication: browsers
  never sign it. No Origin or no Access-Control-Request-Method: 400. No configuration or
  no matching rule: 403 CORSResponse.
* Any other request to a bucket that carries an Origin header gets the matching rule's
  headers added to its response (success or error), after one config read: the stored
  document's bytes are read every time, so a changed configuration applies at once, and
  the parse is cached by those bytes (``ParsedCorsCache``), which needs no invalidation.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from dataclasses import dataclass
from xml.etree.ElementTree import Element

from starlette.datastructures import Headers
from starlette.responses import Response

from gateway.errors import S3Error, malformed_xml
from gateway.router import Endpoint
from gateway.s3.common import RequestContext
from gateway.s3.documents import delete_documents, read_document, stored_document
from gateway.xml import Node, local_name, parse, render
from storage import api

CORS_CONFIG = "cors"
CORS_METHODS = ("GET", "PUT", "HEAD", "POST", "DELETE")
RULE_ID_CHARS_MAX = 255
VARY = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
_RULE_FIELDS = ("AllowedHeader", "AllowedMethod", "AllowedOrigin", "ExposeHeader", "ID",
                "MaxAgeSeconds")


@dataclass(frozen=True, slots=True)
class CorsRule:
    allowed_origins: tuple[str, ...]
    allowed_methods: tuple[str, ...]
    allowed_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age_seconds: int | None = None
    rule_id: str | None = None


# --- parse, validate, render -------------------------------------------------------------


def _invalid_request(message: str) -> S3Error:
    return S3Error("InvalidRequest", message, 400)


def _check_wildcards(field: str, values: tuple[str, ...]) -> None:
    for value in values:
        if value.count("*") > 1:
            raise _invalid_request(f'{field} "{value}" can not have more than one wildcard.')


def _parse_rule(element: Element) -> CorsRule:
    values: dict[str, list[str]] = {name: [] for name in _RULE_FIELDS}
    for child in element:
        name = local_name(child)
        if name not in values or len(child):
            raise malformed_xml()
        values[name].append((child.text or "").strip())
    methods, origins = tuple(values["AllowedMethod"]), tuple(values["AllowedOrigin"])
    if not methods or not origins or len(values["ID"]) > 1 or len(values["MaxAgeSeconds"]) > 1:
        raise malformed_xml()
    for method in methods:
        if method not in CORS_METHODS:
            raise _invalid_request(
                f"Found unsupported HTTP method in CORS config. Unsupported method is {method}"
            )
    headers = tuple(values["AllowedHeader"])
    _check_wildcards("AllowedOrigin", origins)
    _check_wildcards("AllowedHeader", headers)
    rule_id = values["ID"][0] if values["ID"] else None
    if rule_id is not None and len(rule_id) > RULE_ID_CHARS_MAX:
        raise S3Error("InvalidArgument", "ID length should not exceed allowed limit of 255",
                      400)
    max_age = None
    if values["MaxAgeSeconds"]:
        text = values["MaxAgeSeconds"][0]
        if not text.lstrip("-").isdigit():
            raise malformed_xml()
        max_age = int(text)
    return CorsRule(origins, methods, headers, tuple(values["ExposeHeader"]), max_age, rule_id)


def parse_cors(body: bytes) -> tuple[CorsRule, ...]:
    """A CORSConfiguration body, validated as AWS does; S3Error when it is not valid."""
    root = parse(body)
    if local_name(root) != "CORSConfiguration":
        raise malformed_xml()
    rule_elements = list(root)
    if not rule_elements or any(local_name(child) != "CORSRule" for child in rule_elements):
        raise malformed_xml()
    if len(rule_elements) > api.limits.cors_rules_max:
        raise _invalid_request(
            "The number of CORS rules should not exceed allowed limit of "
            f"{api.limits.cors_rules_max} rules."
        )
    return tuple(_parse_rule(element) for element in rule_elements)


def render_cors(rules: tuple[CorsRule, ...]) -> bytes:
    nodes: list[Node] = []
    for rule in rules:
        fields: list[Node] = [("AllowedHeader", header) for header in rule.allowed_headers]
        fields += [("AllowedMethod", method) for method in rule.allowed_methods]
        fields += [("AllowedOrigin", origin) for origin in rule.allowed_origins]
        fields += [("ExposeHeader", header) for header in rule.expose_headers]
        fields.append(("ID", rule.rule_id))
        max_age = rule.max_age_seconds
        fields.append(("MaxAgeSeconds", None if max_age is None else str(max_age)))
        nodes.append(("CORSRule", fields))
    return render("CORSConfiguration", nodes)


# --- matching ------------------------------------------------------------------------------


def wildcard_match(pattern: str, value: str) -> bool:
    """``pattern`` with at most one '*' (any run of characters, maybe empty)."""
    head, star, tail = pattern.partition("*")
    if not star:
        return value == pattern
    return len(value) >= len(head) + len(tail) and value.startswith(head) and (
        value.endswith(tail)
    )


def _headers_allowed(rule: CorsRule, requested: list[str]) -> bool:
    patterns = [pattern.lower() for pattern in rule.allowed_headers]
    return all(any(wildcard_match(p, header.lower()) for p in patterns) for header in requested)


def matching_rule(
    rules: tuple[CorsRule, ...], origin: str, method: str, requested_headers: Sequence[str] = ()
) -> CorsRule | None:
    """The first rule allowing this origin, method and (preflight) request headers."""
    for rule in rules:
        if method not in rule.allowed_methods:
            continue
        if not any(wildcard_match(pattern, origin) for pattern in rule.allowed_origins):
            continue
        if _headers_allowed(rule, list(requested_headers)):
            return rule
    return None


def _origin_headers(rule: CorsRule, origin: str) -> dict[str, str]:
    if "*" in rule.allowed_origins:
        headers = {"Access-Control-Allow-Origin": "*"}
    else:
        headers = {"Access-Control-Allow-Origin": origin,
                   "Access-Control-Allow-Credentials": "true"}
    headers["Access-Control-Allow-Methods"] = ", ".join(rule.allowed_methods)
    if rule.expose_headers:
        headers["Access-Control-Expose-Headers"] = ", ".join(rule.expose_headers)
    if rule.max_age_seconds is not None:
        headers["Access-Control-Max-Age"] = str(rule.max_age_seconds)
    headers["Vary"] = VARY
    return headers


def split_header_list(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


# --- the per-bucket rules, parsed once per document -------------------------------------


class ParsedCorsCache:
    """Parsed configurations keyed by their stored bytes (least recently used goes)."""

    def __init__(self, entries_max: int = api.limits.cors_parsed_configs_cached_max) -> None:
        assert entries_max > 0
        self._entries_max = entries_max
        self._entries: collections.OrderedDict[bytes, tuple[CorsRule, ...]] = (
            collections.OrderedDict()
        )

    def rules(self, document: bytes) -> tuple[CorsRule, ...]:
        rules = self._entries.get(document)
        if rules is not None:
            self._entries.move_to_end(document)
            return rules
        rules = parse_cors(document)  # stored after validation: parses, or it is a bug
        self._entries[document] = rules
        if len(self._entries) > self._entries_max:
            self._entries.popitem(last=False)
        return rules


async def bucket_rules(
    storage: api.StorageClient, cache: ParsedCorsCache, bucket: str
) -> tuple[CorsRule, ...] | None:
    """The bucket's CORS rules; None when it has none (or does not exist)."""
    try:
        document = await storage.get_bucket_config(bucket, CORS_CONFIG)
    except (api.NoSuchBucket, api.InvalidArgument):
        return None
    return None if document is None else cache.rules(document)


async def response_headers(
    storage: api.StorageClient, cache: ParsedCorsCache, bucket: str, origin: str, method: str
) -> dict[str, str]:
    """The CORS headers an ordinary request with an Origin header gets (maybe none)."""
    rules = await bucket_rules(storage, cache, bucket)
    rule = None if rules is None else matching_rule(rules, origin, method)
    return {} if rule is None else _origin_headers(rule, origin)


def _cors_forbidden(message: str, method: str) -> S3Error:
    return S3Error("CORSResponse", message, 403, Method=method, ResourceType="OBJECT")


async def preflight(
    storage: api.StorageClient, cache: ParsedCorsCache, endpoint: Endpoint, headers: Headers
) -> Response:
    """OPTIONS: answered from the bucket's rules, without authentication."""
    assert endpoint.bucket is not None
    origin = headers.get("origin")
    method = headers.get("access-control-request-method")
    if not origin:
        raise S3Error("BadRequest", "Insufficient information. Origin request header needed.",
                      400)
    if not method:
        raise S3Error("BadRequest", "Invalid Access-Control-Request-Method: null", 400)
    await storage.get_bucket(endpoint.bucket)  # NoSuchBucket is 404, as on AWS
    rules = await bucket_rules(storage, cache, endpoint.bucket)
    if rules is None:
        raise _cors_forbidden("CORS is not enabled for this bucket.", method)
    requested = split_header_list(headers.get("access-control-request-headers"))
    rule = matching_rule(rules, origin, method, requested)
    if rule is None:
        raise _cors_forbidden(
            "This CORS request is not allowed. This is usually because the evalution of "
            "Origin, request method / Access-Control-Request-Method or "
            "Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
            method,
        )
    answer = _origin_headers(rule, origin)
    if requested:
        answer["Access-Control-Allow-Headers"] = ", ".join(h.lower() for h in requested)
    return Response(status_code=200, headers=answer)


# --- the bucket operations ----------------------------------------------------------------


async def put_bucket_cors(ctx: RequestContext) -> Response:
    body = await read_document(ctx, api.limits.cors_config_bytes_max, integrity_required=True)
    rules = parse_cors(body)
    await ctx.storage.put_bucket_config(ctx.bucket, CORS_CONFIG, render_cors(rules))
    return Response(status_code=200)


async def get_bucket_cors(ctx: RequestContext) -> Response:
    return await stored_document(ctx, CORS_CONFIG, missing_code="NoSuchCORSConfiguration",
                                 missing_message="The CORS configuration does not exist")


async def delete_bucket_cors(ctx: RequestContext) -> Response:
    return await delete_documents(ctx, CORS_CONFIG)
