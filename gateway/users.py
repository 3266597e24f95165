"""Who may sign requests: root and the users stored in the system bucket.

Rules and theory of operation:

* Root's pair comes from start-up (``SQUALL_ROOT_USER`` / ``--root-user``); it is never
  stored, it is the only admin (``/_squall/*``), and no stored user may take its key.
* Every other user is an object in the system bucket ``.squall`` under
  ``users/ACCESS_KEY``: a JSON document {"access_key", "secret_key", "display_name"},
  persisted, versioned and replicated like any object, through ``storage.api`` only
  (as ``triggers/functions.py`` keeps function definitions).
* Signature verification is pure and synchronous (``gateway.auth``), so the secrets it
  asks for must be in memory: the directory holds every stored user (bounded by
  ``limits.users_max``) with the system bucket's change count read BEFORE they were
  read. ``refresh`` runs before each request's authentication: it reads the change
  counter (no I/O) and reads the users again only when it moved. A user PUT or DELETE
  moves it before it is acknowledged (``api.StorageClient.change_count``), so the next
  request after the acknowledgement finds a new user, and a removed user is refused
  (``InvalidAccessKeyId``) from then on. Any write to ``.squall`` (a function
  definition too) moves the counter and costs one re-read of the users, which is
  bounded and rare. A counter of None (a remote node) re-reads on every request.
* A user's canonical id is derived from its access key (``owner_for``), so its buckets
  and objects keep their owner across restarts; a user removed and later added again
  with the same access key owns them again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.s3.common import ANONYMOUS, Owner, Principal, owner_for
from storage import api

log = logging.getLogger("squall.gateway.users")

USERS_PREFIX = "users/"
_SYSTEM_BUCKET, _CHANGES_OBJECTS = api.SYSTEM_BUCKET, api.CHANGES_OBJECTS
_ACCESS_KEY = re.compile(r"[A-Za-z0-9]+")


@dataclass(frozen=True, slots=True)
class User:
    access_key: str
    secret_key: str
    display_name: str

    def public(self) -> dict[str, str]:
        """What the admin API shows of a user: never its secret."""
        return {"access_key": self.access_key, "display_name": self.display_name,
                "canonical_id": owner_for(self.access_key).id}


def access_key_problem(access_key: str) -> str | None:
    limits = api.limits
    if not (limits.user_access_key_chars_min <= len(access_key)
            <= limits.user_access_key_chars_max) or not _ACCESS_KEY.fullmatch(access_key):
        return (f"an access key is {limits.user_access_key_chars_min} to "
                f"{limits.user_access_key_chars_max} letters (A-Z, a-z) and digits")
    return None


def parse_user(access_key: str, document: Mapping[str, Any]) -> User:
    """A user from the admin API's JSON (or a --users file entry); InvalidArgument with
    a message that names what is wrong."""
    limits = api.limits
    problem = access_key_problem(access_key)
    if problem is not None:
        raise api.InvalidArgument(f"access key {access_key!r}: {problem}")
    unknown = set(document) - {"access_key", "secret_key", "display_name"}
    if unknown:
        raise api.InvalidArgument(f"unknown field(s): {', '.join(sorted(unknown))} (a user "
                                  "has secret_key and display_name)")
    if document.get("access_key", access_key) != access_key:
        raise api.InvalidArgument("access_key in the body differs from the one in the path")
    secret = document.get("secret_key")
    if not isinstance(secret, str) or not (limits.user_secret_key_chars_min <= len(secret)
                                           <= limits.user_secret_key_chars_max):
        raise api.InvalidArgument(f"secret_key: a string of {limits.user_secret_key_chars_min}"
                                  f" to {limits.user_secret_key_chars_max} characters")
    if not secret.isascii() or not secret.isprintable():
        raise api.InvalidArgument("secret_key: printable ASCII characters only")
    display_name = document.get("display_name", access_key)
    if not isinstance(display_name, str) or not (
            1 <= len(display_name) <= limits.user_display_name_chars_max) or (
            not display_name.isprintable()):
        raise api.InvalidArgument(f"display_name: 1 to {limits.user_display_name_chars_max} "
                                  "printable characters")
    return User(access_key, secret, display_name)


def _decode_user(access_key: str, body: bytes) -> User | None:
    try:
        return parse_user(access_key, json.loads(body))
    except (ValueError, api.InvalidArgument) as error:  # written by hand, or corrupted
        log.warning("ignoring stored user %s: %s", access_key, error)
        return None


class UserDirectory:
    """Root plus the stored users, kept in memory and refreshed against the system
    bucket's change counter (see the module's rules)."""

    def __init__(self, storage: api.StorageClient, root: Mapping[str, str]) -> None:
        self._storage = storage
        self._root = dict(root)  # access key -> secret: always admins, never stored
        self._users: dict[str, User] = {}
        # Every signing secret (root's and the users'): what SigV4/SigV2/POST ask for.
        self._secrets: dict[str, str] = dict(self._root)
        # What signature checks call: the current mapping's own lookup (no Python frame).
        self.secret_lookup: Callable[[str], str | None] = self._secrets.get
        self._owners_by_id: dict[str, Owner] = {
            ANONYMOUS.id: ANONYMOUS, **{owner_for(key).id: owner_for(key) for key in self._root}}
        # The principal of every signer, built once per load: every request asks.
        self._principals: dict[str, Principal] = {
            key: Principal(key, owner_for(key), is_admin=True) for key in self._root}
        # The system bucket's change count read before the users were last read; -1
        # (never a count) until they are read once.
        self._loaded_change_count: int | None = -1
        self._change_count = storage.change_count  # asked on every request
        self._reload_lock = asyncio.Lock()

    # --- the request path ----------------------------------------------------------

    def needs_refresh(self) -> bool:
        """Whether the stored users may have changed since they were read (no I/O)."""
        count = self._change_count(_SYSTEM_BUCKET, _CHANGES_OBJECTS)
        return count is None or count != self._loaded_change_count

    async def refresh(self) -> None:
        async with self._reload_lock:
            if self.needs_refresh():  # another request may have reloaded meanwhile
                await self._reload()

    def secret_for(self, access_key: str) -> str | None:
        return self._secrets.get(access_key)

    def is_admin(self, access_key: str) -> bool:
        return access_key in self._root

    def principal(self, access_key: str) -> Principal:
        """Who signed with ``access_key`` (a key ``secret_for`` knows)."""
        principal = self._principals.get(access_key)
        if principal is None:  # removed between verification and here: still who signed
            principal = Principal(access_key, self.owner(access_key),
                                  self.is_admin(access_key))
        return principal

    def owner(self, access_key: str) -> Owner:
        """The canonical id and display name of a signer (root shows its access key)."""
        user = self._users.get(access_key)
        if user is None:
            return owner_for(access_key)
        return Owner(owner_for(access_key).id, user.display_name)

    def owner_by_id(self, canonical_id: str) -> Owner:
        """The owner a canonical id names; a removed user's id shows as itself."""
        return self._owners_by_id.get(canonical_id) or Owner(canonical_id, canonical_id)

    def knows_id(self, canonical_id: str) -> bool:
        """Whether a grant may name this id: root's or a stored user's."""
        return canonical_id in self._owners_by_id and canonical_id != ANONYMOUS.id

    # --- loading ---------------------------------------------------------------------

    async def _reload(self) -> None:
        # Read BEFORE the listing: a user written after this read moves it again.
        count = self._storage.change_count(api.SYSTEM_BUCKET, api.CHANGES_OBJECTS)
        users: dict[str, User] = {}
        try:
            page = await self._storage.list_objects(
                api.SYSTEM_BUCKET, prefix=USERS_PREFIX, max_keys=api.limits.users_max)
        except api.NoSuchBucket:
            page = api.ListPage((), (), False, None)
        for entry in page.objects:
            access_key = entry.key[len(USERS_PREFIX):]
            user = await self._read(access_key)
            if user is not None and access_key not in self._root:
                users[access_key] = user
        self._users = users
        self._secrets = {**{k: u.secret_key for k, u in users.items()}, **self._root}
        self.secret_lookup = self._secrets.get
        owners = {ANONYMOUS.id: ANONYMOUS,
                  **{owner_for(key).id: owner_for(key) for key in self._root}}
        for key in users:
            owner = self.owner(key)
            owners[owner.id] = owner
        self._owners_by_id = owners
        self._principals = {key: Principal(key, self.owner(key), self.is_admin(key))
                            for key in self._secrets}
        self._loaded_change_count = count

    async def _read(self, access_key: str) -> User | None:
        try:
            version = await self._storage.get_version(
                api.SYSTEM_BUCKET, USERS_PREFIX + access_key,
                inline_body_bytes_max=api.limits.user_record_bytes_max)
        except (api.NoSuchKey, api.NoSuchBucket):
            return None  # removed since the listing
        if version.is_delete_marker or version.inline_body is None:
            return None
        return _decode_user(access_key, version.inline_body)

    # --- the admin API ---------------------------------------------------------------

    async def start(self) -> None:
        """Make the system bucket (if no earlier start or the triggers did) and read the
        stored users."""
        try:
            await self._storage.create_bucket(api.SYSTEM_BUCKET, api.SYSTEM_OWNER_ID)
        except api.BucketAlreadyOwnedByYou:
            pass
        await self.refresh()

    async def put(self, access_key: str, document: Mapping[str, Any]) -> dict[str, str]:
        user = parse_user(access_key, document)
        if access_key in self._root:
            raise api.InvalidArgument(f"{access_key!r} is root's access key: root is set at "
                                      "start-up (SQUALL_ROOT_USER), not stored")
        await self.refresh()
        if access_key not in self._users and len(self._users) >= api.limits.users_max:
            raise api.InvalidArgument(f"at most {api.limits.users_max} users can be stored")
        await self.start()  # the system bucket, if this is the first user
        body = json.dumps({"access_key": user.access_key, "secret_key": user.secret_key,
                           "display_name": user.display_name}, sort_keys=True).encode()
        async with self._storage.open_upload(api.SYSTEM_BUCKET, USERS_PREFIX + access_key) as up:
            await up.write(body)
            await up.commit(api.PutSpec(etag=hashlib.md5(body).hexdigest(),
                                        content_type="application/json",
                                        owner_id=api.SYSTEM_OWNER_ID))
        return user.public()

    async def get(self, access_key: str) -> dict[str, str]:
        await self.refresh()
        user = self._users.get(access_key)
        if user is None:
            raise api.NoSuchKey(f"no user {access_key!r}")
        return user.public()

    async def list(self) -> list[dict[str, str]]:
        await self.refresh()
        return [self._users[key].public() for key in sorted(self._users)]

    async def delete(self, access_key: str) -> None:
        await self.get(access_key)  # NoSuchKey when there is none
        await self._storage.delete_object(api.SYSTEM_BUCKET, USERS_PREFIX + access_key)
