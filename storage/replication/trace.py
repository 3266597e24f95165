"""One-line text for the replication core's events, messages and actions.

Used by the simulation's failure traces and by the scripted protocol tests, whose
checked-in expected output is made of these lines: a change of wording here shows up as
a diff there, so keep them stable and short. Terms are written ``epoch.round``, log
entries ``index@term:write_id`` (``noop`` for a leader's no-op).
"""

from __future__ import annotations

from collections.abc import Sequence

from storage.replication import core as rc


def term(value: rc.Term) -> str:
    return f"{value.epoch}.{value.round}"


def position(index: int, at: rc.Term) -> str:
    return f"{index}@{term(at)}"


def entry(value: rc.LogEntry) -> str:
    name = "noop" if value.write_id is None else value.write_id
    return f"{position(value.index, value.term)}:{name}"


def entries(values: Sequence[rc.LogEntry]) -> str:
    return "[" + " ".join(entry(e) for e in values) + "]"


def message(value: rc.Message) -> str:
    match value:
        case rc.StateRequest():
            return f"StateRequest {term(value.term)}"
        case rc.StateReply():
            return (f"StateReply {term(value.term)} last={position(value.last_index, value.last_term)}"
                    f" commit={value.commit_index}")
        case rc.FetchRequest():
            return (f"FetchRequest {term(value.term)} last={position(value.last_index, value.last_term)}"
                    f" commit={value.commit_index}")
        case rc.FetchReply():
            return (f"FetchReply {term(value.term)} prev={position(value.prev_index, value.prev_term)}"
                    f" {entries(value.entries)}"
                    f" source_last={position(value.source_last_index, value.source_last_term)}")
        case rc.Append():
            return (f"Append {term(value.term)} prev={position(value.prev_index, value.prev_term)}"
                    f" {entries(value.entries)} commit={value.commit_index}")
        case rc.AppendReply():
            if value.accepted:
                return f"AppendReply {term(value.term)} ok match={value.match_index}"
            return (f"AppendReply {term(value.term)} rejected"
                    f" last={position(value.last_index, value.last_term)}"
                    f" commit={value.commit_index}")
        case rc.SnapshotNeeded():
            return f"SnapshotNeeded {term(value.term)}"
        case rc.CatchUpRequest():
            return (f"CatchUpRequest epoch={value.epoch}"
                    f" last={position(value.last_index, value.last_term)}"
                    f" commit={value.commit_index}")
    raise AssertionError(f"not a message: {value!r}")


def outcome(value: rc.Outcome) -> str:
    match value:
        case rc.Committed():
            return f"Committed({value.index})"
        case rc.NotCommitted() | rc.Indeterminate():
            return f"{type(value).__name__}({value.reason})"
        case rc.Overloaded():
            return "Overloaded"
        case rc.NotLeader():
            return f"NotLeader({value.leader})"
    raise AssertionError(f"not an outcome: {value!r}")


def event(value: rc.Event) -> str:
    match value:
        case rc.ClientWrite():
            return f"ClientWrite {value.write_id}"
        case rc.Received():
            return f"<- {value.sender} {message(value.message)}"
        case rc.Tick():
            return "Tick"
        case rc.ViewInstalled():
            shards = " | ".join(" ".join(members) for members in value.view.shards)
            return f"ViewInstalled epoch={value.view.epoch} [{shards}]"
        case rc.Persisted():
            return f"Persisted {value.last_index}"
        case rc.SnapshotFetched():
            return f"SnapshotFetched epoch={value.epoch} {position(value.index, value.term)}"
        case rc.SnapshotFetchFailed():
            return f"SnapshotFetchFailed epoch={value.epoch}"
        case rc.ReadyConfirmed():
            return f"ReadyConfirmed shard={value.shard} epoch={value.epoch}"
    raise AssertionError(f"not an event: {value!r}")


def action(value: rc.Action) -> str:
    match value:
        case rc.Send():
            return f"-> {value.to} {message(value.message)}"
        case rc.SaveTerm():
            return f"SaveTerm {term(value.term)}"
        case rc.Persist():
            return f"Persist {entries(value.entries)}"
        case rc.TruncateLog():
            return f"TruncateLog from={value.from_index}"
        case rc.TrimLog():
            return f"TrimLog through={position(value.through_index, value.term)}"
        case rc.Apply():
            return f"Apply {entry(value.entry)}"
        case rc.Reply():
            return f"Reply {value.write_id} {outcome(value.outcome)}"
        case rc.FetchSnapshot():
            return f"FetchSnapshot shard={value.shard} from={value.source} epoch={value.epoch}"
        case rc.InstallSnapshot():
            tail = " keep_log_tail" if value.keep_log_tail else ""
            return f"InstallSnapshot {position(value.index, value.term)}{tail}"
        case rc.DiscardSnapshot():
            return f"DiscardSnapshot epoch={value.epoch}"
        case rc.ViewReady():
            return f"ViewReady shard={value.shard} epoch={value.epoch}"
        case rc.CaughtUp():
            return (f"CaughtUp shard={value.shard} {value.node} epoch={value.epoch}"
                    f" index={value.index}")
        case rc.Refused():
            return f"Refused {value.what} from {value.sender}: {value.reason}"
    raise AssertionError(f"not an action: {value!r}")
