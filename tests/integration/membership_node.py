"""One node's ``ViewAgreement`` in its own process, driven line by line (test_membership).

    python membership_node.py SELF PEERS(comma-separated) SECRET JOURNAL_DIR

stdin commands, one JSON answer line each on stdout:
  ``view``                     -> {"view": [epoch, shards]}
  ``propose EPOCH SHARDS-JSON``  -> {"installed": ...} | {"stale": ...} | {"no_quorum": msg}
  ``wait EPOCH TIMEOUT_MS``      -> {"view": ...} | {"no_quorum": msg}
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from storage.membership.agreement import (  # noqa: E402
    AgreementSettings,
    NoQuorum,
    StaleView,
    ViewAgreement,
)
from storage.placement import View  # noqa: E402

INITIAL = View(0, (("a", "b", "c"),))


def _as_json(view: View) -> list[object]:
    return [view.epoch, [list(members) for members in view.shards]]


async def main(self_address: str, peers: str, secret: str, journal_dir: str) -> None:
    settings = AgreementSettings(self_address, tuple(peers.split(",")), secret,
                                 pathlib.Path(journal_dir), propose_timeout_ms=3000)
    agreement = ViewAgreement(settings, INITIAL)
    loop = asyncio.get_running_loop()
    print(json.dumps({"started": self_address}), flush=True)
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        command, *arguments = line.split(maxsplit=2)
        answer: dict[str, object]
        try:
            if command == "view":
                answer = {"view": _as_json(agreement.view)}
            elif command == "propose":
                shards = tuple(tuple(members) for members in json.loads(arguments[1]))
                answer = {"installed": _as_json(
                    await agreement.propose(View(int(arguments[0]), shards)))}
            elif command == "wait":
                answer = {"view": _as_json(
                    await agreement.wait_for_epoch(int(arguments[0]), int(arguments[1])))}
            else:
                answer = {"error": f"unknown command {command!r}"}
        except StaleView as stale:
            answer = {"stale": _as_json(stale.current)}
        except NoQuorum as error:
            answer = {"no_quorum": str(error)}
        print(json.dumps(answer), flush=True)
    agreement.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
