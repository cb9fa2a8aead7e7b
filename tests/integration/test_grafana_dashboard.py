"""The compose stack's Grafana dashboard (deploy/grafana/) is one Grafana's file provisioning
loads, its panels query the provisioned Prometheus data source, every query is PromQL that
Prometheus parses, and every metric it reads is one the code exports.

No server: the JSON and YAML are read from the repository, the queries are parsed by promtool
(Debian's prometheus package, as test.sh's rule checks), and the metric names are looked up in
the C sources under common/ and services/ (plus the health-gateway's table in
docs/HEALTH_GATEWAY.md, whose metrics may land in C after this dashboard).
"""
import json
import pathlib
import re
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy/grafana"
DASHBOARD = GRAFANA / "dashboards/himari.json"
DATASOURCES = GRAFANA / "provisioning/datasources/prometheus.yml"
PROVIDERS = GRAFANA / "provisioning/dashboards/himari.yml"
COMPOSE = ROOT / "deploy/docker-compose.yml"

# Grafana's own interval variables, replaced by a duration before promtool reads a query.
GRAFANA_INTERVALS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
# Series Prometheus makes itself: a scrape's `up`, the rules' `ALERTS`.
PROMETHEUS_OWN = {"up", "ALERTS", "ALERTS_FOR_STATE"}
# PromQL words that look like metric names in a query: aggregations, functions, modifiers.
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and",
    "or", "unless", "inf", "nan", "sum", "min", "max", "avg", "count", "stddev", "stdvar",
    "topk", "bottomk", "quantile", "count_values", "group",
}


def load_dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels_of(dashboard: dict) -> list:
    """Every panel, those inside collapsed rows included."""
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def queries() -> list:
    """(panel id, refId, expr) of every query of the dashboard."""
    return [(p["id"], t["refId"], t["expr"])
            for p in panels_of(load_dashboard()) for t in p.get("targets", [])]


def promql(expr: str) -> str:
    for var, duration in GRAFANA_INTERVALS.items():
        expr = expr.replace(var, duration)
    return expr


def metric_names(expr: str) -> set:
    """The metric names a PromQL expression reads (selectors by name; __name__ regexes are not
    resolved). Label matchers, grouping clauses, strings and ranges are removed first, then
    every identifier not called as a function and not a PromQL word is a metric name."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        word = m.group(0)
        after = s[m.end():].lstrip()
        if after.startswith("(") or word.lower() in PROMQL_WORDS:
            continue
        if re.fullmatch(r"\d+[a-z]*", word):
            continue
        names.add(word)
    return names


def exported_metric_names() -> tuple:
    """(names, composed): every "himari_..." string literal in the C sources, and the suffixes of
    names the code composes from a prefix ("%s_commit_age_seconds" with "himari_validator")."""
    literals, composed = set(), set()
    sources = [p for d in ("common", "services") for p in (ROOT / d).rglob("*.[ch]")]
    for path in sources:
        text = path.read_text(errors="replace")
        literals.update(re.findall(r'"(himari_[a-z0-9_]+)"', text))
        composed.update(re.findall(r'"%s(_[a-z0-9_]+)"', text))
    return literals, composed


def gateway_doc_metric_names() -> set:
    """The names in docs/HEALTH_GATEWAY.md's Metrics table (rows "| `himari_gateway_...` |")."""
    doc = (ROOT / "docs/HEALTH_GATEWAY.md").read_text()
    return set(re.findall(r"^\|\s*`(himari_gateway_[a-z0-9_]+)`\s*\|", doc, re.M))


def is_exported(name: str, literals: set, composed: set) -> bool:
    candidates = {name}
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            candidates.add(name[: -len(suffix)])
    for c in candidates:
        if c in literals:
            return True
        # A composed name: a prefix the code spells as a literal plus a "%s_..." suffix.
        for suffix in composed:
            if c.endswith(suffix) and c[: -len(suffix)] in literals:
                return True
    return False


