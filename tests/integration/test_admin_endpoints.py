"""A running service's admin endpoint: health, readiness, and a /metrics exposition that
Prometheus's own checker (promtool check metrics) accepts, while it processes records."""
import subprocess
import time

import requests

from conftest import BIN, produce_lines
from validator_env import Topics


def test_live_metrics_pass_promtool_and_health_endpoints_answer(kafka, admin, service_factory,
                                                                tmp_path):
    topics = Topics(admin)
    try:
        svc = service_factory("ingest-validator", env=topics.env(kafka, "admin-check"))
        svc.wait_ready()
        assert requests.get(svc.url("/healthz"), timeout=5).text == "ok\n"
        ready = requests.get(svc.url("/readyz"), timeout=5)
        assert ready.status_code == 200 and ready.json() == {"ready": True}

        lines = subprocess.run([str(BIN / "himari-sim"), "--count", "2000", "--seed", "5",
                                "--anomaly-rate", "0.05"], capture_output=True, check=True,
                               timeout=60).stdout.splitlines()
        produce_lines(kafka, topics.raw, lines, key_fn=lambda _l: b"BTC/USDT")
        deadline = time.monotonic() + 60
        while svc.metric("himari_validator_records_total") < 2000:
            assert time.monotonic() < deadline, svc.tail()
            time.sleep(0.5)
        time.sleep(2.5)  # let a statistics interval and a lag refresh pass

        text = svc.metrics()
        for family in ("himari_validator_records_total", "himari_validator_issues_total",
                       "himari_validator_quality_score_bucket", "himari_kafka_consumer_lag",
                       "himari_kafka_transaction_seconds_bucket", "himari_validator_state_keys",
                       "himari_admin_requests_total", "himari_build_info"):
            assert family in text, f"{family} missing from /metrics"
        exposition = tmp_path / "metrics.txt"
        exposition.write_text(text)
        check = subprocess.run(["promtool", "check", "metrics"], stdin=exposition.open(),
                               capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stdout + check.stderr
        assert requests.get(svc.url("/nope"), timeout=5).status_code == 404
        assert svc.stop() == 0
    finally:
        topics.delete()


def test_config_errors_name_file_line_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("admin:\n  port: 8081\nvalidator:\n  comit_interval_ms: 5\n")
    run = subprocess.run([str(BIN / "ingest-validator"), "--config", str(bad), "--check-config"],
                         capture_output=True, text=True, timeout=10)
    assert run.returncode == 2
    assert f"{bad}:4: validator.comit_interval_ms: unknown key" in run.stderr
