"""The replication protocol of ONE shard on ONE node, as a state machine that does no I/O.

A node runs one ``ReplicaCore`` per shard it holds. The core consumes events and returns
actions (``core.step(event) -> list[Action]``); a driver does the I/O: it sends the
messages, writes the log, applies committed entries to the engine, answers clients, and
feeds back what happened. The core reads no clock (time is ``Tick`` events), draws no
random numbers and makes no ids: that is what lets ``storage/replication/sim.py`` run a
cluster of cores through crashes, delays, drops, reordering and partitions from one seed.

Rules (DESIGN.md, "The write path" and "Membership and failures")
-----------------------------------------------------------------

1. **Views.** Membership (Raft, elsewhere) decides views and hands each one to the core
   as ``ViewInstalled(view)``. The shard's members are ``view.members(shard)``; the first
   is the shard's leader. Epochs only grow.
2. **Terms.** Every log entry is labelled with the term that made it:
   ``Term(epoch, round)``. A view has one leader; the ``round`` counts how often that
   leader (re)started inside the epoch. A term is promised with ``SaveTerm`` (durable
   before anything else happens) before it is used, so no two leaders, and no two
   incarnations of one leader, ever label entries with the same term.
3. **One order.** The leader gives each client write the next log index and sends the
   entries, in order, to every member. A member accepts entries only right after an
   entry it holds with the same (index, term) as the one the leader says precedes them
   (``prev_index``/``prev_term``), so a log is always a copy of a leader's log.
4. **Acknowledged = every member has it.** A member acknowledges the index up to which
   its log is durable (``Persisted``) and verified to match the leader's. The leader
   commits an index once it and EVERY member of the view have it durable, and the entry
   there is of the leader's own term (older entries commit with it, as in Raft); then it
   applies the entry (``Apply``) and answers the client (``Reply(write_id,
   Committed(index))``). Members learn the commit index from later messages and apply.
5. **Fencing.** Every message carries its epoch (inside its term). A message from an
   older epoch is refused, one from a newer epoch too (the membership layer has not yet
   installed that view here; the sender repeats itself). A member also refuses a message
   from an older round of its leader than the newest it has promised. A node that has
   seen epoch E never acts in an epoch below E.
6. **View change.** The new view's leader brings every member up to the longest log
   among them before it takes new writes:

   * COLLECTING: it asks every member for the end of its DURABLE log (``StateRequest``
     -> ``StateReply``: last index, last term, commit index) and waits for all of them.
   * FETCHING: "longest" is the highest (last term, last index), compared in that order
     (a later term beats a longer log of an earlier term). If another member holds it,
     the leader copies the missing entries from it (``FetchRequest``/``FetchReply``),
     truncating its own divergent, never-committed suffix.
   * SYNCING: that log is the *base*. The leader sends every member what it lacks (a
     member's divergent uncommitted suffix is truncated by the normal Append rule).
   * CONFIRMING: every member holds the base durably. The leader reports
     ``ViewReady(shard, epoch)`` and waits for membership's ``ReadyConfirmed``: from
     then on membership treats this view's members as the ones holding every committed
     entry (the ready rule, below). Nothing is committed before that.
   * READY: the leader appends a no-op entry of its own term after the base, then the
     writes that waited (bounded); when every member holds the no-op, it and the base
     commit. This leader's writes from an earlier view commit with it if the base holds
     them; the others ("orphans") are answered ``NotCommitted`` once the no-op commits.

   A leader that loses its leadership answers its logged writes ``Indeterminate`` (the
   new leader may still commit them) and its not-yet-logged ones ``NotCommitted``.
7. **Outsiders.** A node that holds the shard but is not in the view (it was removed,
   crashed, or partitioned) asks the leader to catch it up (``CatchUpRequest``). A
   READY leader streams entries to it as a *learner* (not counted for commits). If the
   leader trimmed the entries the outsider needs, it says so (``SnapshotNeeded``) and
   the outsider fetches a snapshot of the leader's applied state (``FetchSnapshot`` ->
   ``SnapshotFetched`` -> ``InstallSnapshot``). When a learner holds everything the
   leader has committed, the leader reports ``CaughtUp(shard, node, epoch, index)``, which
   membership uses to add the node back in a next view.
8. **Bounds** (``storage/limits.py``, ``Settings``): entries in flight per peer, entries
   and bytes per message, applied entries kept in the log (then trimmed: ``TrimLog``),
   client writes pending on a leader (count and bytes; more -> ``Overloaded``), learners
   per leader. What a driver feeds faster than the bounds let through is refused.

The driver's contract
---------------------

* After constructing a core (at start and after every restart, from ``Recovered``
  state read back from disk), feed it the CURRENT view from membership first.
* Perform actions in the order returned. ``SaveTerm`` and ``InstallSnapshot`` are
  synchronous: durable before the next action. ``Persist``, ``TruncateLog`` and
  ``TrimLog`` go through ONE ordered disk queue (the engine's writer); every ``Persist``
  is confirmed by exactly one ``Persisted(last_index)`` event, in order. ``Apply``
  makes a committed entry's effect durable together with the applied index.
* ``Send`` is best effort: messages may be lost, duplicated, delayed or reordered.
* Deliver ``Tick`` at a steady rate (``limits.replication_tick_ms``).

The membership layer's contract: the ready rule
-----------------------------------------------

Per shard, membership remembers R, the members of the last view whose ``ViewReady`` it
confirmed (at first: the first view's members). It confirms ``ViewReady(shard, epoch)``
only while ``epoch`` is its current view, recording R before it answers. It never
decides a view whose members for the shard include no member of R; when none of them is
healthy it waits (or brings back one that is outside the view). Adding any other node
is always allowed: adding only nodes reported ``CaughtUp`` makes the next sync short, it
is not needed for safety.

Why this is safe (the theory, as for Raft with membership in place of elections)
------------------------------------------------------------------------------------

* Log matching: two logs holding an entry with the same (index, term) are equal up to
  it: a term has one leader (one leader per view, rounds promised durably), which puts
  one entry at each index, and an entry is accepted only after a matching predecessor
  (rule 3). So "the longest log" (highest last term, then last index) is well defined.
* Commits: an entry commits when every member of a confirmed view holds it and an entry
  of the leader's term at or after it. Let C be every committed entry. Every member of R
  holds C: R's members all held the base (which held C) before R was confirmed, later
  commits need all of them, and a later sync only truncates entries past C (the
  truncating leader's base holds C, by the next point; asserted: nothing at or below a
  node's commit index is ever truncated).
* A new view holds a member r of R (the ready rule), and its leader syncs to the longest
  log among ALL its members. That log holds C: if its last term is r's, it extends r's
  log (log matching); if it is later, its last entry was made by a leader of a later,
  confirmed view, whose base held C by induction; r's last term is at least that of C's
  last commit, because each ready view commits its own no-op (without the no-op, a base
  of old-term entries could commit and then lose to a log with a later last term:
  Raft's "Figure 8", pinned by tests/unit/data/replication/noop_stamps_the_term.txt).
  So every acknowledged write survives at its index while one member of the shard's
  last ready view survives.
* ``NotCommitted`` is final: a waiting write was never logged; an orphan's slot is
  taken by an entry of the base or by the committed no-op, whose term is later than
  the orphan's, so no log holding the orphan can ever be the committed one.

The seeded simulation (``storage/replication/sim.py``, ``tests/unit/test_replication_sim.py``)
checks these claims against crashes, partitions and view changes; the scripted tests
(``tests/unit/test_replication_scripts.py``) pin the exact message flow.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias

from storage import limits
from storage.placement import View

NodeId: TypeAlias = str
WriteId: TypeAlias = Hashable


class Term(NamedTuple):
    """Who made a log entry: the view's epoch and the leader's round within it."""

    epoch: int
    round: int

    def __str__(self) -> str:
        return f"{self.epoch}.{self.round}"


NO_TERM = Term(0, 0)


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One client write in the shard's log; ``payload`` is opaque to the core. An entry
    whose ``write_id`` is None is a leader's no-op (rule 6): applying it changes nothing
    but the applied index."""

    index: int
    term: Term
    write_id: WriteId
    payload: object
    size_bytes: int