def test_dashboard_has_what_grafana_provisioning_needs():
    d = load_dashboard()
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", d["uid"]), d.get("uid")
    assert d["title"].strip()
    assert isinstance(d["schemaVersion"], int) and d["schemaVersion"] >= 36
    assert d["panels"], "a dashboard without panels"
    ids = [p["id"] for p in panels_of(d)]
    assert all(isinstance(i, int) for i in ids)
    assert len(ids) == len(set(ids)), f"panel ids repeat: {ids}"


def test_panels_sit_on_the_24_column_grid_without_overlapping():
    cells = {}
    for p in panels_of(load_dashboard()):
        g = p["gridPos"]
        assert {"h", "w", "x", "y"} <= g.keys(), p["title"]
        assert all(isinstance(g[k], int) and g[k] >= 0 for k in "hwxy"), p["title"]
        assert g["w"] >= 1 and g["h"] >= 1 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f'{p["title"]!r} overlaps {cells[(x, y)]!r}'
                cells[(x, y)] = p["title"]


def test_every_query_uses_the_provisioned_prometheus_data_source():
    sources = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    prometheus = [s for s in sources if s["type"] == "prometheus"]
    assert len(prometheus) == 1
    uid = prometheus[0]["uid"]
    for p in panels_of(load_dashboard()):
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": uid}, p["title"]
        assert p["targets"], f'{p["title"]!r} has no query'
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t.get("datasource", p["datasource"])["uid"] == uid, (p["title"], t["refId"])
            assert t["expr"].strip(), (p["title"], t["refId"])


def test_the_provider_reads_the_folder_compose_mounts_the_dashboards_at():
    provider = yaml.safe_load(PROVIDERS.read_text())["providers"][0]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    grafana = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"] if v.count(":") >= 1}
    assert mounts.get(path) == "./grafana/dashboards", mounts
    assert mounts.get("/etc/grafana/provisioning") == "./grafana/provisioning", mounts


@pytest.mark.parametrize("panel_id,ref,expr", queries(),
                         ids=[f"panel{p}-{r}" for p, r, _ in queries()])
def test_query_is_promql_promtool_accepts(tmp_path, panel_id, ref, expr):
    rules = tmp_path / "dashboard.rules.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:panel{panel_id}:{ref}", "expr": promql(expr)}]}]}))
    r = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, f"panel {panel_id} {ref}: {expr}\n{r.stdout}{r.stderr}"


def test_every_metric_a_query_reads_is_exported():
    literals, composed = exported_metric_names()
    allowed = gateway_doc_metric_names() | PROMETHEUS_OWN
    assert "himari_gateway_part_up" in allowed, "the Metrics table of HEALTH_GATEWAY.md moved"
    unknown = {}
    for panel_id, ref, expr in queries():
        for name in metric_names(promql(expr)):
            if name not in allowed and not is_exported(name, literals, composed):
                unknown.setdefault(name, []).append(f"panel {panel_id} {ref}")
    assert not unknown, f"metrics no code exports: {unknown}"


# The checks themselves: each must be able to fail.

def test_the_metric_check_finds_names_and_refuses_an_unknown_one():
    literals, composed = exported_metric_names()
    expr = ('histogram_quantile(0.99, sum by (le, service) (rate('
            'himari_validator_commit_age_seconds_bucket{job="himari", op=~"a|b"}[5m])))'
            ' / on (service) group_left max(himari_no_such_metric_total)')
    assert metric_names(expr) == {"himari_validator_commit_age_seconds_bucket",
                                  "himari_no_such_metric_total"}
    assert is_exported("himari_validator_commit_age_seconds_bucket", literals, composed)
    assert is_exported("himari_kafka_messages_consumed_total", literals, composed)
    assert not is_exported("himari_no_such_metric_total", literals, composed)
    assert not is_exported("himari_validator_commit_age_seconds_total", literals, composed)


def test_promtool_refuses_a_broken_query(tmp_path):
    rules = tmp_path / "broken.rules.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [
        {"record": "broken", "expr": "sum by (service (rate(x[1m]))"}]}]}))
    r = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode != 0
