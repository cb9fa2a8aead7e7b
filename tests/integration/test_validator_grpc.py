"""ControlService and grpc.health.v1 on a live ingest-validator, called with grpcio (the
client strategies and operators use) and with himarictl: every method and error code,
deadlines, cancellation without leaks (ASan/LSan build), Pause/Resume under load with the
output still equal to the replay, Drain with nothing lost, health transitions."""
import json
import os
import subprocess
import threading
import time

import grpc
import pytest

from conftest import BIN, ROOT, consume_all
from himari_grpc import bearer, control_stub, health_stub, modules
from validator_env import assert_equal_to_replay, produce_file, replay, simulate

TOKEN = "s3cret-token-for-tests"
ASAN_BIN = ROOT / "build-asan" / "bin"


@pytest.fixture
def token_file(tmp_path):
    f = tmp_path / "grpc_token"
    f.write_text(TOKEN + "\n")
    f.chmod(0o600)  # as a deploy writes it; 0644 would be warned about at load
    return f


def start(service_factory, kafka, topics, token_file, instance, extra=None, args=()):
    env = topics.env(kafka, instance, extra={"HIMARI_GRPC_TOKEN_FILE": str(token_file),
                                             **(extra or {})})
    svc = service_factory("ingest-validator", env=env, args=args)
    svc.wait_ready()
    return svc


def lag_total(stub, m):
    st = stub.GetStatus(m.control_pb2.GetStatusRequest(), timeout=5)
    return sum(max(0, p.lag) for p in st.partitions), st


