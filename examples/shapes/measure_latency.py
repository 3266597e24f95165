"""p50 latencies: bare inference of the shapes model vs a PUT judged by it vs a plain PUT.

Run after train_and_upload.py against a running server (sequential requests, one client).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import boto3

from triggers.config import ObjectRef, definition_from_document
from triggers.functions import _decode
from triggers.models import load_keras_model


def p50_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default="http://127.0.0.1:9000")
    parser.add_argument("--bucket", default="camera")
    parser.add_argument("--samples", default="shape-samples")
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args()
    s3 = boto3.client(
        "s3", endpoint_url=args.endpoint, region_name="us-east-1",
        aws_access_key_id=os.environ.get("SQUALL_ROOT_USER", "squall-dev"),
        aws_secret_access_key=os.environ.get("SQUALL_ROOT_PASSWORD",
                                             "squall-dev-secret-change-me"))
    image = (Path(args.samples) / "circle.png").read_bytes()
    model_bytes = s3.get_object(Bucket="models", Key="shapes.keras")["Body"].read()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "shapes.keras"
        path.write_bytes(model_bytes)
        model = load_keras_model(str(path), ObjectRef("models", "shapes.keras"), "local")
    spec = definition_from_document("m", {"kind": "tensorflow", "model": "s3://m/k"}).input

    import numpy as np

    predict_only, decode_and_predict = [], []
    decoded = _decode(image, spec, model.input_shape)[None].astype(np.float32)
    for _ in range(args.count):
        began = time.perf_counter()
        model.predict(decoded).numpy()
        predict_only.append(time.perf_counter() - began)
        began = time.perf_counter()
        model.predict(_decode(image, spec, model.input_shape)[None]).numpy()
        decode_and_predict.append(time.perf_counter() - began)

    def put_latencies(prefix: str) -> list[float]:
        latencies = []
        for n in range(args.count):
            began = time.perf_counter()
            s3.put_object(Bucket=args.bucket, Key=f"{prefix}{n}.png", Body=image)
            latencies.append(time.perf_counter() - began)
        return latencies

    put_latencies("warm/")
    judged = put_latencies("uploads/m")
    plain = put_latencies("plain/m")
    print(f"bare inference (compiled tf.function, batch 1)  p50 {p50_ms(predict_only):.2f} ms")
    print(f"decode PNG + inference                          p50 "
          f"{p50_ms(decode_and_predict):.2f} ms")
    print(f"PUT without a trigger (boto3, same image)       p50 {p50_ms(plain):.2f} ms")
    print(f"PUT judged by the trigger (classified, routed)  p50 {p50_ms(judged):.2f} ms")


if __name__ == "__main__":
    main()
