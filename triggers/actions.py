"""Actions: what a function's prediction does to the write (pure, no I/O).

Rules:

* A function's ``actions`` are evaluated in order against its prediction (label, score).
  Every action whose ``when`` holds applies: ``annotate`` sets where the judgement is
  stored with the version (its user metadata, its tags, both or neither), ``route``
  sets where it is stored (the last matching route wins), ``chain`` names the next
  function. ``reject`` and ``discard`` end the list.
* The annotations (``squall-label``, ``-score``, ``-function``, ``-model-version``) are
  always computed: the response carries them whether or not they are stored.
* Templates are checked at registration; here a route key that is empty or too long is
  an ``InvalidArgument`` that names the function.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from storage.api import InvalidArgument, limits
from triggers.config import FunctionDefinition


@dataclass(frozen=True, slots=True)
class Prediction:
    """What a function said about one object."""

    label: str
    score: float | None = None
    top: tuple[tuple[str, float], ...] = ()
    model_version: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    runtime: str = ""  # what ran the model: 'tensorflow' | 'litert' ('' for python functions)
    device: str = ""  # where it ran: 'GPU:0' | 'CPU:0' ('' for python functions)
    # The wall time of what judged it: its batch's decode and model run on the inference
    # thread (tensorflow), or the entry point's call (python); None when not measured.
    inference_ms: float | None = None


@dataclass(frozen=True, slots=True)
class StepOutcome:
    annotate: tuple[str, ...] = ()  # where the judgement is stored: ANNOTATE_TARGETS
    bucket: str | None = None  # where a route sends the object (None: unchanged)
    key: str | None = None
    terminal: str | None = None  # 'reject' | 'discard'
    reason: str = ""
    chain: str | None = None


def verdict_annotations(definition: FunctionDefinition, prediction: Prediction) -> dict[str, str]:
    values = {"squall-label": prediction.label, "squall-function": definition.name}
    if prediction.score is not None:
        values["squall-score"] = f"{prediction.score:.4f}"
    if prediction.model_version:
        values["squall-model-version"] = prediction.model_version
    return values


def _render(template: str, fields: Mapping[str, str]) -> str:
    return template.format_map(fields)


def evaluate(
    definition: FunctionDefinition, prediction: Prediction, bucket: str, key: str
) -> StepOutcome:
    fields = {
        "label": prediction.label,
        "key": key,
        "bucket": bucket,
        "score": "" if prediction.score is None else f"{prediction.score:.4f}",
        "function": definition.name,
        "basename": posixpath.basename(key),
    }
    annotate: tuple[str, ...] = ()
    route_bucket, route_key, chain = None, None, None
    for action in definition.actions:
        if not action.when.holds(prediction.label, prediction.score):
            continue
        if action.kind == "annotate":
            annotate = action.annotate
        elif action.kind == "route":
            assert action.route_key is not None
            route_key = _render(action.route_key, fields)
            route_bucket = None if action.route_bucket is None else _render(
                action.route_bucket, fields)
        elif action.kind == "chain":
            chain = action.chain if isinstance(action.chain, str) else (
                (action.chain or {}).get(prediction.label))
        else:
            reason = action.reason or (
                f"function {definition.name!r} {action.kind}ed the object: label "
                f"{prediction.label!r}" + ("" if prediction.score is None
                                           else f" (score {prediction.score:.4f})"))
            return StepOutcome(annotate, terminal=action.kind, reason=reason)
    if route_key is not None and not 0 < len(route_key.encode()) <= limits.key_bytes_max:
        raise InvalidArgument(f"function {definition.name!r} routes {key!r} to an invalid "
                              f"key {route_key[:80]!r}")
    return StepOutcome(annotate, route_bucket, route_key, chain=chain)