@dataclass(frozen=True, slots=True)
class Settings:
    """The core's bounds and timers (defaults: ``storage/limits.py``)."""

    entries_in_flight_max: int = limits.replication_entries_in_flight_max
    entries_per_message_max: int = limits.replication_entries_per_message_max
    message_bytes_max: int = limits.replication_message_bytes_max
    log_entries_max: int = limits.replication_log_entries_max
    pending_writes_max: int = limits.replication_pending_writes_max
    pending_bytes_max: int = limits.replication_pending_bytes_max
    learners_max: int = limits.replication_learners_max
    retransmit_ticks: int = limits.replication_retransmit_ticks
    heartbeat_ticks: int = limits.replication_heartbeat_ticks
    learner_idle_ticks_max: int = limits.replication_learner_idle_ticks_max
    caught_up_report_ticks: int = limits.replication_caught_up_report_ticks
    snapshot_wait_ticks: int = limits.replication_snapshot_wait_ticks

    def __post_init__(self) -> None:
        assert self.entries_per_message_max >= 1 and self.entries_in_flight_max >= 1
        assert self.message_bytes_max >= 1 and self.log_entries_max >= 2
        assert self.pending_writes_max >= 1 and self.pending_bytes_max >= 1
        assert self.learners_max >= 0
        assert 1 <= self.heartbeat_ticks < self.retransmit_ticks
        assert self.learner_idle_ticks_max > self.retransmit_ticks
        assert self.caught_up_report_ticks >= 1 and self.snapshot_wait_ticks >= 1


@dataclass(frozen=True, slots=True)
class Recovered:
    """What a node reads back from disk when it starts: its promise, its applied state's
    position, and its durable log (entries after ``log_trimmed_index``)."""

    promised_term: Term = NO_TERM
    applied_index: int = 0
    applied_term: Term = NO_TERM
    log_trimmed_index: int = 0
    log_trimmed_term: Term = NO_TERM
    entries: tuple[LogEntry, ...] = ()


NOTHING_RECOVERED = Recovered()  # a node that never ran
DEFAULT_SETTINGS = Settings()


# --- messages (node to node; every one carries its epoch) ---------------------------------


class _TermMessage:
    __slots__ = ()
    term: Term

    @property
    def epoch(self) -> int:
        return self.term.epoch


@dataclass(frozen=True, slots=True)
class StateRequest(_TermMessage):
    """Leader -> member: the end of your durable log, please."""

    term: Term


@dataclass(frozen=True, slots=True)
class StateReply(_TermMessage):
    """Member -> leader: my durable log ends at (last_index, last_term)."""

    term: Term
    last_index: int
    last_term: Term
    commit_index: int


@dataclass(frozen=True, slots=True)
class FetchRequest(_TermMessage):
    """Leader -> the member holding the longest log: send me what I lack after mine."""

    term: Term
    last_index: int
    last_term: Term
    commit_index: int


@dataclass(frozen=True, slots=True)
class FetchReply(_TermMessage):
    """Member -> leader: durable entries after (prev_index, prev_term); my durable log
    ends at (source_last_index, source_last_term)."""

    term: Term
    prev_index: int
    prev_term: Term
    entries: tuple[LogEntry, ...]
    source_last_index: int
    source_last_term: Term


@dataclass(frozen=True, slots=True)
class Append(_TermMessage):
    """Leader -> member or learner: entries after (prev_index, prev_term) (none: a
    heartbeat), and the leader's commit index."""

    term: Term
    prev_index: int
    prev_term: Term
    entries: tuple[LogEntry, ...]
    commit_index: int


@dataclass(frozen=True, slots=True)
class AppendReply(_TermMessage):
    """Member or learner -> leader. accepted: my log is durable and matches yours up to
    match_index. Not accepted: the previous entry did not match; (last_index, last_term,
    commit_index) say where to start again."""

    term: Term
    accepted: bool
    match_index: int
    last_index: int
    last_term: Term
    commit_index: int


@dataclass(frozen=True, slots=True)
class SnapshotNeeded(_TermMessage):
    """Leader -> member or learner: I no longer hold the entries you need."""

    term: Term


@dataclass(frozen=True, slots=True)
class CatchUpRequest:
    """Outsider -> leader: stream the log to me (mine ends at last_index, last_term)."""

    epoch: int
    last_index: int
    last_term: Term
    commit_index: int


Message: TypeAlias = (
    StateRequest | StateReply | FetchRequest | FetchReply | Append | AppendReply
    | SnapshotNeeded | CatchUpRequest
)

# --- events (driver -> core) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientWrite:
    write_id: WriteId
    payload: object
    size_bytes: int


@dataclass(frozen=True, slots=True)
class Received:
    sender: NodeId
    message: Message


@dataclass(frozen=True, slots=True)
class Tick:
    pass


@dataclass(frozen=True, slots=True)
class ViewInstalled:
    view: View


@dataclass(frozen=True, slots=True)
class Persisted:
    """The ``Persist`` whose last entry is ``last_index`` is durable (and every one before)."""

    last_index: int


@dataclass(frozen=True, slots=True)
class SnapshotFetched:
    """The snapshot asked for in ``epoch`` is staged; it covers the log up to (index, term)."""

    epoch: int
    index: int
    term: Term


@dataclass(frozen=True, slots=True)
class SnapshotFetchFailed:
    epoch: int


@dataclass(frozen=True, slots=True)
class ReadyConfirmed:
    """Membership recorded this node's ``ViewReady`` for ``shard`` in ``epoch``."""

    shard: int
    epoch: int


