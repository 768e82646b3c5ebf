"""A real Prometheus scrapes a real gateway: counters read back through its query API, and every PromQL
expression of the Grafana dashboard and of the alert rules evaluates on it. promtool checks the exposition,
the configuration and the rules, and runs the rules' unit tests.

Prometheus and promtool come from the Debian package `prometheus`, which .ci/run installs; without them these
tests fail (never skip).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, GatewayProcess, free_port, stop, twine, wait_http
from tests.dists import make_sdist, make_wheel
from tests.e2e.test_upload import basic, raw_post
from tests.harness.forms import upload_body

CONFIG = ROOT / "config"
PROMETHEUS_YML = CONFIG / "prometheus.yml"
ALERTS = CONFIG / "alerts.yml"
ALERTS_TEST = CONFIG / "alerts_test.yml"
DASHBOARD = CONFIG / "grafana" / "dashboards" / "upload-gateway.json"
JOB = "upload-gateway"
PASSWORD = "prometheus test password"

# Grafana's variables, as the dashboard would expand them against this server.
GRAFANA_VARIABLES = {
    "job": JOB,
    "instance": ".*",  # the variable's "All" value (allValue)
    "__rate_interval": "5m",  # longer than the whole test: the samples from before the traffic are in the window
    "__range": "5m",
    "__interval": "15s",
}
# Panels that legitimately show nothing after this test's traffic (the index never failed).
EMPTY_PANELS = {"Upstream errors"}

T = TypeVar("T")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` is not installed: it comes with the Debian package `prometheus`, which .ci/run installs "
            "(apt-get update && apt-get install -y prometheus)"
        )
    return path


def run_tool(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool(argv[0]), *argv[1:]], input=stdin, capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def api(self, path: str, params: dict[str, str | list[str]]) -> dict[str, Any]:
        """The decoded answer of an API call, errors included (Prometheus answers them 400/422 with JSON)."""
        url = f"{self.url}{path}?{urlencode(params, doseq=True)}"
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                answer: dict[str, Any] = json.load(resp)
        except urllib.error.HTTPError as exc:
            answer = json.load(exc)
        return answer

    def query(self, expr: str, at: float | None = None) -> dict[str, Any]:
        params: dict[str, str | list[str]] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return self.api("/api/v1/query", params)

    def vector(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        answer = self.query(expr, at)
        assert answer["status"] == "success", f"{expr}: {answer}"
        assert answer["data"]["resultType"] == "vector", f"{expr}: {answer}"
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def last_scrape(self) -> float | None:
        """When the gateway was last scraped, if that scrape succeeded."""
        up = self.vector(f'up{{job="{JOB}"}}')
        # timestamp() gives the sample's time only for a plain selector (else the evaluation time).
        at = self.vector(f'timestamp(up{{job="{JOB}"}})')
        if not up or not at or float(up[0]["value"][1]) != 1:
            return None
        return float(at[0]["value"][1])

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def prometheus_config(gateway_url: str, port: int) -> dict[str, Any]:
    """config/prometheus.yml with its targets pointed at the test gateway and at this Prometheus, every second."""
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_YML.read_text())
    config["global"] = {**config.get("global", {}), "scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(CONFIG / name) for name in config["rule_files"]]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert JOB in jobs, f"config/prometheus.yml has no job {JOB!r}: the alerts and the dashboard select it"
    parts = urlsplit(gateway_url)
    jobs[JOB]["static_configs"] = [{"targets": [f"{parts.hostname}:{parts.port}"]}]
    if "prometheus" in jobs:
        jobs["prometheus"]["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
    return config


@pytest.fixture(scope="module")
def prometheus(gateway: GatewayProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    directory = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    config = directory / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(gateway.url, port)))
    log = directory / "prometheus.log"
    process = subprocess.Popen(
        [tool("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}"]
        + [f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=directory,
    )
    server = Prometheus(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_http(server.url + "/-/ready", process, timeout=60)
        wait_for("the first scrape of the gateway", server.last_scrape)
        yield server
    finally:
        stop(process)


@dataclass
class Traffic:
    accepted_bytes: int
    finished: float  # Prometheus timestamp of a scrape taken after the last upload


@pytest.fixture(scope="module")
def traffic(prometheus: Prometheus, gateway: GatewayProcess, tmp_path_factory: pytest.TempPathFactory) -> Traffic:
    """Accepted and refused uploads of several kinds, after Prometheus has seen the counters at rest."""
    directory = tmp_path_factory.mktemp("dists")
    gateway.add_user("prom-alice", PASSWORD)
    token = gateway.cli("token", "create", "prom-alice", "--description", "prometheus test").stdout.strip()
    wheel = make_wheel(directory, "prom-pkg", "1.0")
    sdist = make_sdist(directory, "prom-pkg", "1.0")

    accepted = twine(gateway.url, "__token__", token, wheel)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    accepted = twine(gateway.url, "prom-alice", PASSWORD, sdist)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr

    refused = twine(gateway.url, "prom-alice", "not the password", make_wheel(directory, "prom-pkg", "2.0"))
    assert refused.returncode != 0 and "403" in refused.stdout + refused.stderr, refused.stdout + refused.stderr
    form = upload_body(make_wheel(directory, "prom-pkg", "3.0"))
    other_name = upload_body(make_wheel(directory, "prom-pkg", "4.0"), name="other-project")
    for authorization, (content_type, body), status in (
        ({}, form, 401),
        ({"Authorization": basic("__token__", "pypi-not-a-macaroon")}, form, 403),
        ({"Authorization": basic("prom-alice", PASSWORD)}, other_name, 400),
    ):
        resp = raw_post(gateway.url, "/legacy/", {"Content-Type": content_type, **authorization}, body)
        assert resp.status == status, (resp.status, resp.reason)
        resp.read()

    done = time.time()

    def scraped_after_the_uploads() -> float | None:
        # Series that the uploads created (the first token failure…) need two samples for rate().
        last = prometheus.last_scrape()
        return last if last is not None and last > done + 2 else None

    finished = wait_for("two scrapes after the uploads", scraped_after_the_uploads)
    return Traffic(accepted_bytes=wheel.stat().st_size + sdist.stat().st_size, finished=finished + 0.5)


def exposition(gateway: GatewayProcess) -> str:
    with urllib.request.urlopen(gateway.url + "/metrics", timeout=10) as resp:
        return str(resp.read().decode())


def samples(text: str, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {
        frozenset(sample.labels.items()): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def by_labels(result: list[dict[str, Any]], *drop: str) -> dict[frozenset[tuple[str, str]], float]:
    return {
        frozenset((k, v) for k, v in item["metric"].items() if k not in {"__name__", *drop}): float(item["value"][1])
        for item in result
    }


def test_upload_counters_read_back_through_prometheus(
    prometheus: Prometheus, traffic: Traffic, gateway: GatewayProcess
) -> None:
    at = traffic.finished
    by_outcome = by_labels(prometheus.vector(f'sum by (outcome) (upload_gateway_uploads_total{{job="{JOB}"}})', at))
    assert by_outcome == {
        frozenset({("outcome", "accepted")}): 2.0,
        frozenset({("outcome", "rejected")}): 4.0,
        frozenset({("outcome", "failed")}): 0.0,
    }
    reasons = by_labels(prometheus.vector(f'upload_gateway_uploads_total{{job="{JOB}"}}', at), "job", "instance")
    counted = {dict(labels)["reason"]: value for labels, value in reasons.items() if value}
    # The reason codes of docs/errors.md: one of each refusal made above.
    assert counted == {"ok": 2, "invalid_credentials": 1, "no_credentials": 1, "invalid_token": 1, "name_mismatch": 1}
    # Every series, reason by reason, is what the gateway itself exposes (no upload since that scrape).
    assert reasons == samples(exposition(gateway), "upload_gateway_uploads_total")

    failures = by_labels(prometheus.vector(f'upload_gateway_auth_failures_total{{job="{JOB}"}}', at), "job", "instance")
    assert failures == {frozenset({("kind", "password")}): 1.0, frozenset({("kind", "token")}): 1.0}
    sent = prometheus.vector(f'upload_gateway_upload_bytes_total{{job="{JOB}"}}', at)
    assert [float(item["value"][1]) for item in sent] == [float(traffic.accepted_bytes)]
    count = prometheus.vector(f'sum(upload_gateway_upload_duration_seconds_count{{job="{JOB}"}})', at)
    assert float(count[0]["value"][1]) == 6.0
    valid = prometheus.vector(f'sum(upload_gateway_token_verifications_total{{job="{JOB}", result=~"valid.*"}})', at)
    assert float(valid[0]["value"][1]) >= 1.0


def dashboard_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows hold their panels


def expand(expr: str) -> str:
    def variable(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in GRAFANA_VARIABLES, f"unknown dashboard variable ${name} in {expr!r}: teach the test its value"
        return GRAFANA_VARIABLES[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", variable, expr)


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard_panels(dashboard)
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def metric_names(text: str) -> set[str]:
    """Every sample name the exposition defines, also for labelled metrics that have no sample yet."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "info": ["_info"], "gauge": [""]}
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, []))
    return names


