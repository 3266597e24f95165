"""PutBucketNotificationConfiguration / GetBucketNotificationConfiguration.

S3's notification XML is parsed into ``api.NotificationConfiguration`` and stored as the
bucket's 'notification' document; GET renders it back as S3 does. A function
configuration (``CloudFunctionConfiguration``, which is what boto3 sends for
``LambdaFunctionConfigurations``; ``LambdaFunctionConfiguration`` is accepted too) whose
ARN is ``arn:squall:function:NAME`` binds a registered function as a PRE-COMMIT trigger
of the bucket's object-created events. A queue or topic configuration names a webhook
given at start-up (``squall serve --webhook ID=URL``) by ``arn:squall:sqs::ID:webhook``
(or ``arn:squall:sns::ID:webhook``); its events are delivered AFTER the commit, at least
once, from the durable outbox (docs/notifications.md). Any other destination is refused
with 400 InvalidArgument, as AWS refuses a destination it cannot validate.

As AWS, a configuration put sends ``s3:TestEvent`` to each of its queue/topic
destinations: storage writes one per destination to the outbox in the transaction that
stores the configuration (the request's origin asks for them). A request with
``x-amz-skip-destination-validation: true`` gets none, as on AWS.
"""

from __future__ import annotations

import uuid
from xml.etree.ElementTree import Element

from starlette.responses import Response

from gateway.errors import S3Error, invalid_argument, malformed_xml
from gateway.s3.common import RequestContext
from gateway.xml import Node, child_text, children, local_name, parse, render
from storage import api

FUNCTION_ARN_PREFIX = "arn:squall:function:"
CONFIG_NAME = api.NOTIFICATION_CONFIG
SKIP_DESTINATION_VALIDATION_HEADER = "x-amz-skip-destination-validation"

# Events S3 documents for bucket notifications.
KNOWN_EVENTS = frozenset(
    {
        "s3:ReducedRedundancyLostObject",
        "s3:ObjectCreated:*", *api.OBJECT_CREATED_EVENTS,
        "s3:ObjectRemoved:*", "s3:ObjectRemoved:Delete", "s3:ObjectRemoved:DeleteMarkerCreated",
        "s3:ObjectRestore:*", "s3:ObjectRestore:Post", "s3:ObjectRestore:Completed",
        "s3:ObjectRestore:Delete",
        "s3:Replication:*", "s3:Replication:OperationFailedReplication",
        "s3:Replication:OperationNotTracked", "s3:Replication:OperationMissedThreshold",
        "s3:Replication:OperationReplicatedAfterThreshold",
        "s3:LifecycleExpiration:*", "s3:LifecycleExpiration:Delete",
        "s3:LifecycleExpiration:DeleteMarkerCreated", "s3:LifecycleTransition",
        "s3:IntelligentTiering",
        "s3:ObjectTagging:*", "s3:ObjectTagging:Put", "s3:ObjectTagging:Delete",
        "s3:ObjectAcl:Put",
    }
)  # fmt: skip
FUNCTION_EVENTS = frozenset({"s3:ObjectCreated:*", *api.OBJECT_CREATED_EVENTS})

# (kind, accepted element names, ARN element names, rendered element, rendered ARN element)
_KINDS = (
    ("topic", ("TopicConfiguration",), ("Topic",), "TopicConfiguration", "Topic"),
    ("queue", ("QueueConfiguration",), ("Queue",), "QueueConfiguration", "Queue"),
    (
        "function",
        ("CloudFunctionConfiguration", "LambdaFunctionConfiguration"),
        ("CloudFunction", "LambdaFunctionArn", "Function"),
        "CloudFunctionConfiguration",
        "CloudFunction",
    ),
)


def function_name(arn: str) -> str | None:
    return arn[len(FUNCTION_ARN_PREFIX):] if arn.startswith(FUNCTION_ARN_PREFIX) else None


def _filter_rules(element: Element) -> tuple[tuple[str, str], ...]:
    rules: list[tuple[str, str]] = []
    for filter_element in children(element, "Filter"):
        for s3_key in children(filter_element, "S3Key"):
            for rule in children(s3_key, "FilterRule"):
                name, value = child_text(rule, "Name"), child_text(rule, "Value")
                if name is None or value is None:
                    raise malformed_xml()
                if name.lower() not in ("prefix", "suffix"):
                    raise invalid_argument("filter rule name must be either prefix or suffix",
                                           "FilterRule Name", name)
                rules.append((name, value))
    for kind in ("prefix", "suffix"):
        if sum(1 for name, _ in rules if name.lower() == kind) > 1:
            raise invalid_argument(f"Cannot specify more than one {kind} rule in a filter.",
                                   "FilterRule Name", kind)
    return tuple(rules)