Event: TypeAlias = (
    ClientWrite | Received | Tick | ViewInstalled | Persisted | SnapshotFetched
    | SnapshotFetchFailed | ReadyConfirmed
)

# --- write outcomes (what a client is answered) ------------------------------------------


@dataclass(frozen=True, slots=True)
class Committed:
    """Every member of the view holds the write durably, at ``index``."""

    index: int


@dataclass(frozen=True, slots=True)
class NotCommitted:
    """The write did not and never will commit: retrying it is safe (SlowDown, 503)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Indeterminate:
    """The write may or may not commit (the leader changed under it): retryable, but a
    retry may store it twice (an S3 PUT then leaves one more version)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Overloaded:
    """Too many writes pending on this leader: retry later (SlowDown, 503)."""


@dataclass(frozen=True, slots=True)
class NotLeader:
    """This node does not lead the shard (``leader`` does, as far as it knows)."""

    leader: NodeId | None


Outcome: TypeAlias = Committed | NotCommitted | Indeterminate | Overloaded | NotLeader

# --- actions (core -> driver) --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    to: NodeId
    message: Message


@dataclass(frozen=True, slots=True)
class SaveTerm:
    """Synchronous: make ``term`` this node's durable promise before the next action."""

    term: Term


@dataclass(frozen=True, slots=True)
class Persist:
    """Append ``entries`` (contiguous, right after the log's end) to the durable log;
    confirm with ``Persisted(entries[-1].index)``."""

    entries: tuple[LogEntry, ...]


@dataclass(frozen=True, slots=True)
class TruncateLog:
    """Remove the durable log's entries from ``from_index`` on (never committed ones)."""

    from_index: int


@dataclass(frozen=True, slots=True)
class TrimLog:
    """Forget the log's entries up to ``through_index`` (applied ones); the log then
    starts after (through_index, term)."""

    through_index: int
    term: Term


@dataclass(frozen=True, slots=True)
class Apply:
    """Apply a committed entry to the engine, with the applied index, durably."""

    entry: LogEntry


@dataclass(frozen=True, slots=True)
class Reply:
    write_id: WriteId
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class FetchSnapshot:
    """Fetch a snapshot of ``source``'s applied state for this shard into a staging
    area; answer ``SnapshotFetched(epoch, ...)`` or ``SnapshotFetchFailed(epoch)``."""

    shard: int
    source: NodeId
    epoch: int


@dataclass(frozen=True, slots=True)
class InstallSnapshot:
    """Synchronous: replace the applied state with the staged snapshot (up to
    (index, term)); drop the log up to ``index``, and the rest of it too unless
    ``keep_log_tail``."""

    index: int
    term: Term
    keep_log_tail: bool


@dataclass(frozen=True, slots=True)
class DiscardSnapshot:
    epoch: int


@dataclass(frozen=True, slots=True)
class ViewReady:
    """For membership: every member of this view holds every committed entry. Record it
    (this view is now the shard's last ready view) and answer ``ReadyConfirmed``; until
    then the leader commits nothing. Repeated every ``retransmit_ticks`` until answered."""

    shard: int
    epoch: int


@dataclass(frozen=True, slots=True)
class CaughtUp:
    """For membership: ``node`` holds everything this leader has committed."""

    shard: int
    node: NodeId
    epoch: int
    index: int


@dataclass(frozen=True, slots=True)
class Refused:
    """Diagnostics (a metric or a debug log): a message or view was not acted on."""

    sender: NodeId | None
    what: str
    reason: str


Action: TypeAlias = (
    Send | SaveTerm | Persist | TruncateLog | TrimLog | Apply | Reply | FetchSnapshot
    | InstallSnapshot | DiscardSnapshot | ViewReady | CaughtUp | Refused
)

# --- roles and the transition rules, as data ---------------------------------------------


class Role(enum.Enum):
    WAITING = "waiting"  # started, no view yet
    COLLECTING = "collecting"  # leader: waiting for every member's log end
    FETCHING = "fetching"  # leader: copying the longest log from the member holding it
    SYNCING = "syncing"  # leader: bringing every member up to the base
    CONFIRMING = "confirming"  # leader: every member holds the base; membership to record it
    READY = "ready"  # leader: membership recorded it; writes flow
    FOLLOWER = "follower"  # a member, not the leader
    OUTSIDER = "outsider"  # not a member: catching up to be added back


LEADER_ROLES = frozenset(
    {Role.COLLECTING, Role.FETCHING, Role.SYNCING, Role.CONFIRMING, Role.READY})
_ON_VIEW = frozenset({Role.COLLECTING, Role.FOLLOWER, Role.OUTSIDER})

# The roles each role may move to. A new view can move any role to one of _ON_VIEW; the
# leader's phases advance in order; a fetch that finds its source changed starts over.
TRANSITIONS: dict[Role, frozenset[Role]] = {
    Role.WAITING: _ON_VIEW,
    Role.COLLECTING: _ON_VIEW | {Role.FETCHING, Role.SYNCING},
    Role.FETCHING: _ON_VIEW | {Role.SYNCING},
    Role.SYNCING: _ON_VIEW | {Role.CONFIRMING},
    Role.CONFIRMING: _ON_VIEW | {Role.READY},
    Role.READY: _ON_VIEW,
    Role.FOLLOWER: _ON_VIEW,
    Role.OUTSIDER: _ON_VIEW,
}

# The messages each role acts on (of the current epoch); anything else is refused.
ACCEPTS: dict[Role, dict[type, str]] = {
    Role.WAITING: {},
    Role.COLLECTING: {StateReply: "_on_state_reply"},
    Role.FETCHING: {FetchReply: "_on_fetch_reply"},
    Role.SYNCING: {AppendReply: "_on_append_reply"},
    Role.CONFIRMING: {AppendReply: "_on_append_reply"},
    Role.READY: {AppendReply: "_on_append_reply", CatchUpRequest: "_on_catch_up_request"},
    Role.FOLLOWER: {
        StateRequest: "_on_state_request",
        FetchRequest: "_on_fetch_request",
        Append: "_on_append",
        SnapshotNeeded: "_on_snapshot_needed",
    },
    Role.OUTSIDER: {Append: "_on_append", SnapshotNeeded: "_on_snapshot_needed"},
}