def test_every_method_and_error_code(kafka, topics, token_file, service_factory, tmp_path):
    m = modules()
    cfg = tmp_path / "iv.yaml"
    cfg.write_text("log:\n  level: info\n")
    svc = start(service_factory, kafka, topics, token_file, "grpc-methods",
                args=["--config", str(cfg)])
    stub = control_stub(svc.grpc_target)
    pb = m.control_pb2

    st = stub.GetStatus(pb.GetStatusRequest(), timeout=5)
    assert st.service == "ingest-validator" and st.instance_id == "grpc-methods"
    assert m.control_pb2.ServiceState.Name(st.state) == "SERVICE_STATE_RUNNING"
    assert len(st.config_digest) == 16 and st.uptime_seconds > 0
    assert len(st.partitions) == 12 and all(p.topic == topics.raw for p in st.partitions)

    def code_of(fn, *a, **kw):
        with pytest.raises(grpc.RpcError) as e:
            fn(*a, **kw)
        return e.value.code(), e.value.details()

    # Authentication of mutating methods.
    assert code_of(stub.Pause, pb.PauseRequest(), timeout=5)[0] == grpc.StatusCode.UNAUTHENTICATED
    assert code_of(stub.Pause, pb.PauseRequest(), timeout=5, metadata=bearer("wrong"))[0] == \
        grpc.StatusCode.PERMISSION_DENIED
    assert stub.Pause(pb.PauseRequest(), timeout=5, metadata=bearer(TOKEN)).state == \
        pb.SERVICE_STATE_PAUSED
    assert stub.Resume(pb.ResumeRequest(), timeout=5, metadata=bearer(TOKEN)).state == \
        pb.SERVICE_STATE_RUNNING

    # INVALID_ARGUMENT: a bad argument, a request that does not decode, a bad config file;
    # PERMISSION_DENIED: a reload of any file but the one the service was started with.
    assert code_of(lambda: list(stub.WatchStatus(pb.WatchStatusRequest(interval_ms=10),
                                                  timeout=5)))[0] == \
        grpc.StatusCode.INVALID_ARGUMENT
    chan = grpc.insecure_channel(svc.grpc_target)
    raw = chan.unary_unary("/himari.v1.ControlService/GetStatus",
                           request_serializer=lambda b: b, response_deserializer=lambda b: b)
    assert code_of(raw, b"\xff\xff\xff", timeout=5)[0] == grpc.StatusCode.INVALID_ARGUMENT
    other = tmp_path / "other.yaml"
    other.write_text("log:\n  level: debug\n")
    code, details = code_of(stub.ReloadConfig, pb.ReloadConfigRequest(path=str(other)), timeout=5,
                            metadata=bearer(TOKEN))
    assert code == grpc.StatusCode.PERMISSION_DENIED and str(cfg) in details
    cfg.write_text("checks:\n  large_move: not-a-number\n")
    code, details = code_of(stub.ReloadConfig, pb.ReloadConfigRequest(path=str(cfg)), timeout=5,
                            metadata=bearer(TOKEN))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "checks.large_move" in details

    # UNIMPLEMENTED, NOT_FOUND, RESOURCE_EXHAUSTED.
    nope = chan.unary_unary("/himari.v1.ControlService/Nope",
                            request_serializer=lambda b: b, response_deserializer=lambda b: b)
    assert code_of(nope, b"", timeout=5)[0] == grpc.StatusCode.UNIMPLEMENTED
    hpb = m.health_pb2
    assert code_of(health_stub(svc.grpc_target).Check,
                   hpb.HealthCheckRequest(service="no.such.Service"), timeout=5)[0] == \
        grpc.StatusCode.NOT_FOUND
    huge = pb.ReloadConfigRequest(path="x" * 100_000)
    assert code_of(stub.ReloadConfig, huge, timeout=5, metadata=bearer(TOKEN))[0] == \
        grpc.StatusCode.RESOURCE_EXHAUSTED

    # DEADLINE_EXCEEDED on a stream longer than the deadline; the server stays healthy.
    assert code_of(lambda: list(stub.WatchStatus(pb.WatchStatusRequest(interval_ms=100),
                                                  timeout=0.35)))[0] == \
        grpc.StatusCode.DEADLINE_EXCEEDED
    assert stub.GetStatus(pb.GetStatusRequest(), timeout=5).state == pb.SERVICE_STATE_RUNNING

    # UNAVAILABLE: a second Drain while the first is under way.
    first = stub.Drain.future(pb.DrainRequest(), timeout=30, metadata=bearer(TOKEN))
    second = code_of(stub.Drain, pb.DrainRequest(), timeout=10, metadata=bearer(TOKEN))
    assert second[0] == grpc.StatusCode.UNAVAILABLE
    assert first.result().records_committed >= 0
    svc.proc.wait(30)
    assert svc.proc.returncode == 0


def test_reload_swaps_reloadable_keys_and_refuses_the_rest(kafka, topics, token_file,
                                                         service_factory, tmp_path):
    m = modules()
    pb = m.control_pb2
    cfg = tmp_path / "iv.yaml"
    cfg.write_text("checks:\n  weights:\n    LARGE_GAP: 0.05\n")
    svc = start(service_factory, kafka, topics, token_file, "grpc-reload", args=["--config",
                                                                                 str(cfg)])
    stub = control_stub(svc.grpc_target)
    before = stub.GetStatus(pb.GetStatusRequest(), timeout=5).config_digest
    cfg.write_text("checks:\n  weights:\n    LARGE_GAP: 0.25\nlog:\n  level: debug\n")
    r = stub.ReloadConfig(pb.ReloadConfigRequest(), timeout=5, metadata=bearer(TOKEN))
    assert set(r.changed_keys) == {"checks.weights.LARGE_GAP", "log.level"}
    assert r.config_digest != before
    assert stub.GetStatus(pb.GetStatusRequest(), timeout=5).config_digest == r.config_digest

    # A key that needs a restart (not set in the environment, which would win over the file).
    cfg.write_text("service:\n  stop_timeout_ms: 12345\n")
    with pytest.raises(grpc.RpcError) as e:
        stub.ReloadConfig(pb.ReloadConfigRequest(), timeout=5, metadata=bearer(TOKEN))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "service.stop_timeout_ms" in e.value.details() and "restart" in e.value.details()
    # Refused: the running configuration stayed.
    assert stub.GetStatus(pb.GetStatusRequest(), timeout=5).config_digest == r.config_digest


