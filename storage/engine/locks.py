"""S3 Object Lock rules: pure decisions on one version's lock state, no I/O.

Rules and theory of operation (AWS's documented semantics, and what the ceph s3-tests
check):

* A version's lock state is (retention mode, retain-until time, legal hold). A retention
  is *in force* while the server's wall clock is before its retain-until time; once that
  time passes it protects nothing, though it is still shown.
* A version is protected from removal (DeleteObject with a version id, DeleteObjects
  entries with a version id, lifecycle) while its legal hold is on, or a retention is in
  force, except that GOVERNANCE yields to a request with
  ``x-amz-bypass-governance-retention: true``. A delete marker carries no lock state.
  Deletes without a version id only add a delete marker and are always allowed, and
  overwrites make new versions: neither removes a protected version.
* Changing a retention in force: COMPLIANCE may only be kept in COMPLIANCE with the same
  or a later date. GOVERNANCE may be kept in GOVERNANCE with the same or a later date;
  anything else (an earlier date, removing it, or changing the mode, even to
  COMPLIANCE) needs the bypass (ceph's test_object_lock_changing_mode_from_governance_*).
  A retention no longer in force can be replaced or removed freely.
* The legal hold is independent of the retention and may be turned on or off at will.
* The caller passes ``now_ms`` (the engine's clock, the wall clock in production), so the
  decisions are tested with any time.
"""

from __future__ import annotations

from storage.api import OBJECT_LOCK_MODES, InvalidArgument, ObjectLocked


def check_retention(mode: str, retain_until_ms: int) -> None:
    """A retention as storage keeps it: a known mode with a date, or ('', 0) for none
    (the gateway validates what clients send; this guards the record)."""
    if (mode, retain_until_ms) != ("", 0) and (mode not in OBJECT_LOCK_MODES
                                               or retain_until_ms <= 0):
        raise InvalidArgument(f"invalid Object Lock retention {mode!r} until {retain_until_ms}")


def retention_in_force(mode: str, retain_until_ms: int, now_ms: int) -> bool:
    return bool(mode) and now_ms < retain_until_ms


def check_removable(
    mode: str, retain_until_ms: int, legal_hold: bool, now_ms: int, bypass_governance: bool
) -> None:
    """Raise ObjectLocked when the lock state forbids removing the version."""
    if legal_hold:
        raise ObjectLocked("the object version is under a legal hold")
    if not retention_in_force(mode, retain_until_ms, now_ms):
        return
    if mode == "GOVERNANCE" and bypass_governance:
        return
    raise ObjectLocked(f"the object version is under {mode} retention")


def check_retention_change(
    current: tuple[str, int], wanted: tuple[str, int], now_ms: int, bypass_governance: bool
) -> None:
    """Raise ObjectLocked when replacing retention ``current`` by ``wanted`` (each
    ``(mode, retain_until_ms)``; ``("", 0)`` is none) is not allowed."""
    mode, until_ms = current
    if not retention_in_force(mode, until_ms, now_ms):
        return
    wanted_mode, wanted_until_ms = wanted
    kept_or_extended = wanted_mode == mode and wanted_until_ms >= until_ms
    if kept_or_extended:
        return
    if mode == "GOVERNANCE" and bypass_governance:
        return
    raise ObjectLocked(f"the object version's {mode} retention cannot be shortened, "
                       "removed or changed")
