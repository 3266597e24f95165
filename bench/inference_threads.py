"""How should inference use the cores: one batch at a time with N intra-op threads, or
several batches at once with fewer threads each?

Each configuration runs in a fresh child process (TensorFlow's thread pools are sized
once per process): ``intra`` intra-op threads (``inter`` inter-op), ``concurrent``
Python threads each calling ``triggers.functions.infer`` (what a tensorflow function
runs per batch) on batches of ``batch`` images, for ``--seconds``. The configurations
run interleaved in ``--rounds`` rounds (the machine is shared: drift hits each alike).
Reported per configuration: images/s (wall), ms per batch p50, CPU ms per image
(``time.process_time`` of the whole process, so it counts every TensorFlow thread).

    .venv/bin/python bench/inference_threads.py                       # MobileNetV2
    .venv/bin/python bench/inference_threads.py --model shapes --batches 1,8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def child(model_name: str, intra: int, inter: int, concurrent: int, batch: int,
          seconds: float) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)
    sys.path.insert(0, str(ROOT / "bench"))
    import ml_pipeline

    if model_name == "shapes":
        workload = ml_pipeline.shapes_workload(32, 1)
    else:
        workload = ml_pipeline.mobilenet_workload(32)
    classifier = ml_pipeline.LocalClassifier(workload)
    images = workload.images
    for _ in range(3):  # warm-up: trace the pipeline for this batch size
        classifier.classify_batch(images[:batch])
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds
    counts = [0] * concurrent

    def worker(index: int) -> None:
        n = index
        while time.perf_counter() < stop:
            bodies = [images[(n + i) % len(images)] for i in range(batch)]
            began = time.perf_counter()
            classifier.classify_batch(bodies)
            with lock:
                latencies.append(time.perf_counter() - began)
            counts[index] += batch
            n += batch

    cpu0, wall0 = time.process_time(), time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrent)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    images_done = sum(counts)
    return {"images": images_done, "images_per_s": images_done / wall,
            "batch_p50_ms": statistics.median(latencies) * 1000,
            "cpu_ms_per_image": cpu * 1000 / images_done}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenetv2", choices=("mobilenetv2", "shapes"))
    parser.add_argument("--configs", default="2x1,1x2,2x2,1x1",
                        help="INTRAxCONCURRENT,... (inter-op threads = intra)")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        intra, inter, concurrent, batch = (int(v) for v in args.child.split(","))
        print(json.dumps(child(args.model, intra, inter, concurrent, batch, args.seconds)))
        return 0
    configs = [tuple(int(v) for v in c.split("x")) for c in args.configs.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    results: dict[str, list[dict[str, Any]]] = {}
    print(f"load average before {os.getloadavg()}", flush=True)
    for round_index in range(args.rounds):
        cells = [(c, b) for b in batches for c in configs]
        shift = round_index % len(cells)
        for (intra, concurrent), batch in cells[shift:] + cells[:shift]:
            name = f"intra {intra} x {concurrent} concurrent, batch {batch}"
            with tempfile.TemporaryFile() as log:
                output = subprocess.run(
                    [sys.executable, __file__, "--model", args.model, "--seconds",
                     str(args.seconds), "--child", f"{intra},{intra},{concurrent},{batch}"],
                    check=True, stdout=subprocess.PIPE, stderr=log).stdout
            results.setdefault(name, []).append(json.loads(output.splitlines()[-1]))
            print(f"  round {round_index}: {name}: {results[name][-1]}", flush=True)
    print(f"\n{args.model}: medians over {args.rounds} rounds of {args.seconds} s")
    print(f"{'configuration':40} {'images/s':>9} {'batch p50 ms':>13} {'CPU ms/image':>13}")
    for name, runs in results.items():
        print(f"{name:40} {statistics.median(r['images_per_s'] for r in runs):9.1f} "
              f"{statistics.median(r['batch_p50_ms'] for r in runs):13.2f} "
              f"{statistics.median(r['cpu_ms_per_image'] for r in runs):13.2f}")
    print(f"load average after {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