def test_dashboard_has_the_panels_of_the_brief() -> None:
    exprs = "\n".join(expr for _, expr in dashboard_queries())
    for needed in (
        "upload_gateway_uploads_total",
        "histogram_quantile(0.5, sum by (le) (rate(upload_gateway_upload_duration_seconds_bucket",
        "histogram_quantile(0.95, sum by (le) (rate(upload_gateway_upload_duration_seconds_bucket",
        "upload_gateway_upload_bytes_total",
        "upload_gateway_uploads_in_flight",
        "sum by (kind) (rate(upload_gateway_auth_failures_total",
        "upload_gateway_upstream_errors_total",
        "sum by (route, le) (rate(upload_gateway_upstream_request_duration_seconds_bucket",
        "sum by (result) (rate(upload_gateway_token_verifications_total",
    ):
        assert needed in exprs, needed


def test_every_dashboard_expression_evaluates(
    prometheus: Prometheus, traffic: Traffic, gateway: GatewayProcess
) -> None:
    known = metric_names(exposition(gateway)) | {"up"}
    queries = dashboard_queries()
    assert len(queries) >= 12
    for title, expr in queries:
        expanded = expand(expr)
        answer = prometheus.query(expanded, traffic.finished)
        assert answer["status"] == "success", f"panel {title!r}: {expanded}: {answer.get('error')}"
        unknown = set(re.findall(r"\bupload_gateway_\w+", expanded)) - known
        assert not unknown, f"panel {title!r} uses metrics the gateway does not have: {unknown}"
        if title not in EMPTY_PANELS:
            assert answer["data"]["result"], f"panel {title!r} shows no data after uploads: {expanded}"


