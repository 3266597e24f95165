"""CPU time per lifecycle expiration, with notification events.

Commits N small objects, then applies EXPIRE_CURRENT to all of them in writer operations
of ``limits.lifecycle_deletes_per_txn_max`` (what the sweeper submits), with a bucket
notification rule that takes both ``s3:LifecycleExpiration:*`` and ``s3:ObjectRemoved:*``
so that every tree writes one outbox event per expiration, whichever name it gives it.
``time.process_time`` counts the writer thread too. It prints one JSON line and imports
the tree in the current directory, so two trees can be compared side by side::

    for i in 1 2 3 4 5 6 7; do
      (cd /work/main && .venv/bin/python /path/to/bench/lifecycle_expiry.py 10000)
      (cd /work/wt-x && /work/main/.venv/bin/python bench/lifecycle_expiry.py 10000)
    done

On a shared machine compare the medians of alternating runs, not single runs.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path.cwd()))  # the tree being measured, not this file's

from storage.api import (  # noqa: E402 (after choosing the tree)
    NOTIFICATION_CONFIG,
    NotificationConfiguration,
    NotificationRule,
    PutSpec,
    limits,
)
from storage.engine import Engine, GroupCommitWriter, StagedTail, operations  # noqa: E402
from storage.engine.expiry import ExpiryAction, ExpiryKind, expire  # noqa: E402


def main(objects_count: int) -> dict[str, Any]:
    engine = Engine(pathlib.Path(tempfile.mkdtemp()), durable=False,
                    outbox_entries_max=10 * objects_count)
    writer = GroupCommitWriter(engine)

    def write(operation: Any) -> Any:
        return writer.submit(operation).result(timeout=60)

    write(operations.create_bucket("b", "owner"))
    rule = NotificationRule("queue", "q", "arn:squall:sqs::hooks:webhook",
                            ("s3:LifecycleExpiration:*", "s3:ObjectRemoved:*"))
    document = NotificationConfiguration((rule,)).to_json()
    write(operations.put_bucket_config("b", NOTIFICATION_CONFIG, document))
    body = b"x" * 100
    spec = PutSpec(etag=hashlib.md5(body).hexdigest())
    actions = [
        ExpiryAction(ExpiryKind.EXPIRE_CURRENT, version.key, version.version_id)
        for version in (
            write(operations.commit_version("b", f"k{index:07d}", blob_id=None, size_bytes=100,
                                            spec=spec, tail=StagedTail(0, body)))
            for index in range(objects_count)
        )
    ]
    batch = limits.lifecycle_deletes_per_txn_max
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    for start in range(0, objects_count, batch):
        write(expire("b", tuple(actions[start:start + batch])))
    cpu, wall = time.process_time() - cpu_start, time.perf_counter() - wall_start
    assert engine.entry_counts()["versions"] == 0
    assert engine.outbox.depth() == objects_count
    writer.close()
    engine.close()
    return {"tree": str(pathlib.Path.cwd()), "expirations": objects_count,
            "cpu_us_per_expiration": round(cpu / objects_count * 1e6, 1),
            "wall_us_per_expiration": round(wall / objects_count * 1e6, 1)}


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)))
