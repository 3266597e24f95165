"""Upload the sample images to the bound bucket with boto3 and print each verdict."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import boto3
from botocore.exceptions import ClientError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint", default="http://127.0.0.1:9000")
    parser.add_argument("--bucket", default="camera")
    parser.add_argument("--samples", default="shape-samples")
    args = parser.parse_args()
    s3 = boto3.client(
        "s3", endpoint_url=args.endpoint, region_name="us-east-1",
        aws_access_key_id=os.environ.get("SQUALL_ROOT_USER", "squall-dev"),
        aws_secret_access_key=os.environ.get("SQUALL_ROOT_PASSWORD",
                                             "squall-dev-secret-change-me"))
    for path in sorted(Path(args.samples).glob("*.png")):
        key = f"uploads/{path.name}"
        try:
            response = s3.put_object(Bucket=args.bucket, Key=key, Body=path.read_bytes(),
                                     ContentType="image/png")
            headers = response["ResponseMetadata"]["HTTPHeaders"]
            print(f"PUT {key}: 200 {json.loads(headers['x-squall-verdict'])}")
        except ClientError as error:
            print(f"PUT {key}: {error.response['ResponseMetadata']['HTTPStatusCode']} "
                  f"{error.response['Error']['Code']}: {error.response['Error']['Message']}")
    listed = s3.list_objects_v2(Bucket=args.bucket).get("Contents", [])
    print("stored:", [o["Key"] for o in listed])


if __name__ == "__main__":
    main()