def test_dashboard_variables_have_values(prometheus: Prometheus, traffic: Traffic) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = [v for v in dashboard["templating"]["list"] if v["type"] == "query"]
    assert {v["name"] for v in variables} == {"job", "instance"}
    for variable in variables:
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", expand(query))
        assert match, f"variable {variable['name']}: {query}"
        answer = prometheus.api("/api/v1/series", {"match[]": match.group(1), "start": f"{traffic.finished - 300}"})
        assert answer["status"] == "success", f"variable {variable['name']}: {answer}"
        values = {series[match.group(2)] for series in answer["data"] if match.group(2) in series}
        assert values, f"variable {variable['name']} would offer no value: {query}"


def test_every_alert_expression_evaluates(prometheus: Prometheus, traffic: Traffic, gateway: GatewayProcess) -> None:
    known = metric_names(exposition(gateway)) | {"up"}
    rules = alert_rules()
    assert len(rules) >= 5
    for rule in rules:
        answer = prometheus.query(rule["expr"], traffic.finished)
        assert answer["status"] == "success", f"{rule.get('alert')}: {answer.get('error')}"
        unknown = set(re.findall(r"\bupload_gateway_\w+", rule["expr"])) - known
        assert not unknown, f"alert {rule.get('alert')} uses metrics the gateway does not have: {unknown}"
        # Nothing went wrong in this test: no alert condition holds.
        assert answer["data"]["result"] == [], f"{rule['alert']} would fire: {answer['data']['result']}"


def test_prometheus_loads_and_evaluates_the_alert_rules(prometheus: Prometheus, traffic: Traffic) -> None:
    expected = {rule["alert"] for rule in alert_rules()}

    def evaluated() -> list[dict[str, Any]] | None:
        answer = prometheus.api("/api/v1/rules", {})
        assert answer["status"] == "success", answer
        rules = [rule for group in answer["data"]["groups"] for rule in group["rules"]]
        done = all(not rule["lastEvaluation"].startswith("0001-") for rule in rules)
        return rules if rules and done else None

    rules = wait_for("Prometheus to evaluate every rule", evaluated)
    assert {rule["name"] for rule in rules} == expected
    for rule in rules:
        assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}\n{prometheus.log_text()}"
    down = prometheus.vector(f'up{{job="{JOB}"}} == 0')
    assert down == []


def test_promtool_accepts_the_exposition(gateway: GatewayProcess, traffic: Traffic) -> None:
    result = run_tool("promtool", "check", "metrics", stdin=exposition(gateway))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_checks_the_config_and_rules() -> None:
    config = run_tool("promtool", "check", "config", str(PROMETHEUS_YML))
    assert config.returncode == 0, config.stdout + config.stderr
    rules = run_tool("promtool", "check", "rules", str(ALERTS))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in rules.stdout


def test_promtool_unit_tests_of_the_alerts_pass() -> None:
    result = run_tool("promtool", "test", "rules", str(ALERTS_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    cases = yaml.safe_load(ALERTS_TEST.read_text())
    assert [str(CONFIG / f) for f in cases["rule_files"]] == [str(ALERTS)]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in cases["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = {rule["alert"] for rule in alert_rules()}
    assert alerts - firing == set(), "alerts without a test where they fire"
    assert alerts - quiet == set(), "alerts without a test where they stay quiet"
    assert (firing | quiet) - alerts == set(), "tests of alerts that do not exist"


def test_the_alerts_of_the_brief_exist() -> None:
    exprs = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    assert re.search(r'up\{job="upload-gateway"\} == 0', exprs["UploadGatewayDown"])
    assert 'kind="unreachable"' in exprs["UploadGatewayIndexUnreachable"]
    assert "upload_gateway_upstream_errors_total" in exprs["UploadGatewayUpstreamErrors"]
    assert 'outcome="rejected"' in exprs["UploadGatewayRefusalRatioHigh"]
    assert "upload_gateway_auth_failures_total" in exprs["UploadGatewayAuthFailureSpike"]
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert {"summary", "description", "runbook"} <= set(rule["annotations"])
        anchor = rule["annotations"]["runbook"].partition("#")[2]
        assert anchor == rule["alert"].lower()
        assert f"### {rule['alert']}" in (ROOT / "docs" / "operations.md").read_text(), "document every alert"
