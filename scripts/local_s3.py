"""A bucket on a local S3 server (moto_server, from the dev group), to try target-s3 offline.

    python scripts/local_s3.py create BUCKET   # waits for the server, then creates BUCKET
    python scripts/local_s3.py list BUCKET     # prints each object's key and size

The endpoint and credentials come from the same TARGET_S3_CLOUD_PROVIDER_AWS_AWS_* variables
target-s3 reads.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import boto3
import botocore.exceptions

PREFIX = "TARGET_S3_CLOUD_PROVIDER_AWS_AWS_"
WAIT_SECONDS = 30


def client() -> Any:
    return boto3.client(
        "s3",
        endpoint_url=os.environ[f"{PREFIX}ENDPOINT_OVERRIDE"],
        region_name=os.environ.get(f"{PREFIX}REGION", "us-east-1"),
        aws_access_key_id=os.environ.get(f"{PREFIX}ACCESS_KEY_ID", "testing"),
        aws_secret_access_key=os.environ.get(f"{PREFIX}SECRET_ACCESS_KEY", "testing"),
    )


def create(bucket: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        try:
            client().create_bucket(Bucket=bucket)
        except botocore.exceptions.EndpointConnectionError:
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"local_s3: nothing answers at {os.environ[f'{PREFIX}ENDPOINT_OVERRIDE']} "
                    f"after {WAIT_SECONDS} s: is moto_server running?"
                ) from None
            time.sleep(0.2)
        else:
            print(f"created bucket {bucket}")
            return


def list_objects(bucket: str) -> None:
    pages = client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    keys = [item for page in pages for item in page.get("Contents", [])]
    for item in keys:
        print(f"{item['Size']:>10}  {item['Key']}")
    if not keys:
        raise SystemExit(f"local_s3: bucket {bucket} is empty")


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in {"create", "list"}:
        raise SystemExit(__doc__)
    if f"{PREFIX}ENDPOINT_OVERRIDE" not in os.environ:
        raise SystemExit(f"local_s3: set {PREFIX}ENDPOINT_OVERRIDE to the server's URL")
    (create if sys.argv[1] == "create" else list_objects)(sys.argv[2])


if __name__ == "__main__":
    main()
