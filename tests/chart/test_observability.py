"""The Grafana dashboard shipped in the chart, and the metric names its queries and the alerts use:
each must be a series that src/metrics.rs really exposes, with the labels the query selects on."""

from __future__ import annotations

import json
import re
from functools import lru_cache

import pytest

import manifests as m
from conftest import CHART, ROOT
from test_chart import MONITORING, NAMESPACE, RELEASE, objects

DASHBOARD = CHART / "dashboards" / "webhook-operator.json"
GRAFANA = {"metrics": {"grafanaDashboard": {"enabled": True}}}


@lru_cache(maxsize=None)
def exposed_series() -> dict[str, set[str]]:
    """Series name -> label names, read from src/metrics.rs the way prometheus-client names them
    (OpenMetrics): counters `<name>_total`, gauges `<name>`, histograms `<name>[_<unit>]_bucket`
    (with `le`), `_sum` and `_count`."""
    source = (ROOT / "src" / "metrics.rs").read_text()
    label_sets = {name: set(re.findall(r"pub (\w+):", body)) for name, body in
                  re.findall(r"pub struct (\w+Labels) \{(.*?)\}", source, re.S)}
    aliases = dict(re.findall(r"type (\w+) = (Family<[^;]*>);", source))
    fields = {}
    for field, kind in re.findall(r"pub (\w+): ([\w<>, ()]+),\n", source):
        family = aliases.get(kind, kind)
        match = re.match(r"Family<(\w+), (Counter|Gauge|Histogram)", family)
        if match:
            fields[field] = (label_sets[match.group(1)], match.group(2))
    series = {}
    registrations = re.findall(
        r'register(?:_with_unit)?\(\s*"(\w+)",\s*"[^"]*",\s*(?:Unit::(\w+),\s*)?(\w+)\.clone\(\)', source)
    assert len(registrations) >= 8, "src/metrics.rs registrations not found: update this parser"
    for name, unit, field in registrations:
        labels, kind = fields[field]
        if unit:
            name = f"{name}_{unit.lower()}"
        if kind == "Counter":
            series[f"{name}_total"] = labels
        elif kind == "Gauge":
            series[name] = labels
        else:
            series[f"{name}_bucket"] = labels | {"le"}
            series[f"{name}_sum"] = labels
            series[f"{name}_count"] = labels
    return series


def check_expression(expr: str, where: str) -> None:
    series = exposed_series()
    names = set(re.findall(r"\b(webhook_[a-z0-9_]+)\b", expr))
    assert names, f"{where}: no webhook_* metric in {expr!r}"
    for name in names:
        assert name in series, f"{where}: {name} is not a metric of src/metrics.rs ({sorted(series)})"
    for name, matchers in re.findall(r"\b(webhook_[a-z0-9_]+)\{([^}]*)\}", expr):
        for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers):
            assert label in series[name], f"{where}: {name} has no label {label!r}"
    common = set.intersection(*(series[n] for n in names))
    for group in re.findall(r"\bby\s*\(([^)]*)\)", expr):
        for label in filter(None, (g.strip() for g in group.split(","))):
            assert label in common, f"{where}: `by ({label})` but not every metric of {expr!r} has it"
    for name, label in re.findall(r"label_values\((webhook_[a-z0-9_]+)(?:\{[^}]*\})?,\s*(\w+)\)", expr):
        assert label in series[name], f"{where}: {name} has no label {label!r}"


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def queries(board: dict) -> list[tuple[str, str]]:
    found = [(f"panel {p['title']!r}", t["expr"]) for p in board["panels"] for t in p.get("targets", [])]
    found += [(f"variable {v['name']!r}", v["definition"]) for v in board["templating"]["list"]
              if v["type"] == "query"]
    return found


def test_parser_reads_the_metrics_source():
    series = exposed_series()
    assert series["webhook_delivery_attempts_total"] == {"tenant", "endpoint", "result"}
    assert series["webhook_delivery_duration_seconds_bucket"] == {"tenant", "le"}
    assert series["webhook_endpoints"] == {"health"}
    with pytest.raises(AssertionError, match="not a metric"):
        check_expression("rate(webhook_deliveries_total[5m])", "probe")
    with pytest.raises(AssertionError, match="no label 'endpoint'"):
        check_expression('webhook_pending_deliveries{endpoint="x"}', "probe")
    with pytest.raises(AssertionError, match=r"by \(endpoint\)"):
        check_expression("sum by (endpoint) (webhook_pending_deliveries)", "probe")


def test_dashboard_is_a_grafana_dashboard():
    board = dashboard()
    assert board["uid"] == "webhook-operator" and board["title"] == "webhook-operator"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, f"panel {panel['title']!r} is wider than the grid"
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["targets"], f"panel {panel['title']!r} has no query"


def test_dashboard_covers_what_operators_ask():
    exprs = " ".join(expr for _, expr in queries(dashboard()))
    titles = " ".join(p["title"] for p in dashboard()["panels"]).lower()
    for topic in ("events per second", "success ratio", "duration", "latency", "failed attempts",
                  "dead letters", "pending deliveries", "endpoints by health"):
        assert topic in titles, f"no panel about {topic}"
    assert "histogram_quantile(0.99" in exprs and "histogram_quantile(0.5" in exprs
    assert 'result!="success"' in exprs and "by (result)" in exprs


@pytest.mark.parametrize("where, expr", [pytest.param(w, e, id=w) for w, e in queries(dashboard())])
def test_dashboard_queries_use_real_metrics(where, expr):
    check_expression(expr, where)


def alert_rules() -> dict[str, dict]:
    return {r["alert"]: r for g in m.one(objects(MONITORING), "PrometheusRule", RELEASE)["spec"]["groups"]
            for r in g["rules"]}


def test_alerts_cover_failing_endpoints_dead_letters_and_backlog():
    rules = alert_rules()
    assert {"WebhookEndpointFailing", "WebhookDeadLettersGrowing", "WebhookBacklogGrowing"} <= set(rules)
    for name, rule in rules.items():
        check_expression(rule["expr"], f"alert {name}")
    # Gauges every replica reports alike are combined with max, never summed.
    backlog = rules["WebhookBacklogGrowing"]["expr"]
    assert "max by (tenant) (webhook_pending_deliveries)" in backlog and "sum" not in backlog
    assert "kubectl webhooks replay" in rules["WebhookDeadLettersGrowing"]["annotations"]["description"]


def test_grafana_configmap_only_when_enabled():
    assert not [o for o in objects({}) if o["kind"] == "ConfigMap"]
    rendered = objects(GRAFANA)
    m.check_all(rendered, NAMESPACE)
    config_map = m.one(rendered, "ConfigMap", "-grafana-dashboard")
    assert config_map["metadata"]["name"] == "webhook-operator-grafana-dashboard"
    assert config_map["metadata"]["namespace"] == NAMESPACE
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["webhook-operator.json"]) == dashboard()


def test_grafana_configmap_namespace_labels_and_annotations():
    values = {"metrics": {"grafanaDashboard": {
        "enabled": True, "namespace": "monitoring", "labels": {"team": "platform"},
        "annotations": {"grafana_folder": "Webhooks"}}}}
    config_map = m.one(objects(values), "ConfigMap", "-grafana-dashboard")
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["labels"]["team"] == "platform"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Webhooks"}
