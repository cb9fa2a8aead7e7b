"""The servers scripts/stack.sh starts answer on loopback with the credentials it generated,
and refuse clients without them."""
import subprocess
import uuid

import boto3
import botocore.exceptions
import pytest

from conftest import HENV, ROOT, RUN_DIR


@pytest.fixture(scope="module")
def stack():
    subprocess.run([str(ROOT / "scripts/stack.sh"), "start", "redis", "postgres", "s3"], cwd=ROOT,
                   check=True, env={**HENV, "PATH": "/usr/sbin:/usr/bin:/bin"})
    return RUN_DIR


def test_redis_requires_the_generated_password(stack):
    port = HENV["HIMARI_REDIS_PORT"]
    password = (stack / "secrets/redis_password").read_text().strip()
    ok = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", port, "--no-auth-warning", "-a",
                         password, "PING"], capture_output=True, text=True, timeout=10)
    assert ok.stdout.strip() == "PONG"
    denied = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", port, "PING"],
                            capture_output=True, text=True, timeout=10)
    assert "NOAUTH" in denied.stdout + denied.stderr


def test_postgres_accepts_the_himari_role_over_tcp_and_refuses_a_wrong_password(stack):
    port = HENV["HIMARI_PG_PORT"]
    password = (stack / "secrets/postgres_password").read_text().strip()
    cmd = ["psql", "-h", "127.0.0.1", "-p", port, "-U", "himari", "-d", "himari_analytics",
           "-tAc", "select current_user || ' ' || version()"]
    ok = subprocess.run(cmd, env={"PGPASSWORD": password, "PATH": "/usr/bin:/bin"},
                        capture_output=True, text=True, timeout=10)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("himari PostgreSQL 15")
    bad = subprocess.run(cmd, env={"PGPASSWORD": "wrong", "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=10)
    assert bad.returncode != 0 and "password authentication failed" in bad.stderr


def s3_client(stack, secret=None):
    return boto3.client(
        "s3", endpoint_url=f"http://127.0.0.1:{HENV['HIMARI_S3_PORT']}", region_name="us-east-1",
        aws_access_key_id=(stack / "secrets/s3_access_key").read_text().strip(),
        aws_secret_access_key=secret or (stack / "secrets/s3_secret_key").read_text().strip())


def test_s3_keeps_objects_in_its_bucket_for_the_generated_keys_only(stack):
    bucket = HENV["HIMARI_S3_BUCKET"]
    s3 = s3_client(stack)
    # A prefix of this test's own: the archiver's tests export into the same bucket.
    prefix = f"itest-stack/{uuid.uuid4().hex[:12]}/"
    key = prefix + "market_data/date=2026-12-01/exchange=binance/part-0.parquet"
    body = bytes(range(256)) * 64
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    assert [o["Key"] for o in listed["Contents"]] == [key]
    s3.delete_object(Bucket=bucket, Key=key)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3_client(stack, secret="wrong").list_objects_v2(Bucket=bucket)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
