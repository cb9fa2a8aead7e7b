"""Fixtures for the integration tests: real servers on loopback, started by the project's
own scripts (scripts/stack.sh, test profile ports), the project's binaries, and helpers to
run services and read topics with the same client library strategies use (confluent-kafka).

Nothing here is mocked. A test that needs a server gets it from the `kafka` (etc.) fixture,
which starts the server if it is not running and fails the test if it cannot: a test never
skips because a part is missing.
"""
import json
import os
import pathlib
import signal
import socket
import subprocess
import time
import uuid

import pytest
import requests
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("HIMARI_BUILD_DIR", ROOT / "build"))
BIN = BUILD / "bin"


def _env_from_script() -> dict:
    """The test profile's variables, exactly as scripts/env.sh derives them."""
    out = subprocess.run(
        ["bash", "-c", "export HIMARI_PROFILE=test && . scripts/env.sh && env -0"],
        cwd=ROOT, check=True, capture_output=True).stdout
    env = {}
    for item in out.split(b"\0"):
        if b"=" in item:
            k, v = item.split(b"=", 1)
            # env.sh's own bookkeeping (HIMARI_ENV_DERIVED*) stays out: every value is
            # passed explicitly, with the profile.
            if k.startswith(b"HIMARI_") and not k.startswith(b"HIMARI_ENV_"):
                env[k.decode()] = v.decode()
    return env


HENV = _env_from_script()
BOOTSTRAP = HENV["HIMARI_KAFKA_BOOTSTRAP"]
RUN_DIR = pathlib.Path(HENV["HIMARI_RUN_DIR"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stack(*names):
    subprocess.run([str(ROOT / "scripts/stack.sh"), "start", *names], cwd=ROOT, check=True,
                   env={**os.environ, **HENV})


@pytest.fixture(scope="session")
def kafka():
    """A running Kafka broker (KRaft, single node) with the system's topics."""
    _stack("kafka")
    subprocess.run([str(BIN / "himari-topics"), "--bootstrap", BOOTSTRAP, "--wait", "60",
                    "ensure"], check=True)
    return BOOTSTRAP


@pytest.fixture(scope="session")
def redis_server():
    """A running Redis with the stack's generated password: (port, password file)."""
    _stack("redis")
    return int(HENV["HIMARI_REDIS_PORT"]), RUN_DIR / "secrets/redis_password"


@pytest.fixture(scope="session")
def neo4j_server():
    """A running Neo4j with auth on (user neo4j, the stack's generated password):
    (bolt URI, HTTP URL, password file)."""
    _stack("neo4j")
    return (f"bolt://127.0.0.1:{HENV['HIMARI_NEO4J_BOLT_PORT']}",
            f"http://127.0.0.1:{HENV['HIMARI_NEO4J_HTTP_PORT']}",
            RUN_DIR / "secrets/neo4j_password")


def stack(verb: str, *names: str):
    """scripts/stack.sh VERB NAMES (e.g. stop redis, start redis), on the test profile."""
    subprocess.run([str(ROOT / "scripts/stack.sh"), verb, *names], cwd=ROOT, check=True,
                   env={**os.environ, **HENV}, capture_output=True)


@pytest.fixture(scope="session")
def admin(kafka):
    return AdminClient({"bootstrap.servers": kafka})


@pytest.fixture
def topics(admin):
    """A fresh set of the validator's topics (validator_env.Topics), deleted after the test."""
    from validator_env import Topics  # validator_env imports this module: import at use
    t = Topics(admin)
    yield t
    t.delete()


def create_topic(admin: AdminClient, partitions: int = 6, prefix: str = "t",
                 config: dict | None = None) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    fut = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                        config=config or {})])[name]
    fut.result(timeout=30)
    return name


@pytest.fixture
def topic_factory(admin):
    """Fresh topics for one test, deleted afterwards."""
    made = []

    def make(partitions=6, prefix="t", config=None):
        made.append(create_topic(admin, partitions, prefix, config))
        return made[-1]

    yield make
    if made:
        for fut in admin.delete_topics(made).values():
            try:
                fut.result(timeout=30)
            except Exception:  # noqa: BLE001 - cleanup only
                pass


def consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 60.0,
                read_committed: bool = True, with_meta: bool = False):
    """Read `topic` from the beginning until `expected` records (or the timeout); then keep
    reading for a moment to catch any extra (duplicate) records. Returns values (bytes),
    or (value, key, partition, offset, headers) tuples with with_meta."""
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"itest-{uuid.uuid4()}",
        "isolation.level": "read_committed" if read_committed else "read_uncommitted",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
    })
    c.subscribe([topic])
    out = []
    deadline = time.monotonic() + timeout
    settle_until = None
    try:
        while time.monotonic() < deadline:
            if len(out) >= expected and settle_until is None:
                settle_until = time.monotonic() + 2.0
            if settle_until and time.monotonic() > settle_until:
                break
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(str(msg.error()))
                continue
            if with_meta:
                out.append((msg.value(), msg.key(), msg.partition(), msg.offset(),
                            msg.headers() or []))
            else:
                out.append(msg.value())
    finally:
        c.close()
    return out


def produce_lines(bootstrap: str, topic: str, lines, key_fn=None, timestamp_fn=None):
    """Produce each line (bytes) with an idempotent producer; returns the count delivered."""
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                  "linger.ms": 5, "partitioner": "murmur2_random"})
    failed = []

    def on_delivery(err, _msg):
        if err:
            failed.append(err)

    for i, line in enumerate(lines):
        kwargs = {}
        if key_fn:
            kwargs["key"] = key_fn(line)
        if timestamp_fn:
            kwargs["timestamp"] = timestamp_fn(i, line)
        while True:
            try:
                p.produce(topic, line, on_delivery=on_delivery, **kwargs)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    assert p.flush(60) == 0, "producer could not flush"
    assert not failed, f"delivery failures: {failed[:3]}"
    return len(lines)


class Service:
    """A service process of ours with its own admin port and log file."""

    def __init__(self, name: str, args: list, env: dict, log: pathlib.Path, admin_port: int,
                 grpc_port: int):
        self.name, self.admin_port, self.grpc_port, self.log = name, admin_port, grpc_port, log
        self.grpc_target = f"127.0.0.1:{grpc_port}"
        self.logf = open(log, "ab")
        self.proc = subprocess.Popen([str(BIN / name), *args], env=env, stdout=self.logf,
                                     stderr=subprocess.STDOUT, cwd=ROOT)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.admin_port}{path}"

    def wait_ready(self, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n"
                                     + self.tail())
            try:
                r = requests.get(self.url("/readyz"), timeout=1)
                if r.status_code == 200:
                    return
                last = r.text
            except requests.RequestException as e:
                last = str(e)
            time.sleep(0.2)
        raise AssertionError(f"{self.name} not ready after {timeout}s ({last}):\n" + self.tail())

    def metrics(self) -> str:
        return requests.get(self.url("/metrics"), timeout=5).text

    def metric(self, name: str, labels: str = "") -> float:
        """Sum of the samples of a metric whose label set contains `labels`."""
        total, found = 0.0, False
        for line in self.metrics().splitlines():
            if line.startswith(name) and (line[len(name)] in " {") and labels in line:
                total += float(line.rsplit(" ", 1)[1])
                found = True
        return total if found else float("nan")

    def stop(self, sig=signal.SIGTERM, timeout: float = 40.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.name} did not stop in {timeout}s:\n" + self.tail())
        self.logf.close()
        return self.proc.returncode

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self.logf.close()

    def tail(self, n: int = 40) -> str:
        if not self.logf.closed:
            self.logf.flush()
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def log_events(self):
        """The service's structured log lines, parsed."""
        if not self.logf.closed:
            self.logf.flush()
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
        return out


@pytest.fixture
def service_factory(tmp_path):
    """Start services for a test; every one still running is stopped at the end."""
    started = []

    def start(name: str, args=(), env=None, admin_port=None, grpc_port=None) -> Service:
        port = admin_port or free_port()
        gport = grpc_port or free_port()
        full_env = {**os.environ, "HIMARI_ADMIN_PORT": str(port), "HIMARI_GRPC_PORT": str(gport),
                    **(env or {})}
        log = tmp_path / f"{name}-{len(started)}.log"
        svc = Service(name, list(args), full_env, log, port, gport)
        started.append(svc)
        return svc

    yield start
    for svc in started:
        if svc.proc.poll() is None:
            svc.stop(timeout=40)
