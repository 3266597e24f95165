"""The control codec of the network transports: msgpack, restricted to registered types.

Rules:

* What crosses the wire is msgpack's own types (None, bool, int, float, str, bytes, list,
  dict with str keys) and the types registered here, and nothing else: never pickle,
  never a class looked up by a name the peer chose. A value of any other type is a
  ``CodecError`` that names the type, raised before anything is sent.
* Records are the value types of ``storage.api`` (frozen dataclasses and the
  ``ListedVersion`` named tuple), listed in ``_RECORD_TYPES``. One is encoded as the
  extension ``RECORD`` holding ``[type name, *field values]``, its fields in declaration
  order (``compare=False`` fields too: ``inline_body`` travels). Positional fields keep
  a 1000-entry listing page small; the price is that both ends must run the same Squall
  version (the frame header's version guards the frame format, not the records).
* Tuples are the extension ``TUPLE``, apart from lists (msgpack has one array type):
  records compare their tuple fields, and a page whose ``objects`` came back as a list
  would not equal the page that was sent.
* Typed errors: ``[class name, message, fields]`` for the classes in ``_ERROR_TYPES``
  (every ``StorageError`` a node raises), rebuilt as the same class with the same
  message; ``WriteRejected`` and ``WriteDiscarded`` carry their verdict in ``fields``.
  Anything else raised on a node (a bug) arrives as ``RemoteError``, which is not a
  ``StorageError``, so the gateway answers it as the bug it is (500).
* Decoding is bounded: the input is bounded by the frame (``limits``), nesting of
  records and tuples by ``limits.transport_codec_nesting_depth_max``; malformed input is
  ``CodecError``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import msgpack

from storage import api, limits
from storage.engine.backup import BackupError
from storage.engine.verify import VerifyError
from storage.engine.writer import WriterClosed
from storage.transport.base import Operation

_EXT_RECORD = 1
_EXT_TUPLE = 2

# Every value type that a node receives in arguments or returns (tests walk every
# Operation through the codec to keep this list complete).
_RECORD_TYPES: tuple[type, ...] = (
    api.BucketInfo,
    api.DefaultRetention,
    api.ObjectVersion,
    api.ListedVersion,
    api.PutSpec,
    api.ObjectLockUpdate,
    api.WriteConditions,
    api.ListPage,
    api.ListVersionsPage,
    api.DeleteResult,
    api.MultipartUploadInfo,
    api.PartInfo,
    api.CompletedPart,
    api.ListPartsPage,
    api.ListUploadsPage,
    api.Verdict,
    api.EventOrigin,
    api.OutboxEvent,
    api.OutboxPage,
    api.OutboxStatus,
    api.CustomerKeyRecord,
    api.CustomerKey,  # an SSE-C key: only over an encrypted link (encode's rule)
)


def _field_names(cls: type) -> tuple[str, ...]:
    if dataclasses.is_dataclass(cls):
        fields = dataclasses.fields(cls)
        assert all(field.init for field in fields), f"{cls.__name__}: a field outside __init__"
        return tuple(field.name for field in fields)
    names: tuple[str, ...] = cls._fields  # type: ignore[attr-defined]  # a NamedTuple
    return names


_FIELDS_BY_TYPE: dict[type, tuple[str, tuple[str, ...]]] = {
    cls: (cls.__name__, _field_names(cls)) for cls in _RECORD_TYPES
}
_TYPES_BY_NAME: dict[str, tuple[type, int]] = {
    cls.__name__: (cls, len(_field_names(cls))) for cls in _RECORD_TYPES
}
assert len(_TYPES_BY_NAME) == len(_RECORD_TYPES), "two record types share a name"


class CodecError(ValueError):
    """A value the codec does not carry (its type is named), or bytes that are not a
    control message it wrote."""


class CustomerKeyRefused(CodecError):
    """An SSE-C key was to be encoded for a link that is not encrypted."""


class RemoteError(RuntimeError):
    """A node failed with an error that is not a typed ``StorageError`` (a bug there, or
    one this end does not know): carried as its class name and message."""


# --- encoding ----------------------------------------------------------------------------


def _packer(customer_keys: bool) -> Callable[[object], bytes]:
    """msgpack's packb with this codec's types; ``customer_keys``: whether a CustomerKey
    may be encoded (only for a link that is encrypted)."""

    def default(value: object) -> msgpack.ExtType:
        cls = type(value)
        if cls is api.CustomerKey and not customer_keys:
            raise CustomerKeyRefused("an SSE-C customer key is sent only over an encrypted "
                                     "link")
        record = _FIELDS_BY_TYPE.get(cls)
        if record is not None:
            name, fields = record
            return msgpack.ExtType(_EXT_RECORD,
                                   pack([name, *[getattr(value, field) for field in fields]]))
        if cls is tuple:
            return msgpack.ExtType(_EXT_TUPLE, pack(list(value)))  # type: ignore[call-overload]
        raise CodecError(f"cannot encode a value of type {cls.__module__}.{cls.__qualname__}: "
                         "not a type the transport codec carries")

    def pack(value: object) -> bytes:
        # strict_types: subclasses (a NamedTuple, a dict subclass; bool is exact) and
        # tuples go to default instead of being flattened into msgpack's nearest type.
        packed: bytes = msgpack.packb(value, default=default, strict_types=True,
                                      use_bin_type=True)
        return packed

    return pack


_PACK = _packer(customer_keys=False)
_PACK_WITH_CUSTOMER_KEYS = _packer(customer_keys=True)


def encode(value: object, *, customer_keys: bool = False) -> bytes:
    """``value`` as a control message. CustomerKeyRefused if it holds an SSE-C key and
    ``customer_keys`` is not set (the link is not encrypted)."""
    try:
        return (_PACK_WITH_CUSTOMER_KEYS if customer_keys else _PACK)(value)
    except CodecError:
        raise
    except (TypeError, ValueError, OverflowError, RecursionError) as error:
        raise CodecError(f"cannot encode {type(value).__qualname__}: {error}") from None


# --- decoding ----------------------------------------------------------------------------


def _ext_hook(depth: int, code: int, data: bytes) -> object:
    if depth > limits.transport_codec_nesting_depth_max:
        raise CodecError(f"records nested deeper than "
                         f"{limits.transport_codec_nesting_depth_max}")
    inner = msgpack.unpackb(data, ext_hook=functools.partial(_ext_hook, depth + 1), raw=False,
                            strict_map_key=True)
    if code == _EXT_TUPLE:
        if type(inner) is not list:
            raise CodecError("a tuple extension that holds no array")
        return tuple(inner)
    if code == _EXT_RECORD:
        if type(inner) is not list or not inner or type(inner[0]) is not str:
            raise CodecError("a record extension without a type name")
        entry = _TYPES_BY_NAME.get(inner[0])
        if entry is None:
            raise CodecError(f"unknown record type {inner[0]!r}")
        cls, field_count = entry
        if len(inner) - 1 != field_count:
            raise CodecError(f"{inner[0]} with {len(inner) - 1} fields; "
                             f"this end's has {field_count}")
        return cls(*inner[1:])
    raise CodecError(f"unknown msgpack extension type {code}")


_TOP_HOOK = functools.partial(_ext_hook, 1)


def decode(data: bytes | bytearray | memoryview) -> Any:
    try:
        return msgpack.unpackb(data, ext_hook=_TOP_HOOK, raw=False, strict_map_key=True)
    except CodecError:
        raise
    except (TypeError, ValueError, RecursionError) as error:  # msgpack's errors are these
        raise CodecError(f"malformed control message: {error}") from None


# --- requests ----------------------------------------------------------------------------

_OPERATIONS = {operation.value: operation for operation in Operation}


def encode_request(operation: Operation, arguments: Mapping[str, Any], *extra: object,
                   customer_keys: bool = False) -> bytes:
    """``[operation, arguments, *extra]`` (a stream adds its window); ``customer_keys``
    as for ``encode``."""
    return encode([operation.value, dict(arguments), *extra], customer_keys=customer_keys)


def decode_request(data: bytes | bytearray | memoryview) -> tuple[Operation, dict[str, Any],
                                                                   list[Any]]:
    """(operation, arguments, extra) of ``encode_request``; CodecError if it is not one."""
    decoded = decode(data)
    if type(decoded) is not list or len(decoded) < 2:
        raise CodecError("a request is [operation, arguments, ...]")
    operation = _OPERATIONS.get(decoded[0]) if type(decoded[0]) is str else None
    if operation is None:
        raise CodecError(f"unknown operation {decoded[0]!r}")
    arguments = decoded[1]
    if type(arguments) is not dict:  # keys are str: strict_map_key allows no others but bytes
        raise CodecError("request arguments are not a map")
    if not all(type(name) is str for name in arguments):
        raise CodecError("request argument names must be strings")
    return operation, arguments, decoded[2:]


# --- errors ------------------------------------------------------------------------------

_ErrorBuilder = Callable[[str, Mapping[str, Any]], BaseException]


def _message_only(cls: type[api.StorageError]) -> _ErrorBuilder:
    return lambda message, fields: cls(message)


def _write_rejected(message: str, fields: Mapping[str, Any]) -> BaseException:
    return api.WriteRejected(message, _verdict(fields))


def _write_discarded(message: str, fields: Mapping[str, Any]) -> BaseException:
    return api.WriteDiscarded(_verdict(fields))


def _verdict(fields: Mapping[str, Any]) -> api.Verdict:
    verdict = fields.get("verdict")
    if type(verdict) is not api.Verdict:
        raise CodecError("a verdict error without its verdict")
    return verdict


# Every StorageError a node may raise (tests check that each subclass defined in storage is
# listed or known to stay client-side).
_ERROR_TYPES: tuple[type[api.StorageError], ...] = (
    api.StorageError,
    api.NoSuchBucket,
    api.BucketAlreadyExists,
    api.BucketAlreadyOwnedByYou,
    api.BucketNotEmpty,
    api.NoSuchKey,
    api.NoSuchVersion,
    api.PreconditionFailed,
    api.KeyTooLong,
    api.Overloaded,
    api.InvalidArgument,
    api.NoSuchUpload,
    api.InvalidPart,
    api.InvalidPartOrder,
    api.EntityTooSmall,
    api.InvalidBucketState,
    api.ObjectLockNotEnabled,
    api.ObjectLocked,
    api.WriteRejected,
    api.WriteDiscarded,
    api.NodeUnavailable,
    api.NotShardLeader,
    api.ReplicationUnavailable,
    api.CustomerKeyRequired,
    api.CustomerKeyMismatch,
    api.CustomerKeyNotApplicable,
    WriterClosed,
    BackupError,
    VerifyError,
)
_ERROR_BUILDERS: dict[str, tuple[type[BaseException], _ErrorBuilder]] = {
    cls.__name__: (cls, _message_only(cls)) for cls in _ERROR_TYPES
}
_ERROR_BUILDERS["WriteRejected"] = (api.WriteRejected, _write_rejected)
_ERROR_BUILDERS["WriteDiscarded"] = (api.WriteDiscarded, _write_discarded)
_ERROR_BUILDERS["NotShardLeader"] = (
    api.NotShardLeader,
    lambda message, fields: api.NotShardLeader(message, fields.get("leader")))
assert len(_ERROR_BUILDERS) == len(_ERROR_TYPES), "two error types share a name"
_ERROR_TYPE_SET = frozenset(_ERROR_TYPES)


def encode_error(error: BaseException) -> bytes:
    """``[class name, message, fields]``. A type not listed is sent under its qualified
    name, which the other end turns into RemoteError."""
    cls = type(error)
    if cls in _ERROR_TYPE_SET:
        name = cls.__name__
    else:
        name = f"{cls.__module__}.{cls.__qualname__}"
    fields: dict[str, Any] = {}
    verdict = getattr(error, "verdict", None)
    if isinstance(error, api.WriteRejected | api.WriteDiscarded):
        fields["verdict"] = verdict
    if isinstance(error, api.NotShardLeader):
        fields["leader"] = error.leader
    return encode([name, str(error), fields])


def decode_error(data: bytes | bytearray | memoryview, node_id: str) -> BaseException:
    """The error ``encode_error`` encoded: the same class for a listed type, RemoteError
    (naming the node and the type) for any other; CodecError if malformed."""
    decoded = decode(data)
    if (type(decoded) is not list or len(decoded) != 3 or type(decoded[0]) is not str
            or type(decoded[1]) is not str or type(decoded[2]) is not dict):
        raise CodecError("an error is [class name, message, fields]")
    name, message, fields = decoded
    entry = _ERROR_BUILDERS.get(name)
    if entry is None:
        return RemoteError(f"node {node_id}: {name}: {message}")
    return entry[1](message, fields)