def test_cancelled_stream_frees_its_call_under_leak_sanitizer(kafka, topics, token_file,
                                                             service_factory):
    assert (ASAN_BIN / "ingest-validator").exists(), "make build-asan first (make test does)"
    m = modules()
    env = topics.env(kafka, "grpc-asan", extra={
        "HIMARI_GRPC_TOKEN_FILE": str(token_file),
        "ASAN_OPTIONS": "detect_leaks=1:exitcode=23", "LSAN_OPTIONS": "exitcode=23"})
    svc = service_factory("ingest-validator", env=env)
    svc.proc.kill()  # replaced by the ASan binary below
    svc.proc.wait()
    svc.proc = subprocess.Popen([str(ASAN_BIN / "ingest-validator")],
                                env={**os.environ, **env, "HIMARI_ADMIN_PORT": str(svc.admin_port),
                                     "HIMARI_GRPC_PORT": str(svc.grpc_port)},
                                stdout=svc.logf, stderr=subprocess.STDOUT, cwd=ROOT)
    svc.wait_ready(timeout=90)
    stub = control_stub(svc.grpc_target)
    for _ in range(20):
        stream = stub.WatchStatus(m.control_pb2.WatchStatusRequest(interval_ms=50), timeout=30)
        got = [next(stream), next(stream)]
        assert got[0].service == "ingest-validator"
        stream.cancel()  # mid-stream
    time.sleep(1.0)
    assert svc.stop() == 0, "leak or error at exit:\n" + svc.tail(60)


def test_pause_stops_output_while_lag_grows_and_resume_drains_it(kafka, topics, token_file,
                                                                service_factory, tmp_path):
    m = modules()
    pb = m.control_pb2
    ticks, _labels = simulate(tmp_path, 60_000, seed=21, anomaly_rate=0.02)
    expected = replay(ticks, tmp_path)
    svc = start(service_factory, kafka, topics, token_file, "grpc-pause")
    stub = control_stub(svc.grpc_target)
    producer = produce_file(kafka, topics.raw, ticks, rate=6_000)  # ~10 s
    time.sleep(2)
    stub.Pause(pb.PauseRequest(), timeout=5, metadata=bearer(TOKEN))
    time.sleep(1.0)  # the transaction open at pause commits
    out_a = stub.GetStatus(pb.GetStatusRequest(), timeout=5).records_out
    lag_a, _ = lag_total(stub, m)
    time.sleep(4.5)  # > 2 lag refreshes
    lag_b, st = lag_total(stub, m)
    assert pb.ServiceState.Name(st.state) == "SERVICE_STATE_PAUSED"
    assert st.records_out == out_a, "output kept flowing while paused"
    assert lag_b > lag_a + 5_000, f"lag did not grow while paused ({lag_a} -> {lag_b})"
    stub.Resume(pb.ResumeRequest(), timeout=5, metadata=bearer(TOKEN))
    producer.communicate(timeout=120)
    deadline = time.monotonic() + 60
    while lag_total(stub, m)[0] > 0:
        assert time.monotonic() < deadline, "lag not drained after resume"
        time.sleep(0.5)
    assert_equal_to_replay(consume_all(kafka, topics.quality, len(expected), timeout=120),
                           expected)


