"""Optional upload of the finished database to S3 or an S3-compatible server."""

from __future__ import annotations

import typing as t

from target_qualys_sqlite.errors import TargetSQLiteError

if t.TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path


def s3_key(prefix: str, path: Path) -> str:
    """The object key: the file name under the prefix (``a/b`` and ``a/b/`` mean the same)."""
    prefix = prefix.strip("/")
    return f"{prefix}/{path.name}" if prefix else path.name


def upload(path: Path, config: Mapping[str, t.Any]) -> str:
    """Upload ``path`` to ``s3_bucket``; return the ``s3://`` URL.

    Credentials not given in the config come from boto3's usual chain (environment, profile,
    instance role). boto3 is imported here so that installs without the ``s3`` extra still work.
    """
    try:
        import boto3  # noqa: PLC0415
        from boto3.exceptions import Boto3Error  # noqa: PLC0415
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415
    except ImportError as exc:
        msg = (
            "s3_bucket is set but boto3 is not installed: install target-qualys-sqlite[s3] "
            "(meltano.yml: pip_url: -e packages/target-qualys-sqlite[s3])"
        )
        raise TargetSQLiteError(msg) from exc

    bucket = config["s3_bucket"]
    key = s3_key(config.get("s3_prefix") or "", path)
    client = boto3.client(
        "s3",
        endpoint_url=config.get("s3_endpoint_url") or None,
        region_name=config.get("aws_region") or None,
        aws_access_key_id=config.get("aws_access_key_id") or None,
        aws_secret_access_key=config.get("aws_secret_access_key") or None,
        aws_session_token=config.get("aws_session_token") or None,
    )
    try:
        client.upload_file(str(path), bucket, key)
    except (Boto3Error, BotoCoreError, ClientError) as exc:
        msg = f"upload of {path} to s3://{bucket}/{key} failed: {exc}"
        raise TargetSQLiteError(msg) from exc
    return f"s3://{bucket}/{key}"
