"""The health-gateway (docs/HEALTH_GATEWAY.md) against real servers only: a real
ingest-validator killed with SIGKILL and restarted, the stack's Redis, PostgreSQL and S3 up,
misconfigured and stopped, a TCP server that accepts and never answers, Alertmanager's webhook
payload, grpc.health.v1 through grpcio, the status page rendered by headless Chromium, and the
whole alert path: Prometheus scraping the services, its ServiceDown rule, Alertmanager and the
gateway's webhook.

Every wait is bounded and checks what it waits for; every process and thread a test starts is
stopped by the test (service_factory stops the services; the monitoring is put back as found).
"""
import html.parser
import json
import os
import pathlib
import signal
import socket
import subprocess
import threading
import time
import uuid

import grpc
import pytest
import requests

from conftest import HENV, ROOT, RUN_DIR, stack
from himari_grpc import health_stub, modules, serving_status_name
from validator_env import Topics

PROBE_INTERVAL_MS = 500
PROBE_TIMEOUT_MS = 300
# A kill must show on /readyz by the second round after it, plus the answer's own slack.
DOWN_WITHIN_S = (2 * PROBE_INTERVAL_MS + 500) / 1000
# What the gateway says of a probe its timeout ended (gateway.c, on_timeout).
TIMED_OUT = f"timed out after {PROBE_TIMEOUT_MS} ms"
DEPENDENCIES_OFF = {"HIMARI_REDIS_HOST": "", "HIMARI_POSTGRES_HOST": "", "HIMARI_NEO4J_URL": "",
                    "HIMARI_S3_ENDPOINT": ""}


# ---- helpers -------------------------------------------------------------------------------------


class NotYet:
    """A falsy answer of a wait_until check that says what it saw instead."""

    def __init__(self, seen):
        self.seen = seen

    def __bool__(self):
        return False

    def __repr__(self):
        return repr(self.seen)


def wait_until(check, timeout: float, what: str, every: float = 0.05):
    """Call check() until it returns a truthy value (returned) or `timeout` s pass (then fail,
    naming `what` and the last value or error seen)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = check()
            if value:
                return value
            last = value
        except (requests.RequestException, ValueError, KeyError) as e:
            last = f"{type(e).__name__}: {e}"
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")
        time.sleep(every)


def gateway_env(kafka: str, services: str = "", critical: str = "kafka", **deps) -> dict:
    """The gateway's environment: 500 ms rounds, 300 ms timeout, every dependency off but
    Kafka unless `deps` (HIMARI_* variables) turns it on."""
    return {"HIMARI_KAFKA_BOOTSTRAP_SERVERS": kafka,
            "HIMARI_SERVICE_INSTANCE_ID": f"gateway-{uuid.uuid4().hex[:6]}",
            "HIMARI_GATEWAY_PROBE_INTERVAL_MS": str(PROBE_INTERVAL_MS),
            "HIMARI_GATEWAY_PROBE_TIMEOUT_MS": str(PROBE_TIMEOUT_MS),
            "HIMARI_GATEWAY_SERVICES": services,
            "HIMARI_GATEWAY_CRITICAL": critical,
            **DEPENDENCIES_OFF, **deps}


def wait_alive(svc, timeout: float = 30.0):
    """Until the service's /healthz answers 200 (for a gateway whose /readyz may stay 503)."""
    def alive():
        assert svc.proc.poll() is None, \
            f"{svc.name} exited with {svc.proc.returncode}:\n{svc.tail()}"
        return requests.get(svc.url("/healthz"), timeout=1).status_code == 200
    wait_until(alive, timeout, f"{svc.name} /healthz")


def status(gw) -> dict:
    r = requests.get(gw.url("/api/v1/status"), timeout=2)
    assert r.status_code == 200, r.text
    return r.json()


def part(st: dict, name: str) -> dict:
    found = [p for p in st["parts"] if p["name"] == name]
    assert len(found) == 1, f"part {name}: {[p['name'] for p in st['parts']]}"
    return found[0]