def _rule(element: Element, kind: str, arn_names: tuple[str, ...]) -> api.NotificationRule:
    arn = next((child_text(element, n) for n in arn_names if child_text(element, n)), None)
    if not arn:
        raise invalid_argument(f"A {local_name(element)} needs a destination ARN.",
                               local_name(element))
    events = tuple((child.text or "").strip() for child in children(element, "Event"))
    if not events:
        raise invalid_argument("A notification configuration needs at least one Event.",
                               local_name(element))
    for event in events:
        if event not in KNOWN_EVENTS:
            raise invalid_argument("The event is not supported for notifications", "Event",
                                   event)
        if kind == "function" and event not in FUNCTION_EVENTS:
            raise invalid_argument(
                "Squall functions run before an object is committed: only "
                "s3:ObjectCreated:* events (Put, Post, Copy, CompleteMultipartUpload) can "
                "bind them", "Event", event)
    rule_id = child_text(element, "Id") or str(uuid.uuid4())
    return api.NotificationRule(kind, rule_id, arn.strip(), events, _filter_rules(element))


def parse_configuration(body: bytes) -> api.NotificationConfiguration:
    root = parse(body)
    if local_name(root) != "NotificationConfiguration":
        raise malformed_xml()
    rules: list[api.NotificationRule] = []
    for child in root:
        name = local_name(child)
        for kind, element_names, arn_names, _, _ in _KINDS:
            if name in element_names:
                rules.append(_rule(child, kind, arn_names))
                break
        else:
            if name != "EventBridgeConfiguration":
                raise malformed_xml()
    if len({rule.id for rule in rules}) != len(rules):
        raise invalid_argument("Configurations must have unique ids.", "Id")
    event_bridge = bool(children(root, "EventBridgeConfiguration"))
    return api.NotificationConfiguration(tuple(rules), event_bridge)


def render_configuration(configuration: api.NotificationConfiguration) -> bytes:
    body: list[Node] = []
    for kind, _, _, element_name, arn_name in _KINDS:
        for rule in (r for r in configuration.rules if r.kind == kind):
            fields: list[Node] = [("Id", rule.id), (arn_name, rule.arn)]
            fields += [("Event", event) for event in rule.events]
            if rule.filter_rules:
                filter_rules: list[Node] = [
                    ("FilterRule", [("Name", name), ("Value", value)])
                    for name, value in rule.filter_rules
                ]
                fields.append(("Filter", [("S3Key", filter_rules)]))
            body.append((element_name, fields))
    if configuration.event_bridge:
        body.append(("EventBridgeConfiguration", []))
    return render("NotificationConfiguration", body)


CLUSTER_REFUSAL = ("A replicated cluster runs no pre-commit functions and delivers no "
                   "bucket notifications yet (docs/cluster.md).")


def _check_webhooks(ctx: RequestContext, configuration: api.NotificationConfiguration) -> None:
    for rule in configuration.rules:
        if rule.kind == "function":
            continue
        if ctx.config.cluster:
            raise S3Error("NotImplemented", CLUSTER_REFUSAL, 501)
        target = api.webhook_target_id(rule.arn)
        if target is None:
            raise invalid_argument(
                "Unable to validate the following destination configurations: a queue or "
                "topic ARN must be arn:squall:sqs::ID:webhook (or arn:squall:sns::ID:webhook) "
                "naming a webhook given to squall serve --webhook ID=URL", rule.arn,
                "Invalid ARN")
        if target not in ctx.config.webhook_targets:
            known = ", ".join(sorted(ctx.config.webhook_targets)) or "none"
            raise invalid_argument(
                "Unable to validate the following destination configurations: no webhook "
                f"{target!r} is configured on this server (configured: {known})", rule.arn,
                "Not found")


async def _check_functions(ctx: RequestContext, configuration: api.NotificationConfiguration) -> None:
    for rule in configuration.rules:
        if rule.kind != "function":
            continue
        name = function_name(rule.arn)
        if name is None:
            raise invalid_argument(
                "Unable to validate the following destination configurations: a function "
                f"ARN must be {FUNCTION_ARN_PREFIX}NAME", rule.arn, "Invalid ARN")
        if ctx.config.cluster:
            raise S3Error("NotImplemented", CLUSTER_REFUSAL, 501)
        if ctx.config.functions is None:
            raise S3Error("NotImplemented", "Functions are not enabled on this server "
                          "(start it with a pre-commit hook).", 501)
        try:
            await ctx.config.functions.get_function(name)
        except api.NoSuchKey:
            raise invalid_argument(
                "Unable to validate the following destination configurations: function "
                f"{name!r} is not registered (squall function put {name} FILE)",
                rule.arn, "Not found") from None


async def put_bucket_notification(ctx: RequestContext) -> Response:
    await ctx.storage.get_bucket(ctx.bucket)
    configuration = parse_configuration(
        await ctx.body.read_all(api.limits.request_xml_body_bytes_max))
    _check_webhooks(ctx, configuration)
    await _check_functions(ctx, configuration)
    document = configuration.to_json() if configuration.rules or configuration.event_bridge \
        else None
    skip_test = ctx.headers.get(SKIP_DESTINATION_VALIDATION_HEADER, "").lower() == "true"
    await ctx.storage.put_bucket_config(ctx.bucket, CONFIG_NAME, document,
                                        origin=None if skip_test else ctx.event_origin())
    return Response(status_code=200)


async def get_bucket_notification(ctx: RequestContext) -> Response:
    document = await ctx.storage.get_bucket_config(ctx.bucket, CONFIG_NAME)
    configuration = (api.NotificationConfiguration() if document is None
                     else api.NotificationConfiguration.from_json(document))
    return Response(render_configuration(configuration), media_type="application/xml")
