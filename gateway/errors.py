"""S3 errors: one exception type, one table from storage errors to S3 codes.

Every failure a client can cause becomes an ``S3Error`` with the code, HTTP status and
message AWS documents for it; the gateway renders it as the standard XML error body.
``error_for_storage`` is the ONE place where storage's typed errors meet S3 codes.
"""

from __future__ import annotations

from gateway.verdicts import verdict_headers
from storage import api


class CodedError(Exception):
    """What the auth, aws-chunked and checksum modules raise: an S3 code, ready made.

    Those modules stay free of HTTP and rendering; ``error_for_client`` turns one into
    the S3Error the gateway renders.
    """

    def __init__(
        self, code: str, message: str, status: int = 400, details: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        # Extra XML elements of the S3 error body, in the order AWS writes them.
        self.details: dict[str, str] = details or {}


class S3Error(Exception):
    """An S3 error response: code, HTTP status, message, and extra XML fields."""

    def __init__(
        self,
        code: str,
        message: str,
        status: int = 400,
        *,
        resource: str | None = None,
        headers: dict[str, str] | None = None,
        **fields: str,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.resource = resource
        self.headers = headers or {}
        self.fields = fields  # extra elements of the <Error> body (Key, BucketName, ...)


# Storage error type -> (S3 code, HTTP status, default message). One table, no branches.
_STORAGE_ERRORS: dict[type[api.StorageError], tuple[str, int, str]] = {
    api.NoSuchBucket: ("NoSuchBucket", 404, "The specified bucket does not exist"),
    api.BucketAlreadyExists: (
        "BucketAlreadyExists",
        409,
        "The requested bucket name is not available. The bucket namespace is shared by "
        "all users of the system. Please select a different name and try again.",
    ),
    api.BucketAlreadyOwnedByYou: (
        "BucketAlreadyOwnedByYou",
        409,
        "Your previous request to create the named bucket succeeded and you already own it.",
    ),
    api.BucketNotEmpty: (
        "BucketNotEmpty",
        409,
        "The bucket you tried to delete is not empty",
    ),
    api.NoSuchKey: ("NoSuchKey", 404, "The specified key does not exist."),
    api.NoSuchVersion: (
        "NoSuchVersion",
        404,
        "The specified version does not exist.",
    ),
    api.PreconditionFailed: (
        "PreconditionFailed",
        412,
        "At least one of the pre-conditions you specified did not hold",
    ),
    api.KeyTooLong: ("KeyTooLongError", 400, "Your key is too long"),
    api.Overloaded: ("SlowDown", 503, "Please reduce your request rate."),
    api.InvalidArgument: ("InvalidArgument", 400, "Invalid Argument"),
    api.NoSuchUpload: (
        "NoSuchUpload",
        404,
        "The specified multipart upload does not exist. The upload ID might be invalid, or "
        "the multipart upload might have been aborted or completed.",
    ),
    api.InvalidPart: (
        "InvalidPart",
        400,
        "One or more of the specified parts could not be found. The part might not have "
        "been uploaded, or the specified entity tag might not have matched the part's "
        "entity tag.",
    ),
    api.InvalidPartOrder: (
        "InvalidPartOrder",
        400,
        "The list of parts was not in ascending order. The parts list must be specified "
        "in order by part number.",
    ),
    api.EntityTooSmall: (
        "EntityTooSmall",
        400,
        "Your proposed upload is smaller than the minimum allowed object size.",
    ),
    api.InvalidBucketState: (
        "InvalidBucketState",
        409,
        "The request is not valid with the current state of the bucket.",
    ),
    api.ObjectLockNotEnabled: (
        "InvalidRequest",
        400,
        "Bucket is missing Object Lock Configuration",
    ),
    # The node holding the object is unreachable (network transports): AWS's 503 for a
    # service that cannot handle the request now.
    api.NodeUnavailable: ("ServiceUnavailable", 503, "Service is unable to handle request."),
    # A retention or legal hold protects the version: AWS answers a plain AccessDenied.
    api.ObjectLocked: ("AccessDenied", 403, "Access Denied"),
    # SSE-C (gateway/s3/encryption.py checks keys before storage, with each operation's
    # own words; these are the answers when storage is the one to tell).
    api.CustomerKeyRequired: (
        "InvalidRequest",
        400,
        "The object was stored using a form of Server Side Encryption. The correct "
        "parameters must be provided to retrieve the object.",
    ),
    api.CustomerKeyMismatch: ("AccessDenied", 403, "Access Denied"),
    api.CustomerKeyNotApplicable: (
        "InvalidRequest",
        400,
        "The encryption parameters are not applicable to this object.",
    ),
    # A pre-commit function refused the object (the message names it and its verdict).
    api.WriteRejected: ("RejectedByFunction", 403, ""),
    # Handled by the gateway as a 200 with the verdict; reaching this table is a bug.
    api.WriteDiscarded: ("InternalError", 500, "We encountered an internal error."),
}


def error_for_storage(
    error: api.StorageError, *, bucket: str | None = None, key: str | None = None
) -> S3Error:
    """The S3 error for a storage error (most specific class in the table wins)."""
    for cls in type(error).__mro__:
        if cls in _STORAGE_ERRORS:
            code, status, message = _STORAGE_ERRORS[cls]  # type: ignore[index]
            break
    else:  # a StorageError subclass nobody mapped: a bug, surfaced as such
        raise AssertionError(f"unmapped storage error {type(error).__name__}") from error
    fields: dict[str, str] = {}
    if bucket is not None and code in (
        "NoSuchBucket",
        "BucketNotEmpty",
        "BucketAlreadyExists",
        "BucketAlreadyOwnedByYou",
    ):
        fields["BucketName"] = bucket
    if key is not None and code in ("NoSuchKey", "NoSuchVersion"):
        fields["Key"] = key
    headers = {"Retry-After": "1"} if code == "SlowDown" else None
    if isinstance(error, api.InvalidArgument | api.InvalidBucketState) and str(error):
        message = str(error)  # says what is wrong (e.g. a pre-commit function's config)
    if isinstance(error, api.WriteRejected):
        message = str(error)
        headers = verdict_headers(error.verdict)
        fields["Function"] = error.verdict.function
    return S3Error(code, message, status, headers=headers, **fields)


def error_for_client(error: CodedError) -> S3Error:
    """The S3 error for an auth / payload / checksum error (they carry their own code)."""
    s3_error = S3Error(error.code, error.message, error.status)
    s3_error.fields.update(error.details)
    return s3_error


def not_implemented(what: str) -> S3Error:
    return S3Error(
        "NotImplemented",
        f"{what} is not implemented by this server.",
        501,
    )


def malformed_xml() -> S3Error:
    return S3Error(
        "MalformedXML",
        "The XML you provided was not well-formed or did not validate against our "
        "published schema.",
        400,
    )


def invalid_argument(message: str, name: str | None = None, value: str | None = None) -> S3Error:
    fields: dict[str, str] = {}
    if name is not None:
        fields["ArgumentName"] = name
    if value is not None:
        fields["ArgumentValue"] = value
    error = S3Error("InvalidArgument", message, 400)
    error.fields.update(fields)
    return error