def wait_state(gw, name: str, state: str, timeout: float = 5.0) -> dict:
    """Until the gateway's part `name` is `state`; returns the part."""
    def check():
        p = part(status(gw), name)
        return p if p["state"] == state else NotYet((p["state"], p["last_error"]))
    return wait_until(check, timeout, f"gateway part {name} {state}")


def readyz(gw):
    r = requests.get(gw.url("/readyz"), timeout=2)
    return r.status_code, r.json()


def validator_env(topics: Topics, kafka: str) -> dict:
    return topics.env(kafka, f"hg-{uuid.uuid4().hex[:6]}")


@pytest.fixture
def deps_env(kafka, redis_server):
    """The env the services get for the stack's Redis, PostgreSQL and S3 (scripts/run.sh
    service_env), with the three servers running."""
    stack("start", "postgres", "s3")
    redis_port, redis_password = redis_server
    secrets = RUN_DIR / "secrets"
    return {"HIMARI_REDIS_HOST": "127.0.0.1", "HIMARI_REDIS_PORT": str(redis_port),
            "HIMARI_REDIS_PASSWORD_FILE": str(redis_password),
            "HIMARI_POSTGRES_HOST": "127.0.0.1", "HIMARI_POSTGRES_PORT": HENV["HIMARI_PG_PORT"],
            "HIMARI_POSTGRES_PASSWORD_FILE": str(secrets / "postgres_password"),
            "HIMARI_S3_ENDPOINT": f"http://127.0.0.1:{HENV['HIMARI_S3_PORT']}",
            "HIMARI_S3_BUCKET": HENV["HIMARI_S3_BUCKET"],
            "HIMARI_S3_ACCESS_KEY_FILE": str(secrets / "s3_access_key"),
            "HIMARI_S3_SECRET_KEY_FILE": str(secrets / "s3_secret_key")}


# ---- the status page in headless Chromium -----------------------------------------------------

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
         "track", "wbr"}


class Page(html.parser.HTMLParser):
    """The DOM Chromium dumped: every element with its attributes and its ancestors' ids."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.elements, self._open = [], []
        self.feed(text)
        self.close()

    def _element(self, tag, attrs):
        el = {"tag": tag, "attrs": {k: v or "" for k, v in attrs},
              "within": [e["attrs"]["id"] for e in self._open if e["attrs"].get("id")]}
        self.elements.append(el)
        return el

    def handle_starttag(self, tag, attrs):
        el = self._element(tag, attrs)
        if tag not in _VOID:
            self._open.append(el)

    def handle_startendtag(self, tag, attrs):
        self._element(tag, attrs)

    def handle_endtag(self, tag):
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i]["tag"] == tag:
                del self._open[i:]
                break

    def by_id(self, id_: str) -> dict:
        found = [e for e in self.elements if e["attrs"].get("id") == id_]
        assert len(found) == 1, f"#{id_}: {len(found)} elements"
        return found[0]

    def having(self, attr: str, value: str, within: str | None = None) -> list:
        return [e for e in self.elements if e["attrs"].get(attr) == value
                and (within is None or within in e["within"])]


def render_status_page(gw, tmp_path: pathlib.Path) -> Page:
    """GET /status in headless Chromium, after its scripts had 4 s of virtual time; the page
    must have drawn an answer of api/v1/status (the banner is no longer "pending")."""
    profile = tmp_path / f"chromium-{uuid.uuid4().hex[:6]}"
    proc = subprocess.Popen(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={profile}", "--virtual-time-budget=4000", "--dump-dom",
         gw.url("/status")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError("chromium did not dump the DOM in 90 s")
    assert proc.returncode == 0, err[-2000:]
    page = Page(out)
    ready = page.by_id("ready")
    assert "pending" not in ready["attrs"].get("class", "").split(), \
        "the page never drew an answer of api/v1/status"
    assert "hidden" in page.by_id("unreachable")["attrs"], \
        "the page says the gateway is unreachable"
    return page


def assert_page_part(page: Page, name: str, state: str):
    """Every element of part `name` (the diagram's box and the table's row) shows `state`."""
    els = page.having("data-part", name)
    assert len(els) >= 2, f"{name}: {len(els)} elements with data-part (diagram and table expected)"
    for e in els:
        assert e["attrs"].get("data-state") == state, (name, e)
        assert f"state-{state}" in e["attrs"].get("class", "").split(), (name, e)


# ---- 1. a service killed and restarted ----------------------------------------------------------


def start_validator_and_gateway(service_factory, kafka, topics):
    """A real validator and a gateway probing it (critical: it and Kafka), both ready."""
    venv = validator_env(topics, kafka)
    validator = service_factory("ingest-validator", env=venv)
    validator.wait_ready()
    gw = service_factory("health-gateway", env=gateway_env(
        kafka, services=f"ingest-validator=http://127.0.0.1:{validator.admin_port}",
        critical="ingest-validator,kafka", HIMARI_GATEWAY_KAFKA_GROUPS=topics.group))
    gw.wait_ready(timeout=30)
    return validator, venv, gw


def kill_and_time_readyz_503(gw, validator) -> tuple[float, dict]:
    """SIGKILL the validator; seconds until the gateway's /readyz answered 503, and its body."""
    t0 = time.monotonic()
    validator.kill9()

    def down():
        code, body = readyz(gw)
        return body if code == 503 else NotYet((code, body))
    body = wait_until(down, 10, "gateway /readyz 503 after the kill", every=0.02)
    return time.monotonic() - t0, body