def test_drain_exits_0_and_nothing_is_lost_and_health_watch_sees_both_edges(
        kafka, topics, token_file, service_factory, tmp_path):
    m = modules()
    pb, hpb = m.control_pb2, m.health_pb2
    ticks, _labels = simulate(tmp_path, 60_000, seed=33, anomaly_rate=0.02)
    expected = replay(ticks, tmp_path)
    env_extra = {"HIMARI_GRPC_TOKEN_FILE": str(token_file)}
    svc = service_factory("ingest-validator", env=topics.env(kafka, "grpc-drain",
                                                             extra=env_extra))
    # Health Watch from the first moment: NOT_SERVING, then SERVING once ready.
    seen = []
    ready_seen = threading.Event()

    def watch():
        while True:
            try:
                for resp in health_stub(svc.grpc_target).Watch(hpb.HealthCheckRequest(),
                                                               timeout=120):
                    name = hpb.HealthCheckResponse.ServingStatus.Name(resp.status)
                    if not seen or seen[-1] != name:
                        seen.append(name)
                    if name == "SERVING":
                        ready_seen.set()
                return
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.UNAVAILABLE and not seen:
                    time.sleep(0.05)  # not listening yet
                    continue
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert ready_seen.wait(60), f"health never SERVING: {seen}"
    producer = produce_file(kafka, topics.raw, ticks, rate=8_000)
    time.sleep(3)
    stub = control_stub(svc.grpc_target)
    resp = stub.Drain(pb.DrainRequest(), timeout=30, metadata=bearer(TOKEN))
    assert resp.records_committed >= 0
    svc.proc.wait(30)
    assert svc.proc.returncode == 0, svc.tail()
    watcher.join(10)
    assert seen[:2] == ["NOT_SERVING", "SERVING"] and seen[-1] == "NOT_SERVING", seen
    # Restart and let it finish: the committed output is still exactly the replay.
    producer.communicate(timeout=120)
    svc2 = service_factory("ingest-validator", env=topics.env(kafka, "grpc-drain",
                                                              extra=env_extra))
    svc2.wait_ready()
    assert_equal_to_replay(consume_all(kafka, topics.quality, len(expected), timeout=120),
                           expected)


def test_himarictl_status_pause_resume(kafka, topics, token_file, service_factory):
    svc = start(service_factory, kafka, topics, token_file, "grpc-ctl")
    ctl = [str(BIN / "himarictl"), "--target", svc.grpc_target]
    human = subprocess.run([*ctl, "status"], capture_output=True, text=True, timeout=20)
    assert human.returncode == 0, human.stderr
    assert "ingest-validator" in human.stdout and "RUNNING" in human.stdout
    js = subprocess.run([*ctl, "--json", "status"], capture_output=True, text=True, timeout=20)
    doc = json.loads(js.stdout)
    assert doc["state"] == "RUNNING" and len(doc["partitions"]) == 12
    # Same rendering as GET /status.
    http = json.loads(__import__("requests").get(svc.url("/status"), timeout=5).text)
    assert set(http) == set(doc) and http["config_digest"] == doc["config_digest"]
    # Without a token himarictl refuses before calling; a wrong one the server refuses.
    no_token = subprocess.run([*ctl, "pause"], capture_output=True, text=True, timeout=20)
    assert no_token.returncode == 1 and "token" in no_token.stderr
    wrong = token_file.parent / "wrong_token"
    wrong.write_text("not-the-token\n")
    denied = subprocess.run([*ctl, "--token-file", str(wrong), "pause"], capture_output=True,
                            text=True, timeout=20)
    assert denied.returncode == 1 and "PERMISSION_DENIED" in denied.stderr
    ok = subprocess.run([*ctl, "--token-file", str(token_file), "pause"], capture_output=True,
                        text=True, timeout=20)
    assert ok.returncode == 0 and "PAUSED" in ok.stdout
    ok = subprocess.run([*ctl, "--token-file", str(token_file), "resume"],
                        capture_output=True, text=True, timeout=20)
    assert ok.returncode == 0 and "RUNNING" in ok.stdout
    health = subprocess.run([*ctl, "health"], capture_output=True, text=True, timeout=20)
    assert health.returncode == 0 and "SERVING" in health.stdout
