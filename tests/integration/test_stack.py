"""The servers scripts/stack.sh starts answer on loopback with the credentials it generated,
and refuse clients without them."""
import subprocess

import pytest

from conftest import HENV, ROOT, RUN_DIR


@pytest.fixture(scope="module")
def stack():
    subprocess.run([str(ROOT / "scripts/stack.sh"), "start", "redis", "postgres"], cwd=ROOT,
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