def test_killed_validator_is_down_on_readyz_status_and_page_then_up_after_restart(
        kafka, topics, service_factory, tmp_path):
    validator, venv, gw = start_validator_and_gateway(service_factory, kafka, topics)
    p = wait_state(gw, "ingest-validator", "up")
    assert p["critical"] and p["target"] == f"http://127.0.0.1:{validator.admin_port}"
    assert p["service_state"] == "RUNNING" and p["last_error"] == "" and p["last_ok_ms"] > 0
    assert gw.metric("himari_gateway_part_up", 'part="ingest-validator"') == 1
    page = render_status_page(gw, tmp_path)
    assert page.by_id("ready")["attrs"]["data-ready"] == "true"
    assert_page_part(page, "ingest-validator", "up")
    up_since = p["since_ms"]

    took, body = kill_and_time_readyz_503(gw, validator)
    assert took <= DOWN_WITHIN_S, f"/readyz said 503 {took:.3f} s after the kill"
    print(f"/readyz 503 {took * 1000:.0f} ms after the kill")
    assert body["ready"] is False and body["reason"].startswith("down: ingest-validator ("), body
    st = status(gw)
    p = part(st, "ingest-validator")
    assert st["ready"] is False and st["reason"].startswith("down: ingest-validator (")
    assert p["state"] == "down" and p["last_error"] and p["last_error"] in st["reason"], p
    assert p["since_ms"] > up_since
    assert p["failures"] >= 1
    assert any(e["part"] == "ingest-validator" for e in st["errors"]), st["errors"]
    assert gw.metric("himari_gateway_part_up", 'part="ingest-validator"') == 0
    assert part(st, "kafka")["state"] == "up"
    page = render_status_page(gw, tmp_path)
    assert page.by_id("ready")["attrs"]["data-ready"] == "false"
    assert_page_part(page, "ingest-validator", "down")
    assert_page_part(page, "kafka", "up")

    again = service_factory("ingest-validator", env=venv, admin_port=validator.admin_port)
    again.wait_ready(timeout=90)
    t0 = time.monotonic()
    wait_until(lambda: readyz(gw)[0] == 200, 10, "gateway /readyz 200 after the restart",
               every=0.02)
    assert time.monotonic() - t0 <= DOWN_WITHIN_S
    p = part(status(gw), "ingest-validator")
    assert p["state"] == "up" and p["last_error"] == "", p
    assert gw.metric("himari_gateway_part_up", 'part="ingest-validator"') == 1
    page = render_status_page(gw, tmp_path)
    assert page.by_id("ready")["attrs"]["data-ready"] == "true"
    assert_page_part(page, "ingest-validator", "up")
    assert gw.stop() == 0, gw.tail()


# ---- 2. dependencies up, misconfigured and stopped -----------------------------------------------