class _Log:
    """The in-memory log: entries after (trimmed_index, trimmed_term), contiguous, with
    terms that never decrease."""

    __slots__ = ("trimmed_index", "trimmed_term", "_entries")

    def __init__(self, trimmed_index: int, trimmed_term: Term) -> None:
        assert trimmed_index >= 0
        self.trimmed_index = trimmed_index
        self.trimmed_term = trimmed_term
        self._entries: list[LogEntry] = []

    @property
    def last_index(self) -> int:
        return self.trimmed_index + len(self._entries)

    @property
    def last_term(self) -> Term:
        return self._entries[-1].term if self._entries else self.trimmed_term

    def term_at(self, index: int) -> Term | None:
        """The term at ``index``; None where the log does not say (trimmed, or past the end)."""
        offset = index - self.trimmed_index
        if offset == 0:
            return self.trimmed_term
        if 0 < offset <= len(self._entries):
            return self._entries[offset - 1].term
        return None

    def entry(self, index: int) -> LogEntry:
        offset = index - self.trimmed_index
        assert 0 < offset <= len(self._entries), (index, self.trimmed_index, self.last_index)
        return self._entries[offset - 1]

    def slice(self, first: int, last: int, bytes_max: int) -> tuple[LogEntry, ...]:
        """Entries first..last, cut short at bytes_max (but at least one)."""
        assert self.trimmed_index < first <= last <= self.last_index
        chosen: list[LogEntry] = []
        total_bytes = 0
        for entry in self._entries[first - self.trimmed_index - 1 : last - self.trimmed_index]:
            if chosen and total_bytes + entry.size_bytes > bytes_max:
                break
            chosen.append(entry)
            total_bytes += entry.size_bytes
        return tuple(chosen)

    def append(self, entry: LogEntry) -> None:
        assert entry.index == self.last_index + 1, "log indexes are contiguous"
        assert entry.term >= self.last_term, "terms never decrease along a log"
        self._entries.append(entry)

    def truncate_from(self, index: int) -> None:
        assert self.trimmed_index < index <= self.last_index
        del self._entries[index - self.trimmed_index - 1 :]

    def trim_through(self, index: int) -> None:
        assert self.trimmed_index <= index <= self.last_index
        term = self.term_at(index)
        assert term is not None
        del self._entries[: index - self.trimmed_index]
        self.trimmed_index, self.trimmed_term = index, term

    def reset(self, index: int, term: Term) -> None:
        self._entries.clear()
        self.trimmed_index, self.trimmed_term = index, term


@dataclass(slots=True)
class _Progress:
    """The leader's knowledge of one member or learner."""

    next_index: int = 1  # the next entry to send
    match_index: int = 0  # the peer holds, durably and matching, every entry up to here
    probe_index: int = 0  # sends since the last (re)start build on this index
    last_sent_tick: int = 0
    last_progress_tick: int = 0  # the last tick the peer's acknowledgements moved us on
    last_heard_tick: int = 0
    snapshot_until_tick: int = -1  # told to fetch a snapshot: leave it alone until then
    caught_up_reported_tick: int | None = None

    def restart(self, next_index: int, now: int) -> None:
        self.next_index = next_index
        self.probe_index = next_index - 1
        self.last_progress_tick = now
        self.snapshot_until_tick = -1


