"""What pinning the compiled image pipeline costs on the CPU, side by side in one process.

The same colour model (tests/integration/tf_models.py) and 8x8 PNG through
``triggers.functions.infer``, batch 1 (what ``bench/judged_commit.py`` judges): ``unpinned``
(``device=None``: the model wherever TensorFlow places it; decoding is pinned either
way) and ``pinned`` (``device='/device:CPU:0'``, what a function runs on a host without a
GPU), and with ``--before CHECKOUT`` that checkout's ``infer`` (its
triggers/functions.py loaded under another name: e.g. one without any pinning), all
interleaved in rounds with the order rotated. Reported per variant: CPU µs per call
(``time.process_time``) and p50 wall µs.

    .venv/bin/python bench/pipeline_placement.py --calls 4000 --before /tmp/main-copy
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=4000, help="per variant")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--before", default="", help="another checkout's root")
    args = parser.parse_args()

    from tests.integration import tf_models
    from triggers.config import ObjectRef, definition_from_document
    from triggers.devices import CPU_DEVICE, TensorFlowSettings, configure_tensorflow
    from triggers.functions import infer
    from triggers.models import load_keras_model

    configure_tensorflow(TensorFlowSettings())  # as squall serve: one thread each
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "m.keras"
        path.write_bytes(tf_models.colour_model())
        model = load_keras_model(str(path), ObjectRef("models", "m"), "v1")
    spec = definition_from_document("f", {"kind": "tensorflow", "model": "s3://m/k",
                                          "input": {"format": "image", "scale": 1 / 255}}).input
    body = [tf_models.png(tf_models.COLOURS["red"])]
    variants: dict[str, Callable[[], object]] = {
        "unpinned": lambda: infer(model, spec, body, device=None),
        "pinned": lambda: infer(model, spec, body, device=CPU_DEVICE),
    }
    if args.before:
        module_spec = importlib.util.spec_from_file_location(
            "before_functions", Path(args.before) / "triggers" / "functions.py")
        assert module_spec is not None and module_spec.loader is not None
        before = importlib.util.module_from_spec(module_spec)
        sys.modules["before_functions"] = before  # its dataclasses look their module up
        module_spec.loader.exec_module(before)
        variants["before"] = lambda: before.infer(model, spec, body)
    for call in variants.values():  # trace, warm up
        for _ in range(200):
            call()
    cpu = dict.fromkeys(variants, 0.0)
    wall: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    per_round = args.calls // args.rounds
    for round_index in range(args.rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            call = variants[name]
            began_cpu = time.process_time()
            for _ in range(per_round):
                began = time.perf_counter()
                call()
                wall[name].append(time.perf_counter() - began)
            cpu[name] += time.process_time() - began_cpu
    print(f"load average {os.getloadavg()}")
    print(f"{'variant':10} {'CPU us/call':>12} {'p50 us':>8} {'calls':>6}")
    for name in names:
        print(f"{name:10} {cpu[name] / len(wall[name]) * 1e6:12.1f} "
              f"{statistics.median(wall[name]) * 1e6:8.1f} {len(wall[name]):6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
