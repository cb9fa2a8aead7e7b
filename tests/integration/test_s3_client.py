"""The archiver's S3 client (services/archiver/s3.c), through its operator tool himari-s3,
against the real versitygw server scripts/stack.sh runs: what it stores is byte for byte what
boto3 reads back, keys with '=' are signed and listed right, a wrong secret is a clear error,
and an upload survives the server restarting under it.

Another run may share the test-profile server: every object here lives under a prefix of its
own, deleted at the end, and the server is left running as it was found (or as this started it).
"""
import hashlib
import os
import subprocess
import threading
import time
import uuid

import boto3
import pytest

from conftest import BIN, HENV, ROOT, RUN_DIR, stack

BUCKET = HENV["HIMARI_S3_BUCKET"]
ENV = {**os.environ, **HENV}


@pytest.fixture(scope="module")
def s3():
    """A running S3 server and a boto3 client for it with the stack's generated keys."""
    subprocess.run([str(ROOT / "scripts/stack.sh"), "start", "s3"], cwd=ROOT, check=True,
                   env={**HENV, "PATH": "/usr/sbin:/usr/bin:/bin"})
    return boto3.client(
        "s3", endpoint_url=f"http://127.0.0.1:{HENV['HIMARI_S3_PORT']}", region_name="us-east-1",
        aws_access_key_id=(RUN_DIR / "secrets/s3_access_key").read_text().strip(),
        aws_secret_access_key=(RUN_DIR / "secrets/s3_secret_key").read_text().strip())


@pytest.fixture
def prefix(s3):
    """A key prefix of this test's own; its objects are deleted afterwards."""
    p = f"itest-s3/{uuid.uuid4().hex[:12]}/"
    yield p
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=p).get("Contents", [])
    for obj in listed:
        s3.delete_object(Bucket=BUCKET, Key=obj["Key"])


def himari_s3(*args, timeout=120, **kw):
    return subprocess.run([str(BIN / "himari-s3"), *args], env=ENV, capture_output=True,
                          text=True, timeout=timeout, **kw)


def random_file(path, size):
    """A file of size pseudo-random bytes (distinct per part, so a misplaced part shows)."""
    with open(path, "wb") as f:
        f.write(os.urandom(size))
    return path


def stored(s3, key):
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def test_small_file_is_one_put_and_reads_back_identical(s3, prefix, tmp_path):
    src = random_file(tmp_path / "small.bin", 3000)
    key = prefix + "small.bin"
    r = himari_s3("put", str(src), key)
    assert r.returncode == 0, r.stderr
    assert "single PUT" in r.stdout
    assert stored(s3, key) == src.read_bytes()


def test_24mb_file_with_5mb_parts_goes_multipart_and_reads_back_identical(s3, prefix, tmp_path):
    src = random_file(tmp_path / "mid.bin", 24_000_000)
    key = prefix + "date=2026-12-01/exchange=binance/part-0.parquet"
    r = himari_s3("--part-size-mb", "5", "put", str(src), key)
    assert r.returncode == 0, r.stderr
    assert "5 parts (multipart)" in r.stdout
    body = stored(s3, key)
    assert len(body) == 24_000_000
    assert hashlib.sha256(body).digest() == hashlib.sha256(src.read_bytes()).digest()
    head = himari_s3("head", key)
    assert head.returncode == 0 and head.stdout.split()[0] == "24000000"


def test_empty_file_is_stored_as_an_empty_object(s3, prefix, tmp_path):
    src = tmp_path / "empty.bin"
    src.write_bytes(b"")
    key = prefix + "empty.bin"
    r = himari_s3("put", str(src), key)
    assert r.returncode == 0, r.stderr
    assert stored(s3, key) == b""


def test_keys_with_equals_are_listed_alike_by_boto3_and_himari_s3_across_pages(s3, prefix,
                                                                              tmp_path):
    src = random_file(tmp_path / "x.bin", 100)
    keys = sorted(f"{prefix}market_data/date=2026-12-0{d}/exchange=binance/part-0.parquet"
                  for d in range(1, 6))
    keys.append(prefix + "odd name+&=~.bin")
    keys.sort()
    for k in keys:
        r = himari_s3("put", str(src), k)
        assert r.returncode == 0, r.stderr
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]
    assert [o["Key"] for o in listed] == keys
    # Two keys a page: the listing has to follow its continuation tokens.
    r = himari_s3("--page-size", "2", "ls", prefix)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [line.split(None, 2)[2] for line in lines] == keys
    assert all(line.split()[0] == "100" for line in lines)
    narrower = himari_s3("ls", prefix + "market_data/date=2026-12-03/")
    assert narrower.stdout.split()[2:] == [keys[2]]