def part_up_metrics(gw) -> dict:
    """himari_gateway_part_up by part, from /metrics."""
    out = {}
    for line in gw.metrics().splitlines():
        if line.startswith("himari_gateway_part_up{"):
            labels, value = line.rsplit(" ", 1)
            out[labels.split('part="', 1)[1].split('"', 1)[0]] = float(value)
    return out


def test_redis_postgres_s3_up_then_down_with_clear_errors_and_metrics_agree(
        kafka, deps_env, service_factory, tmp_path):
    wrong = tmp_path / "wrong_password"
    wrong.write_text("not-the-password")
    bucket = f"no-such-bucket-{uuid.uuid4().hex[:6]}"
    good = service_factory("health-gateway", env=gateway_env(kafka, **deps_env))
    bad = service_factory("health-gateway", env=gateway_env(
        kafka, **{**deps_env, "HIMARI_S3_BUCKET": bucket,
                  "HIMARI_POSTGRES_PASSWORD_FILE": str(wrong),
                  "HIMARI_REDIS_PASSWORD_FILE": str(wrong)}))
    good.wait_ready(timeout=30)
    wait_alive(bad)
    wait_state(bad, "kafka", "up")
    for name in ("kafka", "redis", "postgres", "s3"):
        p = wait_state(good, name, "up")
        assert p["last_error"] == "" and p["last_ok_ms"] > 0, p
    assert part_up_metrics(good) == {"kafka": 1, "redis": 1, "postgres": 1, "s3": 1}

    s3 = wait_state(bad, "s3", "down")
    assert s3["last_error"] == f"HTTP 404: bucket {bucket} does not exist", s3
    assert s3["target"].endswith("/" + bucket)
    pg = wait_state(bad, "postgres", "down")
    assert "password authentication failed" in pg["last_error"], pg
    redis = wait_state(bad, "redis", "down")
    assert "WRONGPASS" in redis["last_error"], redis
    assert "not-the-password" not in json.dumps(status(bad)), "a password in /api/v1/status"
    assert part_up_metrics(bad) == {"kafka": 1, "redis": 0, "postgres": 0, "s3": 0}
    for name in ("redis", "postgres", "s3"):
        assert bad.metric("himari_gateway_probe_failures_total", f'part="{name}"') >= 1
    # A part that is not critical does not make the gateway unready.
    assert readyz(bad)[0] == 200

    # The real Redis stopped, then started again: down with why, then up on the same gateway.
    try:
        stack("stop", "redis")
        redis = wait_state(good, "redis", "down")
        assert redis["last_error"], redis
        assert part_up_metrics(good) == {"kafka": 1, "redis": 0, "postgres": 1, "s3": 1}
        assert any(e["part"] == "redis" for e in status(good)["errors"])
    finally:
        stack("start", "redis")
    redis = wait_state(good, "redis", "up", timeout=30)
    assert redis["last_error"] == ""
    assert part_up_metrics(good) == {"kafka": 1, "redis": 1, "postgres": 1, "s3": 1}
    assert good.stop() == 0 and bad.stop() == 0


# ---- 3. a dependency that accepts and never answers ----------------------------------------------


