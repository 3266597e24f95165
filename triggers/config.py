"""Function definitions: parsed from JSON or YAML, validated, normalised.

Rules:

* Pure: no store access, no TensorFlow. ``parse_definition`` turns a document into a
  ``FunctionDefinition`` or raises ``InvalidArgument`` whose message says which field is
  wrong and what would be right (``actions[2].route: unknown field {lable} ...``).
* A definition round-trips through ``to_document`` (the canonical JSON stored in the
  registry), so what ``squall function show`` prints is what runs.
* Every knob is clamped to ``storage.api.limits``.

A definition::

    kind: tensorflow                  # or: python
    model: s3://models/shapes.keras   # the latest version, or ...?versionId=V to pin one
                                      # (.keras, or a SavedModel .tar/.tar.gz/.zip archive)
    runtime: litert                   # or tensorflow (the default)
    litert_threads: 2                 # LiteRT interpreter threads (runtime: litert only)
    input: {format: image, size: [8, 8], channels: 3, scale: 0.00392156862745098}
    labels: [red, green, blue]        # or s3://models/labels.txt (one per line)
    top_k: 3
    batching: {max_batch_size: 8, max_queue_delay_ms: 2, queue_length_max: 64,
               max_concurrent_batches: 2}
    on_error: reject                  # a body the function cannot judge: reject | store
    actions:                          # in order; reject/discard stop the list
      - annotate: true                # squall-* metadata and tags; or metadata | tags | false
      - when: {label: [red], score_min: 0.5}
        route: "sorted/{label}/{key}"          # or {bucket: other, key: "..."}
      - when: {label: [blue]}
        reject: "blue objects are not accepted"
      - when: {label: [green]}
        discard: "counted, not kept"
      - when: {score_max: 0.4}
        chain: second-opinion               # or {red: fn-a, green: fn-b}: label -> function

    kind: python
    entry_point: triggers.examples:size_class   # module:callable, imported on registration
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from storage.api import InvalidArgument, limits

KINDS = ("tensorflow", "python")
RUNTIMES = ("tensorflow", "litert")
ACTIONS = ("annotate", "route", "reject", "discard", "chain")
# Where ``annotate`` stores the judgement: user metadata (squall-*) and object tags.
ANNOTATE_TARGETS = ("metadata", "tags")
INPUT_FORMATS = ("image", "npy")
ON_ERROR = ("reject", "store")
TEMPLATE_FIELDS = frozenset({"label", "key", "bucket", "score", "function", "basename"})
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
S3_URI = re.compile(r"^s3://(?P<bucket>[^/]+)/(?P<key>[^?]+)(\?versionId=(?P<version>.+))?$")


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """An object in the store: the latest version of bucket/key, or a pinned one."""

    bucket: str
    key: str
    version_id: str | None = None

    def uri(self) -> str:
        pin = f"?versionId={self.version_id}" if self.version_id else ""
        return f"s3://{self.bucket}/{self.key}{pin}"


@dataclass(frozen=True, slots=True)
class InputSpec:
    format: str = "image"
    size: tuple[int, int] | None = None  # (height, width); None: the model's input shape
    channels: int | None = None  # None: the model's
    scale: float = 1 / 255
    offset: float = 0.0


@dataclass(frozen=True, slots=True)
class Batching:
    max_batch_size: int = 8
    max_queue_delay_ms: float = 2.0
    queue_length_max: int = 256
    # Batches of this function that may run at once (on the process's inference pool,
    # which also bounds all functions together): see docs/triggers.md for the measurement
    # behind the default.
    max_concurrent_batches: int = 2


@dataclass(frozen=True, slots=True)
class Condition:
    labels: tuple[str, ...] | None = None  # None: any label
    score_min: float | None = None
    score_max: float | None = None

    def holds(self, label: str, score: float | None) -> bool:
        if self.labels is not None and label not in self.labels:
            return False
        if self.score_min is not None and (score is None or score < self.score_min):
            return False
        return not (self.score_max is not None and (score is None or score > self.score_max))


@dataclass(frozen=True, slots=True)
class Action:
    """One entry of ``actions``: what to do when ``when`` holds."""

    kind: str  # one of ACTIONS
    when: Condition = field(default_factory=Condition)
    annotate: tuple[str, ...] = ANNOTATE_TARGETS  # some of ANNOTATE_TARGETS
    route_bucket: str | None = None  # template; None: the written bucket
    route_key: str | None = None  # template
    reason: str = ""  # reject / discard
    chain: Mapping[str, str] | str | None = None  # function, or label -> function


@dataclass(frozen=True, slots=True)
class FunctionDefinition:
    name: str
    kind: str
    model: ObjectRef | None = None
    entry_point: str | None = None
    input: InputSpec = field(default_factory=InputSpec)
    labels: tuple[str, ...] | ObjectRef | None = None
    top_k: int = 1
    batching: Batching = field(default_factory=Batching)
    on_error: str = "reject"
    actions: tuple[Action, ...] = ()
    description: str = ""
    runtime: str = "tensorflow"  # one of RUNTIMES
    litert_threads: int = limits.litert_threads_default

    def chained_functions(self) -> set[str]:
        names: set[str] = set()
        for action in self.actions:
            if isinstance(action.chain, str):
                names.add(action.chain)
            elif action.chain is not None:
                names.update(action.chain.values())
        return names

    def to_document(self) -> dict[str, Any]:
        document: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.description:
            document["description"] = self.description
        if self.model is not None:
            document["model"] = self.model.uri()
        if self.entry_point is not None:
            document["entry_point"] = self.entry_point
        if self.kind == "tensorflow":
            spec = self.input
            document["input"] = {"format": spec.format, "scale": spec.scale,
                                 "offset": spec.offset}
            if spec.size is not None:
                document["input"]["size"] = list(spec.size)
            if spec.channels is not None:
                document["input"]["channels"] = spec.channels
            document["batching"] = {
                "max_batch_size": self.batching.max_batch_size,
                "max_queue_delay_ms": self.batching.max_queue_delay_ms,
                "queue_length_max": self.batching.queue_length_max,
                "max_concurrent_batches": self.batching.max_concurrent_batches,
            }
            document["runtime"] = self.runtime
            if self.runtime == "litert":
                document["litert_threads"] = self.litert_threads
        if isinstance(self.labels, ObjectRef):
            document["labels"] = self.labels.uri()
        elif self.labels is not None:
            document["labels"] = list(self.labels)
        document["top_k"] = self.top_k
        document["on_error"] = self.on_error
        document["actions"] = [_action_document(a) for a in self.actions]
        return document


def _action_document(action: Action) -> dict[str, Any]:
    document: dict[str, Any] = {}
    when = action.when
    if when != Condition():
        document["when"] = {k: v for k, v in (
            ("label", list(when.labels) if when.labels is not None else None),
            ("score_min", when.score_min), ("score_max", when.score_max)) if v is not None}
    if action.kind == "annotate":
        document["annotate"] = (action.annotate == ANNOTATE_TARGETS
                                or (action.annotate[0] if action.annotate else False))
    elif action.kind == "route":
        document["route"] = ({"bucket": action.route_bucket, "key": action.route_key}
                             if action.route_bucket is not None else action.route_key)
    elif action.kind in ("reject", "discard"):
        document[action.kind] = action.reason
    else:
        document["chain"] = dict(action.chain) if isinstance(action.chain, Mapping) \
            else action.chain
    return document


# --- parsing ---------------------------------------------------------------------------


def _fail(where: str, message: str) -> InvalidArgument:
    return InvalidArgument(f"{where}: {message}" if where else message)


def load_document(raw: bytes) -> Mapping[str, Any]:
    """JSON, or YAML (needs PyYAML: the 'ml' extra) when it is not JSON."""
    if len(raw) > limits.function_definition_bytes_max:
        raise _fail("", f"a definition is at most {limits.function_definition_bytes_max} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _fail("", "a definition must be UTF-8 text (JSON or YAML)") from None
    if text.lstrip().startswith("{"):
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise _fail("", f"not valid JSON: {error}") from None
    else:
        try:
            import yaml
        except ImportError:
            raise _fail("", "YAML definitions need PyYAML (pip install 'squall[ml]'); "
                        "JSON works without it") from None
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise _fail("", f"not valid YAML: {error}") from None
    if not isinstance(document, Mapping):
        raise _fail("", "a definition is a mapping (kind, model or entry_point, actions ...)")
    return document


def check_function_name(name: str) -> None:
    if not NAME_PATTERN.match(name) or len(name) > limits.function_name_length_max:
        raise _fail("name", f"{name!r} is not a function name (letters, digits, '_', '.', "
                    f"'-', at most {limits.function_name_length_max} characters)")


def parse_object_ref(where: str, value: Any) -> ObjectRef:
    match = S3_URI.match(value) if isinstance(value, str) else None
    if match is None:
        raise _fail(where, f"{value!r} is not s3://BUCKET/KEY[?versionId=V]")
    return ObjectRef(match["bucket"], match["key"], match["version"])


def _known_fields(where: str, document: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(document) - allowed)
    if unknown:
        raise _fail(where, f"unknown field {unknown[0]!r} (expected one of "
                    f"{', '.join(sorted(allowed))})")


def _number(where: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _fail(where, f"{value!r} is not a number in [{low}, {high}]")
    return float(value)


def _integer(where: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(where, f"{value!r} is not an integer in [{low}, {high}]")
    return value


def _string(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _fail(where, f"{value!r} is not a string")
    return value


def check_template(where: str, template: str) -> str:
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    except ValueError as error:
        raise _fail(where, f"bad template {template!r}: {error}") from None
    unknown = sorted(fields - TEMPLATE_FIELDS)
    if unknown:
        raise _fail(where, f"unknown field {{{unknown[0]}}} in {template!r} (known: "
                    f"{', '.join('{' + f + '}' for f in sorted(TEMPLATE_FIELDS))})")
    return template


def _input(where: str, document: Any) -> InputSpec:
    if not isinstance(document, Mapping):
        raise _fail(where, "is a mapping (format, size, channels, scale, offset)")
    _known_fields(where, document, {"format", "size", "channels", "scale", "offset"})
    fmt = document.get("format", "image")
    if fmt not in INPUT_FORMATS:
        raise _fail(f"{where}.format", f"{fmt!r} is not one of {', '.join(INPUT_FORMATS)}")
    size = document.get("size")
    if size is not None:
        if not isinstance(size, list | tuple) or len(size) != 2:
            raise _fail(f"{where}.size", f"{size!r} is not [height, width]")
        size = (_integer(f"{where}.size", size[0], 1, 8192),
                _integer(f"{where}.size", size[1], 1, 8192))
    channels = document.get("channels")
    if channels is not None and channels not in (1, 3, 4):
        raise _fail(f"{where}.channels", f"{channels!r} is not 1, 3 or 4")
    return InputSpec(
        fmt, size, channels,
        _number(f"{where}.scale", document.get("scale", 1 / 255), -1e9, 1e9),
        _number(f"{where}.offset", document.get("offset", 0.0), -1e9, 1e9),
    )


def _batching(where: str, document: Any) -> Batching:
    if not isinstance(document, Mapping):
        raise _fail(where, "is a mapping (max_batch_size, max_queue_delay_ms, queue_length_max, "
                    "max_concurrent_batches)")
    _known_fields(where, document, {"max_batch_size", "max_queue_delay_ms", "queue_length_max",
                                    "max_concurrent_batches"})
    return Batching(
        _integer(f"{where}.max_batch_size", document.get("max_batch_size", 8), 1,
                 limits.trigger_batch_size_max),
        _number(f"{where}.max_queue_delay_ms", document.get("max_queue_delay_ms", 2.0), 0,
                limits.trigger_queue_delay_ms_max),
        _integer(f"{where}.queue_length_max", document.get("queue_length_max", 256), 1,
                 limits.trigger_queue_length_max),
        _integer(f"{where}.max_concurrent_batches",
                 document.get("max_concurrent_batches", Batching().max_concurrent_batches), 1,
                 limits.trigger_concurrent_batches_max),
    )


def _condition(where: str, document: Any) -> Condition:
    if not isinstance(document, Mapping):
        raise _fail(where, "is a mapping (label, score_min, score_max)")
    _known_fields(where, document, {"label", "score_min", "score_max"})
    labels = document.get("label")
    if isinstance(labels, str):
        labels = [labels]
    if labels is not None and not (isinstance(labels, list) and all(
            isinstance(label, str) for label in labels)):
        raise _fail(f"{where}.label", f"{labels!r} is not a label or a list of labels")
    score_min, score_max = document.get("score_min"), document.get("score_max")
    return Condition(
        tuple(labels) if labels is not None else None,
        None if score_min is None else _number(f"{where}.score_min", score_min, 0, 1),
        None if score_max is None else _number(f"{where}.score_max", score_max, 0, 1),
    )


def _action(where: str, document: Any) -> Action:
    if not isinstance(document, Mapping):
        raise _fail(where, f"is a mapping with one of {', '.join(ACTIONS)} (and 'when')")
    kinds = [k for k in document if k != "when"]
    if len(kinds) != 1 or kinds[0] not in ACTIONS:
        found = ", ".join(repr(k) for k in kinds) or "none"
        raise _fail(where, f"needs exactly one action of {', '.join(ACTIONS)}; found {found}")
    kind = kinds[0]
    value = document[kind]
    when = _condition(f"{where}.when", document.get("when", {}))
    at = f"{where}.{kind}"
    if kind == "annotate":
        if isinstance(value, bool):
            return Action(kind, when, annotate=ANNOTATE_TARGETS if value else ())
        if value not in ANNOTATE_TARGETS:
            raise _fail(at, f"{value!r} is not true, false, {' or '.join(ANNOTATE_TARGETS)}")
        return Action(kind, when, annotate=(value,))
    if kind == "route":
        if isinstance(value, str):
            return Action(kind, when, route_key=check_template(at, value))
        if not isinstance(value, Mapping) or "key" not in value:
            raise _fail(at, "is a key template ('sorted/{label}/{key}') or {bucket, key}")
        _known_fields(at, value, {"bucket", "key"})
        bucket = value.get("bucket")
        return Action(kind, when,
                      route_bucket=None if bucket is None else check_template(
                          f"{at}.bucket", _string(f"{at}.bucket", bucket)),
                      route_key=check_template(f"{at}.key", _string(f"{at}.key", value["key"])))
    if kind in ("reject", "discard"):
        reason = "" if value in (True, None) else _string(at, value)
        return Action(kind, when, reason=reason)
    if isinstance(value, str):
        check_function_name(value)
        return Action(kind, when, chain=value)
    if not isinstance(value, Mapping) or not value:
        raise _fail(at, "is a function name or a mapping label -> function name")
    for label, target in value.items():
        check_function_name(_string(f"{at}.{label}", target))
    return Action(kind, when, chain={str(k): v for k, v in value.items()})


def parse_definition(name: str, raw: bytes) -> FunctionDefinition:
    return definition_from_document(name, load_document(raw))


def definition_from_document(name: str, document: Mapping[str, Any]) -> FunctionDefinition:
    check_function_name(name)
    _known_fields("", document, {"name", "kind", "model", "entry_point", "input", "labels",
                                 "top_k", "batching", "on_error", "actions", "description",
                                 "runtime", "litert_threads"})
    if document.get("name", name) != name:
        raise _fail("name", f"the document names {document['name']!r}, registered as {name!r}")
    kind = document.get("kind")
    if kind not in KINDS:
        raise _fail("kind", f"{kind!r} is not one of {', '.join(KINDS)}")
    model = entry_point = None
    if kind == "tensorflow":
        if "model" not in document:
            raise _fail("model", "a tensorflow function needs a model: s3://BUCKET/KEY.keras")
        if "entry_point" in document:
            raise _fail("entry_point", "belongs to python functions, not tensorflow ones")
        model = parse_object_ref("model", document["model"])
    else:
        entry_point = _string("entry_point", document.get("entry_point"))
        if not re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", entry_point):
            raise _fail("entry_point", f"{entry_point!r} is not package.module:callable")
        for unwanted in ("model", "input", "batching", "runtime", "litert_threads"):
            if unwanted in document:
                raise _fail(unwanted, "belongs to tensorflow functions, not python ones")
    labels = document.get("labels")
    if isinstance(labels, str):
        labels = parse_object_ref("labels", labels)
    elif labels is not None:
        if not isinstance(labels, list) or not labels or not all(
                isinstance(label, str) for label in labels):
            raise _fail("labels", "is a list of label names or s3://BUCKET/KEY (one per line)")
        labels = tuple(labels)
    actions = document.get("actions", [{"annotate": True}])
    if not isinstance(actions, list):
        raise _fail("actions", "is a list")
    on_error = document.get("on_error", "reject")
    if on_error not in ON_ERROR:
        raise _fail("on_error", f"{on_error!r} is not one of {', '.join(ON_ERROR)}")
    runtime = document.get("runtime", "tensorflow")
    if runtime not in RUNTIMES:
        raise _fail("runtime", f"{runtime!r} is not one of {', '.join(RUNTIMES)}")
    if "litert_threads" in document and runtime != "litert":
        raise _fail("litert_threads", "applies only with runtime: litert")
    definition = FunctionDefinition(
        name=name,
        kind=kind,
        model=model,
        entry_point=entry_point,
        input=_input("input", document.get("input", {})),
        labels=labels,
        top_k=_integer("top_k", document.get("top_k", 1), 1, 100),
        batching=_batching("batching", document.get("batching", {})),
        on_error=on_error,
        actions=tuple(_action(f"actions[{i}]", a) for i, a in enumerate(actions)),
        description=_string("description", document.get("description", "")),
        runtime=runtime,
        litert_threads=_integer("litert_threads", document.get(
            "litert_threads", limits.litert_threads_default), 1, limits.litert_threads_max),
    )
    if name in definition.chained_functions():
        raise _fail("actions", f"function {name!r} chains to itself")
    return definition