class ReplicaCore:
    """The replication state machine of one shard on one node (see the module doc)."""

    def __init__(
        self,
        node_id: NodeId,
        shard: int,
        recovered: Recovered = NOTHING_RECOVERED,
        settings: Settings = DEFAULT_SETTINGS,
    ) -> None:
        assert shard >= 0
        self.node_id = node_id
        self.shard = shard
        self.settings = settings
        log = _Log(recovered.log_trimmed_index, recovered.log_trimmed_term)
        for entry in recovered.entries:
            log.append(entry)
        assert log.trimmed_index <= recovered.applied_index <= log.last_index
        assert log.term_at(recovered.applied_index) == recovered.applied_term
        assert log.last_term <= recovered.promised_term, "entries are accepted after a promise"
        self._log = log
        self._promised = recovered.promised_term
        self._view: View | None = None
        self._epoch = 0
        self._members: tuple[NodeId, ...] = ()
        self._role = Role.WAITING
        self._term = NO_TERM  # the term this node leads or follows in this epoch
        self._now = 0
        self._durable_index = log.last_index
        self._commit_index = recovered.applied_index
        self._commit_floor = recovered.applied_index  # the commit index never goes below
        self._applied_index = recovered.applied_index
        # Outstanding Persists, in order: [durable index once confirmed, last index].
        self._persists: deque[list[int]] = deque()
        self._verified_index = 0  # follower: the log matches the leader's up to here
        self._acked_index = 0  # follower: the highest match_index sent to the leader
        self._last_leader_contact_tick = 0
        self._snapshot_fetch: tuple[int, NodeId] | None = None  # (epoch, source)
        # Leader state.
        self._peers: dict[NodeId, _Progress] = {}
        self._learners: dict[NodeId, _Progress] = {}
        self._states: dict[NodeId, StateReply] = {}
        self._fetch_source: NodeId | None = None
        self._fetch_matched_index = 0  # our log matches the fetch source's up to here
        self._phase_sent_tick = 0
        self._base_index = 0
        self._pending: dict[int, LogEntry] = {}  # this leader's logged, unanswered writes
        # This leader's writes from an earlier view that the new base does not hold: they
        # can never commit once the no-op at _noop_index has.
        self._orphans: list[LogEntry] = []
        self._noop_index = 0
        self._waiting: deque[ClientWrite] = deque()  # writes that arrived during a sync
        self._pending_ids: set[WriteId] = set()
        self._pending_bytes = 0
        self._actions: list[Action] = []

    # --- what a driver, a test or the simulation may read -----------------------------------

    @property
    def role(self) -> Role:
        return self._role

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def term(self) -> Term:
        return self._term

    @property
    def promised_term(self) -> Term:
        return self._promised

    @property
    def commit_index(self) -> int:
        return self._commit_index

    @property
    def applied_index(self) -> int:
        return self._applied_index

    @property
    def durable_index(self) -> int:
        return self._durable_index

    @property
    def last_index(self) -> int:
        return self._log.last_index

    @property
    def last_term(self) -> Term:
        return self._log.last_term

    @property
    def pending_write_count(self) -> int:
        return len(self._pending_ids)

    @property
    def learners(self) -> tuple[NodeId, ...]:
        return tuple(self._learners)

    # --- the one entry point ----------------------------------------------------------------

    def step(self, event: Event) -> list[Action]:
        handler_name = _EVENT_HANDLERS.get(type(event))
        assert handler_name is not None, f"not an event: {event!r}"
        handler: Callable[[Any], None] = getattr(self, handler_name)
        handler(event)
        self._check_invariants()
        actions, self._actions = self._actions, []
        return actions

    # --- events -----------------------------------------------------------------------------

    def _on_client_write(self, write: ClientWrite) -> None:
        assert write.size_bytes >= 0
        assert write.write_id not in self._pending_ids, "write ids are unique (driver's duty)"
        if self._role not in LEADER_ROLES:
            self._emit(Reply(write.write_id, NotLeader(self._leader())))
            return
        settings = self.settings
        if self._pending_ids and (
            len(self._pending_ids) >= settings.pending_writes_max
            or self._pending_bytes + write.size_bytes > settings.pending_bytes_max
        ):
            self._emit(Reply(write.write_id, Overloaded()))
            return
        self._pending_ids.add(write.write_id)
        self._pending_bytes += write.size_bytes
        if self._role is Role.READY:
            self._persist([self._log_write(write)])
            self._send_to_all()
        else:
            self._waiting.append(write)

    def _on_tick(self, _: Tick) -> None:
        self._now += 1
        role = self._role
        if role is Role.COLLECTING:
            if self._now - self._phase_sent_tick >= self.settings.retransmit_ticks:
                self._phase_sent_tick = self._now
                for member in self._members[1:]:
                    if member not in self._states:
                        self._emit(Send(member, StateRequest(self._term)))
        elif role is Role.FETCHING:
            if (self._snapshot_fetch is None
                    and self._now - self._phase_sent_tick >= self.settings.retransmit_ticks):
                self._send_fetch_request()
        elif role is Role.SYNCING or role is Role.READY:
            self._tick_leader()
        elif role is Role.CONFIRMING:
            if self._now - self._phase_sent_tick >= self.settings.retransmit_ticks:
                self._phase_sent_tick = self._now
                self._emit(ViewReady(self.shard, self._epoch))
            self._tick_leader()
        elif role is Role.OUTSIDER:
            if (self._snapshot_fetch is None and self._now - self._last_leader_contact_tick
                    >= self.settings.retransmit_ticks):
                self._send_catch_up_request()

    def _tick_leader(self) -> None:
        settings, now = self.settings, self._now
        for peer, progress in self._peers.items():
            self._tick_peer(peer, progress)
        for learner, progress in list(self._learners.items()):
            if now - progress.last_heard_tick >= settings.learner_idle_ticks_max:
                del self._learners[learner]
                continue
            self._tick_peer(learner, progress)
            self._report_if_caught_up(learner, progress)

    def _tick_peer(self, peer: NodeId, progress: _Progress) -> None:
        settings, now = self.settings, self._now
        if 0 <= progress.snapshot_until_tick:
            if now < progress.snapshot_until_tick:
                return
            progress.restart(max(progress.match_index, progress.probe_index) + 1, now)
            self._send_entries(peer, progress)
            return
        floor = max(progress.match_index, progress.probe_index)
        if (progress.next_index > floor + 1
                and now - progress.last_progress_tick >= settings.retransmit_ticks):
            progress.restart(floor + 1, now)  # what was in flight may be lost: send it again
            self._send_entries(peer, progress)
        elif now - progress.last_sent_tick >= settings.heartbeat_ticks:
            self._send_entries(peer, progress, heartbeat=True)

    def _on_view_installed(self, event: ViewInstalled) -> None:
        view = event.view
        if view.epoch < max(self._epoch, self._promised.epoch) or (
            view.epoch == self._epoch and self._view is not None
        ):
            self._emit(Refused(None, f"view {view.epoch}", "not newer than the view held"))
            return
        members = view.members(self.shard) if self.shard < view.shard_count else ()
        was_leader = self._role in LEADER_ROLES
        self._view, self._epoch, self._members = view, view.epoch, members
        self._verified_index = self._acked_index = 0
        self._snapshot_fetch = None  # a fetch still running is discarded when it ends
        self._last_leader_contact_tick = self._now
        self._states.clear()
        self._learners.clear()
        self._peers.clear()
        if members and members[0] == self.node_id:
            same_epoch = self._promised.epoch == view.epoch
            self._term = Term(view.epoch, self._promised.round + 1 if same_epoch else 1)
            self._promise(self._term)
            self._start_collecting()
            return
        if was_leader:
            self._give_up_pending_writes()
        self._term = NO_TERM  # until the view's leader speaks
        if self.node_id in members:
            self._become(Role.FOLLOWER)
        else:
            self._become(Role.OUTSIDER)
            if members:
                self._send_catch_up_request()

    def _on_received(self, event: Received) -> None:
        message, sender = event.message, event.sender
        kind = type(message).__name__
        if self._view is None:
            self._emit(Refused(sender, kind, "no view yet"))
            return
        if message.epoch != self._epoch:
            older = message.epoch < self._epoch
            reason = "older epoch" if older else "newer epoch (view not installed here yet)"
            self._emit(Refused(sender, kind, reason))
            return
        handler_name = ACCEPTS[self._role].get(type(message))
        if handler_name is None:
            self._emit(Refused(sender, kind, f"not expected by a {self._role.value}"))
            return
        handler: Callable[[NodeId, Any], None] = getattr(self, handler_name)
        handler(sender, message)

    def _on_persisted(self, event: Persisted) -> None:
        assert self._persists, "Persisted without an outstanding Persist"
        durable_index, last_index = self._persists.popleft()
        assert event.last_index == last_index, "Persisted confirms Persists in order"
        if durable_index > self._durable_index:
            self._durable_index = durable_index
        if self._role in LEADER_ROLES:
            self._leader_advance()
        elif self._role is Role.FOLLOWER or self._role is Role.OUTSIDER:
            self._apply_committed()
            self._acknowledge(always=False)

    def _on_snapshot_fetched(self, event: SnapshotFetched) -> None:
        wanted = self._snapshot_fetch
        if wanted is None or wanted[0] != event.epoch:
            self._emit(DiscardSnapshot(event.epoch))
            return
        self._snapshot_fetch = None
        if event.index <= self._applied_index or event.term > self._promised:
            # Nothing new; or the source moved on to a later term than this node has
            # promised (its log could then hold entries the leader it follows lacks):
            # the next SnapshotNeeded asks again.
            self._emit(DiscardSnapshot(event.epoch))
        else:
            self._install_snapshot(event.index, event.term)
        self._after_snapshot()

    def _on_snapshot_fetch_failed(self, event: SnapshotFetchFailed) -> None:
        wanted = self._snapshot_fetch
        if wanted is not None and wanted[0] == event.epoch:
            self._snapshot_fetch = None
            self._after_snapshot()

    # --- follower and outsider side ------------------------------------------------------

    def _follow(self, sender: NodeId, term: Term, kind: str) -> bool:
        """Whether a message from ``sender`` in ``term`` comes from this view's leader in a
        round no older than promised; promises a newer round."""
        if sender != self._leader():
            self._emit(Refused(sender, kind, "not the view's leader"))
            return False
        if term < self._promised:
            self._emit(Refused(sender, kind, "an older round of the leader"))
            return False
        if term > self._promised:
            self._promise(term)
        if term != self._term:
            self._term = term
            self._verified_index = self._acked_index = 0
        self._last_leader_contact_tick = self._now
        return True

    def _on_state_request(self, sender: NodeId, message: StateRequest) -> None:
        if not self._follow(sender, message.term, "StateRequest"):
            return
        durable_term = self._log.term_at(self._durable_index)
        assert durable_term is not None
        self._emit(Send(sender, StateReply(
            message.term, self._durable_index, durable_term, self._commit_index)))

    def _on_fetch_request(self, sender: NodeId, message: FetchRequest) -> None:
        if not self._follow(sender, message.term, "FetchRequest"):
            return
        log, durable_index = self._log, self._durable_index
        start = self._start_index(
            message.last_index, message.last_term, message.commit_index, durable_index)
        start = max(start, log.trimmed_index + 1)
        if start <= durable_index:
            last = min(durable_index, start - 1 + self.settings.entries_per_message_max)
            entries = log.slice(start, last, self.settings.message_bytes_max)
        else:
            entries = ()
        prev_term, durable_term = log.term_at(start - 1), log.term_at(durable_index)
        assert prev_term is not None and durable_term is not None
        self._emit(Send(sender, FetchReply(
            message.term, start - 1, prev_term, entries, durable_index, durable_term)))

    def _on_append(self, sender: NodeId, message: Append) -> None:
        if not self._follow(sender, message.term, "Append"):
            return
        if not _well_formed(message.prev_index, message.prev_term, message.entries, message.term):
            self._emit(Refused(sender, "Append", "malformed"))
            return
        if not self._accept_entries(message.prev_index, message.prev_term, message.entries):
            self._send_hint()
            return
        verified = message.prev_index + len(message.entries)
        if verified > self._verified_index:
            self._verified_index = verified
        commit = min(message.commit_index, self._verified_index)
        if commit > self._commit_index:
            self._commit_index = commit
        self._apply_committed()
        self._acknowledge(always=True)

    def _on_snapshot_needed(self, sender: NodeId, message: SnapshotNeeded) -> None:
        if not self._follow(sender, message.term, "SnapshotNeeded"):
            return
        if self._snapshot_fetch is None:
            self._fetch_snapshot(sender)

    def _acknowledge(self, always: bool) -> None:
        if self._term.epoch != self._epoch:
            return  # the leader has not spoken in this epoch yet
        match_index = min(self._durable_index, self._verified_index)
        if always or match_index > self._acked_index:
            self._acked_index = max(self._acked_index, match_index)
            self._send_to_leader(accepted=True, match_index=match_index)

    def _send_hint(self) -> None:
        """Tell the leader where this log stands, so it sends from the right place."""
        self._send_to_leader(
            accepted=False, match_index=min(self._durable_index, self._verified_index))

    def _send_to_leader(self, accepted: bool, match_index: int) -> None:
        leader = self._leader()
        assert leader is not None and self._term.epoch == self._epoch
        log = self._log
        self._emit(Send(leader, AppendReply(
            self._term, accepted, match_index, log.last_index, log.last_term,
            self._commit_index)))

    def _send_catch_up_request(self) -> None:
        leader = self._leader()
        if leader is None:
            return
        self._last_leader_contact_tick = self._now
        log = self._log
        self._emit(Send(leader, CatchUpRequest(
            self._epoch, log.last_index, log.last_term, self._commit_index)))

    # --- the log, shared by followers, outsiders and a fetching leader --------------------

    def _accept_entries(
        self, prev_index: int, prev_term: Term, entries: Sequence[LogEntry]
    ) -> bool:
        """Attach ``entries`` after (prev_index, prev_term); False if the log does not
        hold that entry. A conflicting suffix (same index, other term) is truncated: it
        was never committed, since the sender's log holds every committed entry."""
        log = self._log
        if prev_index > log.last_index:
            return False
        if prev_index >= log.trimmed_index and log.term_at(prev_index) != prev_term:
            assert prev_index > self._commit_index, "a committed entry differs from the leader's"
            return False
        # Below the trim point every entry is applied: committed, the same everywhere.
        fresh: list[LogEntry] = []
        for entry in entries:
            if entry.index <= log.trimmed_index:
                continue
            if not fresh:
                local_term = log.term_at(entry.index)
                if local_term == entry.term:
                    continue
                if local_term is not None:
                    self._truncate(entry.index)
            fresh.append(entry)
        if fresh:
            for entry in fresh:
                log.append(entry)
            self._persist(fresh)
        return True

    def _truncate(self, from_index: int) -> None:
        assert from_index > self._commit_index, "never truncate a committed entry"
        self._log.truncate_from(from_index)
        self._emit(TruncateLog(from_index))
        kept = from_index - 1
        self._durable_index = min(self._durable_index, kept)
        self._verified_index = min(self._verified_index, kept)
        for record in self._persists:
            record[0] = min(record[0], kept)

    def _persist(self, entries: Sequence[LogEntry]) -> None:
        last_index = entries[-1].index
        self._persists.append([last_index, last_index])
        self._emit(Persist(tuple(entries)))

    def _apply_committed(self) -> None:
        limit = min(self._commit_index, self._durable_index)
        log = self._log
        while self._applied_index < limit:
            self._applied_index += 1
            self._emit(Apply(log.entry(self._applied_index)))
        held = self._applied_index - log.trimmed_index
        if held > self.settings.log_entries_max:
            through = self._applied_index - self.settings.log_entries_max // 2
            term = log.term_at(through)
            assert term is not None
            log.trim_through(through)
            self._emit(TrimLog(through, term))

    def _start_index(self, last_index: int, last_term: Term, commit_index: int,
                     upto: int) -> int:
        """Where to start sending to a peer whose log ends at (last_index, last_term) and
        which knows ``commit_index`` committed: right after its end if that entry is ours
        too (log matching: its whole log is then a prefix of ours), else right after its
        commit index (committed entries are the same everywhere)."""
        if last_index <= upto and self._log.term_at(last_index) == last_term:
            return last_index + 1
        return min(commit_index, upto) + 1

    def _fetch_snapshot(self, source: NodeId) -> None:
        self._snapshot_fetch = (self._epoch, source)
        self._emit(FetchSnapshot(self.shard, source, self._epoch))

    def _install_snapshot(self, index: int, term: Term) -> None:
        """The staged snapshot (committed state up to (index, term)) replaces the applied
        state. The log's tail after it is kept only if it continues from that entry."""
        log = self._log
        keep_tail = log.term_at(index) == term
        # A fetching leader's own writes (pending or orphaned) that the snapshot covers:
        # if its log continues from the snapshot's last entry, its entries up to there
        # are the committed ones; if not, the branches parted somewhere below: unknown.
        covered = [e for e in [*self._pending.values(), *self._orphans] if e.index <= index]
        for entry in covered:
            if not keep_tail:
                outcome: Outcome = Indeterminate("the log was replaced by a snapshot")
            elif log.term_at(entry.index) == entry.term:
                outcome = Committed(entry.index)
            else:
                outcome = NotCommitted("another write was committed at its index")
            self._finish(entry.write_id, entry.size_bytes, outcome)
        if covered:
            self._pending = {i: e for i, e in self._pending.items() if i > index}
            self._orphans = [e for e in self._orphans if e.index > index]
        self._emit(InstallSnapshot(index, term, keep_tail))
        if keep_tail:
            log.trim_through(index)
        else:
            log.reset(index, term)
            self._durable_index = index
            for record in self._persists:
                record[0] = min(record[0], index)
        self._durable_index = max(self._durable_index, index)
        self._commit_index = max(self._commit_index, index)
        self._applied_index = index
        if self._role is Role.FOLLOWER or self._role is Role.OUTSIDER:
            # The snapshot is committed state; the leader's log holds all of it.
            self._verified_index = max(self._verified_index, index)
        elif self._role is Role.FETCHING:
            self._fetch_matched_index = index  # the source's state, up to here

    def _after_snapshot(self) -> None:
        if self._role is Role.FOLLOWER and self._term.epoch == self._epoch:
            self._send_hint()
        elif self._role is Role.OUTSIDER:
            self._send_catch_up_request()
        elif self._role is Role.FETCHING:
            self._send_fetch_request()

    # --- leader side ---------------------------------------------------------------------

    def _start_collecting(self) -> None:
        self._become(Role.COLLECTING)
        log = self._log
        self._states[self.node_id] = StateReply(
            self._term, log.last_index, log.last_term, self._commit_index)
        self._phase_sent_tick = self._now
        for member in self._members[1:]:
            self._peers[member] = _Progress(last_heard_tick=self._now)
            self._emit(Send(member, StateRequest(self._term)))
        self._end_collecting_if_complete()

    def _on_state_reply(self, sender: NodeId, message: StateReply) -> None:
        if message.term != self._term or sender not in self._peers:
            self._emit(Refused(sender, "StateReply", "not asked for"))
            return
        self._states[sender] = message
        self._end_collecting_if_complete()

    def _end_collecting_if_complete(self) -> None:
        if len(self._states) < len(self._members):
            return
        states = self._states
        # The longest log: the highest (last term, last index); on a tie, ours.
        longest = max(
            self._members,
            key=lambda m: (states[m].last_term, states[m].last_index, m == self.node_id),
        )
        if longest == self.node_id:
            self._begin_sync()
        else:
            self._become(Role.FETCHING)
            self._fetch_source = longest
            self._fetch_matched_index = 0
            self._send_fetch_request()

    def _send_fetch_request(self) -> None:
        """Ask for what follows the point known to match the source's log (at first, our
        log's end, which may not match: the source then starts after our commit index)."""
        assert self._fetch_source is not None
        self._phase_sent_tick = self._now
        log = self._log
        last_index = self._fetch_matched_index
        last_term = log.term_at(last_index)
        if last_index == 0 or last_term is None:
            last_index, last_term = log.last_index, log.last_term
        self._emit(Send(self._fetch_source, FetchRequest(
            self._term, last_index, last_term, self._commit_index)))

    def _on_fetch_reply(self, sender: NodeId, message: FetchReply) -> None:
        if message.term != self._term or sender != self._fetch_source:
            self._emit(Refused(sender, "FetchReply", "not asked for"))
            return
        if self._snapshot_fetch is not None:
            self._emit(Refused(sender, "FetchReply", "a snapshot is being fetched"))
            return
        if not _well_formed(message.prev_index, message.prev_term, message.entries, self._term):
            self._emit(Refused(sender, "FetchReply", "malformed"))
            return
        if not self._accept_entries(message.prev_index, message.prev_term, message.entries):
            self._fetch_snapshot(sender)  # our log ends before the source's first entry
            return
        # Without this, a source starting again after our commit index would send the
        # same first entries forever when the branches part further on (seed 104477).
        self._fetch_matched_index = max(self._fetch_matched_index,
                                        message.prev_index + len(message.entries))
        log = self._log
        if log.term_at(message.source_last_index) == message.source_last_term:
            # Our log now ends where the source's does (it was the longest, so ours
            # cannot go further down the same branch).
            assert log.last_index == message.source_last_index
            self._begin_sync()
        else:
            self._send_fetch_request()

    def _begin_sync(self) -> None:
        self._become(Role.SYNCING)
        self._fetch_source = None
        log = self._log
        self._base_index = log.last_index
        for peer, progress in self._peers.items():
            state = self._states[peer]
            start = self._start_index(
                state.last_index, state.last_term, state.commit_index, log.last_index)
            progress.restart(start, self._now)
            self._send_entries(peer, progress, heartbeat=True)
        self._leader_advance()

    def _on_append_reply(self, sender: NodeId, message: AppendReply) -> None:
        progress = self._peers.get(sender) or self._learners.get(sender)
        if message.term != self._term or progress is None:
            self._emit(Refused(sender, "AppendReply", "not from a peer of this round"))
            return
        now = self._now
        progress.last_heard_tick = now
        if message.accepted:
            if message.match_index > progress.match_index:
                assert message.match_index <= self._log.last_index
                progress.match_index = message.match_index
                progress.last_progress_tick = now
            if progress.next_index <= progress.match_index:
                progress.next_index = progress.match_index + 1
        else:
            start = self._start_index(message.last_index, message.last_term,
                                      message.commit_index, self._log.last_index)
            progress.restart(max(start, progress.match_index + 1), now)
        if sender in self._learners:
            self._report_if_caught_up(sender, progress)
        self._send_entries(sender, progress)
        self._leader_advance()

    def _on_catch_up_request(self, sender: NodeId, message: CatchUpRequest) -> None:
        if sender in self._members:
            self._emit(Refused(sender, "CatchUpRequest", "a member of the view"))
            return
        progress = self._learners.get(sender)
        if progress is None:
            if len(self._learners) >= self.settings.learners_max:
                self._emit(Refused(sender, "CatchUpRequest", "learners_max reached"))
                return
            progress = self._learners[sender] = _Progress()
        progress.last_heard_tick = self._now
        start = self._start_index(message.last_index, message.last_term,
                                  message.commit_index, self._log.last_index)
        progress.restart(max(start, progress.match_index + 1), self._now)
        self._send_entries(sender, progress, heartbeat=True)

    def _report_if_caught_up(self, learner: NodeId, progress: _Progress) -> None:
        reported = progress.caught_up_reported_tick
        if progress.match_index >= self._commit_index and (
            reported is None or self._now - reported >= self.settings.caught_up_report_ticks
        ):
            progress.caught_up_reported_tick = self._now
            self._emit(CaughtUp(self.shard, learner, self._epoch, progress.match_index))

    def _send_entries(self, peer: NodeId, progress: _Progress, heartbeat: bool = False) -> None:
        """Send what the window allows (bounded entries in flight); if nothing was sent
        and ``heartbeat``, an empty Append built on what the peer is known to hold."""
        now, settings, log = self._now, self.settings, self._log
        if now < progress.snapshot_until_tick:
            return
        floor = max(progress.match_index, progress.probe_index)
        sent = False
        while (progress.next_index <= log.last_index
               and progress.next_index - 1 - floor < settings.entries_in_flight_max):
            prev_index = progress.next_index - 1
            prev_term = log.term_at(prev_index)
            if prev_index < log.trimmed_index or prev_term is None:
                self._emit(Send(peer, SnapshotNeeded(self._term)))
                progress.snapshot_until_tick = now + settings.snapshot_wait_ticks
                progress.last_sent_tick = now
                return
            last = min(log.last_index, prev_index + settings.entries_per_message_max,
                       floor + settings.entries_in_flight_max)
            entries = log.slice(prev_index + 1, last, settings.message_bytes_max)
            self._emit(Send(peer, Append(
                self._term, prev_index, prev_term, entries, self._commit_index)))
            progress.next_index = prev_index + 1 + len(entries)
            sent = True
        if not sent and heartbeat:
            floor_term = log.term_at(floor)
            if floor_term is None:  # the peer needs a snapshot; the window loop says so
                return
            self._emit(Send(peer, Append(self._term, floor, floor_term, (), self._commit_index)))
            sent = True
        if sent:
            progress.last_sent_tick = now

    def _send_to_all(self) -> None:
        for peer, progress in self._peers.items():
            self._send_entries(peer, progress)
        for learner, progress in self._learners.items():
            self._send_entries(learner, progress)

    def _leader_advance(self) -> None:
        if self._role is Role.SYNCING:
            base = self._base_index
            if self._durable_index < base or any(
                p.match_index < base for p in self._peers.values()
            ):
                return
            self._become(Role.CONFIRMING)
            self._phase_sent_tick = self._now
            self._emit(ViewReady(self.shard, self._epoch))
        elif self._role is Role.READY:
            self._commit_and_answer()

    def _on_ready_confirmed(self, event: ReadyConfirmed) -> None:
        if (self._role is not Role.CONFIRMING or event.epoch != self._epoch
                or event.shard != self.shard):
            self._emit(Refused(None, f"ReadyConfirmed {event.epoch}", "not confirming it"))
            return
        self._become(Role.READY)
        # This leader's writes from earlier views: those the base holds commit with the
        # no-op; the others are orphans, and never commit once the no-op has.
        log = self._log
        kept: list[LogEntry] = []
        orphans: list[LogEntry] = []
        for entry in [*self._pending.values(), *self._orphans]:
            held = entry.index <= self._base_index and log.term_at(entry.index) == entry.term
            (kept if held else orphans).append(entry)
        self._orphans = orphans
        self._pending = {e.index: e for e in sorted(kept, key=lambda e: e.index)}
        # The no-op stamps this term on the log: only an entry of the leader's own term is
        # committed by counting acknowledgements (as in Raft), so that no log with a later
        # last term can ever lack a committed entry.
        noop = LogEntry(log.last_index + 1, self._term, None, None, 0)
        self._noop_index = noop.index
        log.append(noop)
        entries = [noop]
        for write in self._waiting:
            entries.append(self._log_write(write))
        self._waiting.clear()
        self._persist(entries)
        self._send_to_all()

    def _commit_and_answer(self) -> None:
        commit = self._durable_index
        for progress in self._peers.values():
            commit = min(commit, progress.match_index)
        if commit <= self._commit_index or self._log.term_at(commit) != self._term:
            return
        self._commit_index = commit
        self._apply_committed()
        pending = self._pending
        while pending:
            index = next(iter(pending))
            if index > commit:
                break
            entry = pending.pop(index)
            self._finish(entry.write_id, entry.size_bytes, Committed(index))
        if self._orphans and commit >= self._noop_index:
            for entry in self._orphans:
                self._finish(entry.write_id, entry.size_bytes,
                             NotCommitted("not in the longest log of the new view"))
            self._orphans.clear()

    def _log_write(self, write: ClientWrite) -> LogEntry:
        log = self._log
        entry = LogEntry(log.last_index + 1, self._term, write.write_id, write.payload,
                         write.size_bytes)
        log.append(entry)
        self._pending[entry.index] = entry
        return entry

    def _give_up_pending_writes(self) -> None:
        for entry in [*self._pending.values(), *self._orphans]:
            self._finish(entry.write_id, entry.size_bytes,
                         Indeterminate("the shard's leader changed"))
        self._pending.clear()
        self._orphans.clear()
        for write in self._waiting:
            self._finish(write.write_id, write.size_bytes,
                         NotCommitted("the shard's leader changed before it was logged"))
        self._waiting.clear()

    def _finish(self, write_id: WriteId, size_bytes: int, outcome: Outcome) -> None:
        self._pending_ids.remove(write_id)
        self._pending_bytes -= size_bytes
        self._emit(Reply(write_id, outcome))

    # --- small helpers -------------------------------------------------------------------

    def _leader(self) -> NodeId | None:
        return self._members[0] if self._members else None

    def _promise(self, term: Term) -> None:
        assert term > self._promised
        self._promised = term
        self._emit(SaveTerm(term))

    def _become(self, role: Role) -> None:
        assert role in TRANSITIONS[self._role], f"{self._role} -> {role}"
        self._role = role

    def _emit(self, action: Action) -> None:
        self._actions.append(action)

    def _check_invariants(self) -> None:
        log = self._log
        assert log.trimmed_index <= self._applied_index <= self._commit_index, (
            "trimmed <= applied <= committed")
        assert self._applied_index <= self._durable_index <= log.last_index, (
            "applied <= durable <= last")
        assert self._commit_index <= log.last_index, "committed <= last"
        assert self._commit_index >= self._commit_floor, "the commit index never decreases"
        self._commit_floor = self._commit_index
        assert log.last_term <= self._promised, "entries come from promised terms"
        assert len(self._pending_ids) == (
            len(self._pending) + len(self._orphans) + len(self._waiting)), "pending ids"
        assert len(self._pending_ids) <= self.settings.pending_writes_max, "pending bound"
        assert len(self._learners) <= self.settings.learners_max, "learners bound"
        if self._role not in LEADER_ROLES:
            assert not self._pending_ids and not self._peers and not self._learners, (
                "only a leader holds writes and peers")
        if self._pending:
            assert next(iter(self._pending)) > self._commit_index, "pending = not committed"


def _well_formed(prev_index: int, prev_term: Term, entries: Sequence[LogEntry],
                 sender_term: Term) -> bool:
    """Entries from a peer: contiguous after prev_index, terms non-decreasing from
    prev_term and no later than the sender's term."""
    term = prev_term
    for offset, entry in enumerate(entries, start=1):
        if entry.index != prev_index + offset or entry.term < term:
            return False
        term = entry.term
    return term <= sender_term


# Which method handles each event (by name, so that a subclass may override one: the
# tests' deliberately broken cores do).
_EVENT_HANDLERS: dict[type, str] = {
    ClientWrite: "_on_client_write",
    Received: "_on_received",
    Tick: "_on_tick",
    ViewInstalled: "_on_view_installed",
    Persisted: "_on_persisted",
    SnapshotFetched: "_on_snapshot_fetched",
    SnapshotFetchFailed: "_on_snapshot_fetch_failed",
    ReadyConfirmed: "_on_ready_confirmed",
}