class SilentServer:
    """Listens on a free loopback port, accepts every connection and never answers; the
    sockets stay open until close()."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.conns.append(conn)

    def close(self):
        self._stop.set()
        self._thread.join(5)
        assert not self._thread.is_alive()
        for c in self.conns:
            c.close()
        self.sock.close()


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# Parts pointed at the silent server: Neo4j and PostgreSQL, and over the same HTTP client as
# Neo4j's, a service and S3.
SILENT_PARTS = ("neo4j", "postgres", "ingest-validator", "s3")


def test_silent_dependencies_time_out_while_the_gateway_keeps_answering(
        kafka, service_factory):
    silent = SilentServer()
    try:
        url = f"http://127.0.0.1:{silent.port}"
        gw = service_factory("health-gateway", env=gateway_env(
            kafka, services=f"ingest-validator={url}", HIMARI_NEO4J_URL=url,
            HIMARI_POSTGRES_HOST="127.0.0.1", HIMARI_POSTGRES_PORT=str(silent.port),
            HIMARI_S3_ENDPOINT=url))
        gw.wait_ready(timeout=30)  # critical is Kafka only
        for name in SILENT_PARTS:
            p = wait_state(gw, name, "down", timeout=4 * PROBE_INTERVAL_MS / 1000)
            assert p["last_error"] == TIMED_OUT, p
        errors = status(gw)["errors"]
        for name in SILENT_PARTS:
            assert any(e["part"] == name and e["error"] == TIMED_OUT for e in errors), errors

        st0 = status(gw)
        fds0 = open_fds(gw.proc.pid)
        slowest = {"/healthz": 0.0, "/api/v1/status": 0.0}
        t_end = time.monotonic() + 10 * PROBE_INTERVAL_MS / 1000
        answers = 0
        while time.monotonic() < t_end:
            for path in slowest:
                t0 = time.monotonic()
                r = requests.get(gw.url(path), timeout=2)
                took = time.monotonic() - t0
                assert r.status_code == 200, (path, r.status_code, r.text)
                slowest[path] = max(slowest[path], took)
                answers += 1
            time.sleep(0.05)
        assert answers >= 40
        assert all(t < 0.2 for t in slowest.values()), f"slowest answers (s): {slowest}"

        st1 = status(gw)
        assert st1["rounds"] >= st0["rounds"] + 8, (st0["rounds"], st1["rounds"])
        for name in SILENT_PARTS:
            p0, p1 = part(st0, name), part(st1, name)
            assert p1["state"] == "down" and p1["last_error"] == TIMED_OUT, p1
            assert p1["checks"] >= p0["checks"] + 8 and p1["failures"] >= p0["failures"] + 8
            assert gw.metric("himari_gateway_part_up", f'part="{name}"') == 0
            # A timed-out probe is observed as taking the timeout (libuv's timers are whole
            # ms from the loop's cached clock: a little under is the timer, not the probe).
            mean = (gw.metric("himari_gateway_probe_seconds_sum", f'part="{name}"')
                    / gw.metric("himari_gateway_probe_seconds_count", f'part="{name}"'))
            assert abs(mean - PROBE_TIMEOUT_MS / 1000) < 0.05, (name, mean)
        assert part(st1, "kafka")["state"] == "up"
        # Every round connected anew and the abandoned connections were closed, not kept.
        assert len(silent.conns) >= 8 * len(SILENT_PARTS), len(silent.conns)
        assert open_fds(gw.proc.pid) <= fds0 + 4, (fds0, open_fds(gw.proc.pid))
        assert gw.stop() == 0, gw.tail()
    finally:
        silent.close()


# ---- 4. Alertmanager's webhook -------------------------------------------------------------------


def notification(status_: str, alerts: list) -> dict:
    """A webhook notification as Alertmanager sends it (payload version 4)."""
    return {"version": "4", "status": status_, "receiver": "health-gateway",
            "groupKey": '{}:{alertname="ServiceDown"}', "truncatedAlerts": 0,
            "groupLabels": {"alertname": "ServiceDown"}, "commonLabels": {},
            "commonAnnotations": {}, "externalURL": "http://127.0.0.1:9093", "alerts": alerts}


def alert(status_: str, name: str, fingerprint: str, service: str = "archiver") -> dict:
    return {"status": status_,
            "labels": {"alertname": name, "service": service, "severity": "critical"},
            "annotations": {"summary": f"{service} is down"},
            "startsAt": "2026-12-03T17:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z" if status_ == "firing" else "2026-12-03T17:05:00Z",
            "generatorURL": "http://127.0.0.1:9090/graph", "fingerprint": fingerprint}


def post_alerts(gw, body) -> requests.Response:
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return requests.post(gw.url("/api/v1/alerts"), data=data, timeout=5,
                         headers={"Content-Type": "application/json"})


def notifications(gw) -> tuple[float, float, float]:
    return (gw.metric("himari_gateway_alert_notifications_total", 'status="firing"'),
            gw.metric("himari_gateway_alert_notifications_total", 'status="resolved"'),
            gw.metric("himari_gateway_alerts_firing"))


def test_alertmanager_webhook_firing_shows_resolved_removes_malformed_refused(
        kafka, service_factory, tmp_path):
    gw = service_factory("health-gateway", env=gateway_env(kafka))
    gw.wait_ready(timeout=30)
    assert status(gw)["alerts"] == [] and notifications(gw) == (0, 0, 0)

    r = post_alerts(gw, notification("firing", [alert("firing", "ServiceDown", "abc")]))
    assert r.status_code == 200, r.text
    alerts = status(gw)["alerts"]
    assert len(alerts) == 1, alerts
    a = alerts[0]
    assert (a["name"], a["status"], a["severity"], a["fingerprint"]) == \
        ("ServiceDown", "firing", "critical", "abc"), a
    assert a["summary"] == "archiver is down" and a["starts_at"] == "2026-12-03T17:00:00Z"
    assert a["labels"] == {"alertname": "ServiceDown", "service": "archiver",
                           "severity": "critical"}
    assert notifications(gw) == (1, 0, 1)
    # Alertmanager's repeat of the same alert (same fingerprint) updates it, never adds one.
    repeat = alert("firing", "ServiceDown", "abc")
    repeat["annotations"]["summary"] = "archiver is still down"
    assert post_alerts(gw, notification("firing", [repeat])).status_code == 200
    alerts = status(gw)["alerts"]
    assert [x["summary"] for x in alerts] == ["archiver is still down"], alerts
    assert notifications(gw) == (2, 0, 1)
    page = render_status_page(gw, tmp_path)
    shown = page.having("data-alert", "ServiceDown", within="alerts")
    assert len(shown) == 1, page.having("data-alert", "ServiceDown")

    # Each malformed notification: 400 naming the problem, and nothing changed.
    before = status(gw)["alerts"]
    malformed = [
        ("{not json", "not JSON"),
        (json.dumps({"version": "4", "status": "firing"}), '"alerts" array'),
        (json.dumps(notification("firing", [
            alert("firing", "Other", "def"),
            {**alert("firing", "Third", "ghi"), "fingerprint": ""}])), "alerts[1]"),
        (json.dumps(notification("firing", [{**alert("firing", "Other", "def"),
                                             "status": "burning"}])), "alerts[0]"),
    ]
    for body, names in malformed:
        r = post_alerts(gw, body)
        assert r.status_code == 400, (body, r.status_code, r.text)
        assert names in r.json()["error"], (body, r.json())
        assert status(gw)["alerts"] == before, body
        assert notifications(gw) == (2, 0, 1), body

    r = post_alerts(gw, notification("resolved", [alert("resolved", "ServiceDown", "abc")]))
    assert r.status_code == 200, r.text
    assert status(gw)["alerts"] == []
    assert notifications(gw) == (2, 1, 0)
    page = render_status_page(gw, tmp_path)
    assert page.having("data-alert", "ServiceDown") == []
    assert gw.stop() == 0, gw.tail()


# ---- 5. grpc.health.v1 ---------------------------------------------------------------------------


class HealthWatch:
    """A grpc.health.v1 Watch on one service in a thread: the statuses it streamed, each
    change once, in order. stop() cancels the call."""

    def __init__(self, target: str, service: str):
        m = modules()
        self.channel = grpc.insecure_channel(target)
        self.call = health_stub(self.channel).Watch(
            m.health_pb2.HealthCheckRequest(service=service), timeout=300)
        self.seen, self.error = [], None
        self.changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        try:
            for resp in self.call:
                name = serving_status_name(resp.status)
                with self.changed:
                    if not self.seen or self.seen[-1] != name:
                        self.seen.append(name)
                    self.changed.notify_all()
        except grpc.RpcError as e:
            with self.changed:
                self.error = e.code()
                self.changed.notify_all()

    def wait_for(self, sequence: list, timeout: float):
        with self.changed:
            ok = self.changed.wait_for(lambda: self.seen == sequence or self.error, timeout)
        assert ok and self.seen == sequence, (self.seen, self.error)

    def stop(self):
        self.call.cancel()
        self._thread.join(10)
        assert not self._thread.is_alive()
        self.channel.close()


def health_check(target: str, service: str) -> str:
    m = modules()
    with grpc.insecure_channel(target) as ch:
        try:
            resp = health_stub(ch).Check(m.health_pb2.HealthCheckRequest(service=service),
                                         timeout=2)
            return serving_status_name(resp.status)
        except grpc.RpcError as e:
            return e.code().name


def test_grpc_health_check_and_watch_follow_the_killed_and_restarted_validator(
        kafka, topics, service_factory):
    validator, venv, gw = start_validator_and_gateway(service_factory, kafka, topics)
    wait_until(lambda: health_check(gw.grpc_target, "") == "SERVING", 5, 'Check("") SERVING')
    for name in ("ingest-validator", "kafka"):
        assert health_check(gw.grpc_target, name) == "SERVING", name
    assert health_check(gw.grpc_target, "no-such-part") == "NOT_FOUND"

    watch = HealthWatch(gw.grpc_target, "ingest-validator")
    try:
        watch.wait_for(["SERVING"], 5)
        validator.kill9()
        watch.wait_for(["SERVING", "NOT_SERVING"], DOWN_WITHIN_S + 1)
        assert health_check(gw.grpc_target, "ingest-validator") == "NOT_SERVING"
        # "" follows /readyz, whose critical part is down; Kafka's own name stays SERVING.
        wait_until(lambda: health_check(gw.grpc_target, "") == "NOT_SERVING", 2,
                   'Check("") NOT_SERVING')
        assert health_check(gw.grpc_target, "kafka") == "SERVING"

        again = service_factory("ingest-validator", env=venv, admin_port=validator.admin_port)
        again.wait_ready(timeout=90)
        watch.wait_for(["SERVING", "NOT_SERVING", "SERVING"], DOWN_WITHIN_S + 1)
        assert health_check(gw.grpc_target, "ingest-validator") == "SERVING"
        wait_until(lambda: health_check(gw.grpc_target, "") == "SERVING", 2,
                   'Check("") SERVING again')
    finally:
        watch.stop()
    assert watch.error == grpc.StatusCode.CANCELLED, watch.error
    assert gw.stop() == 0, gw.tail()


# ---- 6. ServiceDown through Prometheus, Alertmanager and the webhook -----------------------------

BASE = int(HENV["HIMARI_PORT_BASE"])
GATEWAY_PORT, VALIDATOR_PORT = BASE + 80, BASE + 81  # the profile's admin ports (scripts/run.sh)
PROM = f"http://127.0.0.1:{HENV['HIMARI_PROM_PORT']}"
AM = f"http://127.0.0.1:{HENV['HIMARI_AM_PORT']}"
FAST_MONITORING = {"HIMARI_PROM_SCRAPE_INTERVAL": "1s", "HIMARI_PROM_EVAL_INTERVAL": "1s",
                   "HIMARI_PROM_RULE_FOR": "2s", "HIMARI_AM_GROUP_WAIT": "1s",
                   "HIMARI_AM_GROUP_INTERVAL": "1s", "HIMARI_AM_REPEAT_INTERVAL": "1m",
                   "HIMARI_PROM_SERVICES": f"health-gateway=127.0.0.1:{GATEWAY_PORT},"
                                           f"ingest-validator=127.0.0.1:{VALIDATOR_PORT}"}
MONITORING = ("prometheus", "alertmanager")


def monitoring(verb: str, knobs: dict | None = None) -> int:
    """scripts/stack.sh VERB prometheus alertmanager with the monitoring knobs; its status."""
    env = {k: v for k, v in {**os.environ, **HENV}.items()
           if not k.startswith(("HIMARI_PROM_", "HIMARI_AM_"))
           or k in ("HIMARI_PROM_PORT", "HIMARI_AM_PORT")}
    run = subprocess.run([str(ROOT / "scripts/stack.sh"), verb, *MONITORING], cwd=ROOT,
                         env={**env, **(knobs or {})}, capture_output=True, text=True,
                         timeout=120)
    if verb != "status":
        assert run.returncode == 0, run.stdout + run.stderr
    return run.returncode


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def prom_service_down(service: str):
    alerts = requests.get(f"{PROM}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return [a for a in alerts if a["labels"].get("alertname") == "ServiceDown"
            and a["labels"].get("service") == service and a["state"] == "firing"]


def am_service_down(service: str):
    alerts = requests.get(f"{AM}/api/v2/alerts", timeout=5,
                          params={"filter": ['alertname="ServiceDown"',
                                             f'service="{service}"']}).json()
    return [a for a in alerts if a["status"]["state"] == "active"]


def gateway_service_down(gw, service: str):
    return [a for a in status(gw)["alerts"]
            if a["name"] == "ServiceDown" and a["labels"].get("service") == service]


def validator_target_health():
    targets = requests.get(f"{PROM}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
    return [t["health"] for t in targets if t["labels"].get("service") == "ingest-validator"]


def test_service_down_fires_in_prometheus_reaches_alertmanager_and_the_gateway_then_resolves(
        kafka, topics, service_factory):
    for port in (GATEWAY_PORT, VALIDATOR_PORT):
        assert port_free(port), f"127.0.0.1:{port} (a profile admin port) is taken"
    was_running = monitoring("status") == 0
    monitoring("stop")
    try:
        monitoring("start", FAST_MONITORING)
        venv = validator_env(topics, kafka)
        validator = service_factory("ingest-validator", env=venv, admin_port=VALIDATOR_PORT)
        gw = service_factory("health-gateway", admin_port=GATEWAY_PORT, env=gateway_env(
            kafka, services=f"ingest-validator=http://127.0.0.1:{VALIDATOR_PORT}",
            critical="ingest-validator,kafka"))
        validator.wait_ready()
        gw.wait_ready(timeout=30)
        wait_until(lambda: validator_target_health() == ["up"], 30,
                   "Prometheus scraping the validator")
        assert prom_service_down("ingest-validator") == []
        assert gateway_service_down(gw, "ingest-validator") == []

        t0 = time.monotonic()
        validator.kill9()
        wait_until(lambda: prom_service_down("ingest-validator"), 60,
                   "ServiceDown firing in Prometheus", every=0.25)
        fired_s = time.monotonic() - t0
        am = wait_until(lambda: am_service_down("ingest-validator"), 60 - fired_s,
                        "ServiceDown in Alertmanager", every=0.25)
        assert am[0]["labels"]["severity"] == "critical"
        got = wait_until(lambda: gateway_service_down(gw, "ingest-validator"),
                         60 - (time.monotonic() - t0), "ServiceDown at the gateway", every=0.25)
        at_gateway_s = time.monotonic() - t0
        assert len(got) == 1 and got[0]["status"] == "firing" and got[0]["severity"] == "critical"
        assert got[0]["fingerprint"] == am[0]["fingerprint"], (got, am)
        assert got[0]["summary"] == "ingest-validator is down", got
        assert gw.metric("himari_gateway_alert_notifications_total", 'status="firing"') >= 1
        assert at_gateway_s <= 60, at_gateway_s

        # Its /metrics answers (up == 1) while it still joins its group, before /readyz does.
        t1 = time.monotonic()
        again = service_factory("ingest-validator", env=venv, admin_port=VALIDATOR_PORT)
        wait_until(lambda: not gateway_service_down(gw, "ingest-validator"), 60,
                   "ServiceDown resolved at the gateway", every=0.25)
        resolved_s = time.monotonic() - t1
        assert prom_service_down("ingest-validator") == []
        assert am_service_down("ingest-validator") == []
        again.wait_ready(timeout=90)
        assert gw.metric("himari_gateway_alert_notifications_total", 'status="resolved"') >= 1
        print(f"ServiceDown: firing in Prometheus {fired_s:.1f} s, at the gateway "
              f"{at_gateway_s:.1f} s after the kill; resolved {resolved_s:.1f} s after the restart")
        assert gw.stop() == 0, gw.tail()
    finally:
        monitoring("stop")
        if was_running:
            monitoring("start")