def test_head_of_a_missing_key_exits_3_with_not_found(s3, prefix):
    r = himari_s3("head", prefix + "absent.bin")
    assert r.returncode == 3
    assert "404" in r.stderr


def test_wrong_secret_fails_at_once_with_the_s3_error_and_never_prints_a_secret(s3, prefix,
                                                                               tmp_path):
    bad = tmp_path / "wrong_secret"
    bad.write_text("not-the-secret-0123456789\n")
    src = random_file(tmp_path / "s.bin", 10)
    started = time.monotonic()
    r = himari_s3("--secret-key-file", str(bad), "put", str(src), prefix + "denied.bin")
    assert r.returncode == 1
    assert "403 SignatureDoesNotMatch" in r.stderr, r.stderr
    assert (prefix + "denied.bin") in r.stderr
    assert time.monotonic() - started < 5, "a 403 must not be retried"
    real_secret = (RUN_DIR / "secrets/s3_secret_key").read_text().strip()
    for out in (r.stdout, r.stderr):
        assert "not-the-secret" not in out and real_secret not in out


def test_missing_key_file_is_a_usage_error(s3, tmp_path):
    r = himari_s3("--access-key-file", str(tmp_path / "nope"), "ls")
    assert r.returncode == 2
    assert "access-key file" in r.stderr


def throttled_put(src, key, while_running):
    """Runs a multipart put of src (5 MiB parts at 10 MB/s, so it takes a few seconds) and
    calls while_running() once its second part is stored. Returns (exit code, summary line,
    stderr)."""
    proc = subprocess.Popen([str(BIN / "himari-s3"), "--part-size-mb", "5", "--max-attempts",
                             "10", "--limit-mbps", "10", "put", str(src), key], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err_lines = []

    def read_stderr():
        for line in proc.stderr:
            err_lines.append(line)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while not any("part 2/" in line for line in err_lines):
            assert proc.poll() is None, "".join(err_lines)
            assert time.monotonic() < deadline, "no progress: " + "".join(err_lines)
            time.sleep(0.05)
        while_running()
        proc.wait(timeout=120)  # stdout is one summary line: it cannot fill its pipe
        out = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(5)
    return proc.returncode, out, "".join(err_lines)


def summary_count(out, what):
    """The N of "N retries" (or restarts) in himari-s3 put's summary line."""
    return int(out.split(f" {what}")[0].rsplit(" ", 1)[1])


def test_upload_interrupted_by_an_s3_restart_is_retried_and_completes_identical(s3, prefix,
                                                                               tmp_path):
    src = random_file(tmp_path / "big.bin", 30_000_000)
    key = prefix + "date=2026-12-02/restarted.bin"
    rc, out, err = throttled_put(src, key, lambda: stack("restart", "s3"))
    assert rc == 0, err
    assert "6 parts (multipart)" in out
    assert summary_count(out, "retries") + summary_count(out, "restarts") > 0, out
    assert stored(s3, key) == src.read_bytes()


def test_upload_whose_id_is_lost_starts_over_and_completes_identical(s3, prefix, tmp_path):
    src = random_file(tmp_path / "big.bin", 30_000_000)
    key = prefix + "date=2026-12-02/lost-upload.bin"

    def abort_it():
        # What a store that forgot the upload looks like: the next part gets NoSuchUpload.
        uploads = s3.list_multipart_uploads(Bucket=BUCKET, Prefix=key).get("Uploads", [])
        assert [u["Key"] for u in uploads] == [key]
        s3.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=uploads[0]["UploadId"])

    rc, out, err = throttled_put(src, key, abort_it)
    assert rc == 0, err
    assert summary_count(out, "restarts") == 1, out
    assert stored(s3, key) == src.read_bytes()
    assert not s3.list_multipart_uploads(Bucket=BUCKET, Prefix=key).get("Uploads")
