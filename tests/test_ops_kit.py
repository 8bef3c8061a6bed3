"""The operations kit (docs/ops/): the Grafana dashboard and the Prometheus alert rules
against a live hub.

Every series a dashboard query or an alert rule names must be one a hub process
exports (scraped from its /metrics); the dashboard is the one its generator builds,
parses into Grafana's own types, and is laid out and wired to its variables as Grafana
needs; promtool checks the rules and runs their unit tests; and a real Prometheus,
scraping a hub that served a lesson, evaluates every query. promtool and prometheus come
from Debian's ``prometheus`` package: missing, those tests skip, or fail under ``CI=true``.
"""

from __future__ import annotations

import importlib.util
import json
import re
import secrets
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
import yaml
from prometheus_client.parser import text_string_to_metric_families

from loadtest.procs import free_port
from realtime.base.identity import Role
from tests.conftest import REDIS_URL, need_service
from tests.processes import HubProcess, start_hub
from tests.support import Api, Client, eventually, session_body

ROOT = Path(__file__).resolve().parent.parent
OPS = ROOT / "docs" / "ops"
DASHBOARD = OPS / "hub-dashboard.json"
ALERTS = OPS / "alerts.yml"
ALERT_TESTS = OPS / "alerts.test.yml"
EXAMPLE_CONFIG = OPS / "prometheus.yml"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
UNITS = {"s", "bytes", "ops", "reqps", "percentunit", "short"}
GRID_COLUMNS = 24
# Series Prometheus makes itself, not the hub.
PROMETHEUS_OWN = {"up", "ALERTS", "ALERTS_FOR_STATE"}
METRICS_TOKEN = f"metrics-{secrets.token_hex(16)}"
PROMETHEUS_START_TIMEOUT_S = 20.0
PROMETHEUS_STOP_TIMEOUT_S = 10.0

# -- PromQL: the series names an expression selects ---------------------------------

# Words of PromQL that look like names: operators and modifiers.
KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
    "group_right", "bool", "offset", "atmodifier", "inf", "nan",
}  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w:$.])([A-Za-z_:][\w:]*)")


def series_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects: identifiers that are not functions (followed
    by "("), keywords, label names (inside {} and by/without/on/ignoring lists),
    durations (inside []) or Grafana's $variables."""
    # Grafana's label_values(selector, label) is a variable query, not PromQL.
    expr = re.sub(r"label_values\((.*),\s*\w+\s*\)", r"\1", expr)
    expr = _STRING.sub('""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = _GROUPING.sub(" ", expr)
    expr = re.sub(r"\$\{?\w+\}?", " ", expr)
    names = set()
    for found in _NAME.finditer(expr):
        name = found.group(1)
        rest = expr[found.end() :].lstrip()
        if rest.startswith("(") or name.lower() in KEYWORDS:
            continue
        names.add(name)
    return names


def test_series_names_are_the_selected_metrics_only() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, instance) (rate(hub_event_handler_seconds_bucket"
        '{job=~"$job",event="canvas:patch"}[$__rate_interval]))) > 0.1 and on (instance) '
        "up == 1 unless absent(hub_ready) or sum without (le) (x_total offset 5m) / 2 * 1024"
    )
    assert series_names(expr) == {"hub_event_handler_seconds_bucket", "up", "hub_ready", "x_total"}
    assert series_names('label_values(hub_build_info{job=~"$job"}, instance)') == {"hub_build_info"}


# -- what the dashboard and the rules query ------------------------------------------


def load_dashboard() -> dict[str, Any]:
    board: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return board


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows and those inside a collapsed row included."""
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries(board: dict[str, Any]) -> dict[str, str]:
    """Every PromQL query of the dashboard, by where it is."""
    queries = {}
    for panel in panels(board):
        for target in panel.get("targets", []):
            queries[f"panel {panel['title']!r} {target['refId']}"] = target["expr"]
    for annotation in board["annotations"]["list"]:
        if "expr" in annotation:
            queries[f"annotation {annotation['name']!r}"] = annotation["expr"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            queries[f"variable {variable['name']}"] = (
                query["query"] if isinstance(query, dict) else query
            )
    return queries


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def every_query() -> dict[str, str]:
    queries = dashboard_queries(load_dashboard())
    for rule in alert_rules():
        queries[f"alert {rule['alert']}"] = rule["expr"]
    return queries


def exported_series(text: str) -> set[str]:
    """The series names a /metrics body offers: each family's samples and, for a
    labelled family with no samples yet (HELP and TYPE only), the names its type makes."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "gauge": ("",),
        "info": ("_info",),
    }
    names = set()
    for family in text_string_to_metric_families(text):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


# -- a live hub -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """A hub process with Redis (so its fan-out series are there) and a metrics token."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.flushdb()  # the test's own database
    except redis.RedisError as exc:
        need_service("Redis", f"{REDIS_URL}: {exc!r}")
    finally:
        client.close()
    tmp = tmp_path_factory.mktemp("ops-hub")
    hub = start_hub(
        tmp,
        secret=f"ops-kit-test-secret-{secrets.token_hex(16)}",
        settings={"HUB_REDIS_URL": REDIS_URL, "HUB_METRICS_TOKEN": METRICS_TOKEN},
    )
    try:
        yield hub
    finally:
        assert hub.stop() == 0, hub.log_tail()


def scrape(hub: HubProcess) -> str:
    request = urllib.request.Request(
        f"{hub.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        text: str = resp.read().decode()
    return text


@pytest.mark.slow
def test_every_series_queried_is_one_the_hub_exports(live_hub: HubProcess) -> None:
    exported = exported_series(scrape(live_hub)) | PROMETHEUS_OWN
    missing = {
        where: sorted(series_names(expr) - exported)
        for where, expr in every_query().items()
        if series_names(expr) - exported
    }
    assert not missing, f"queries name series the hub does not export: {missing}"
    assert all(series_names(expr) for expr in every_query().values())


# -- the dashboard --------------------------------------------------------------------


def load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("ops_dashboard", OPS / "dashboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_dashboard_is_the_generators() -> None:
    assert DASHBOARD.read_text() == load_generator().render(), (
        "docs/ops/hub-dashboard.json is stale: run `make dashboard`"
    )


def test_the_dashboard_parses_into_grafanas_types_unchanged() -> None:
    """Grafana Labs' generated types (grafana-foundation-sdk) read the JSON and write
    back the same: no field they do not know, none of a wrong shape they would drop."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    board = load_dashboard()
    again = json.loads(json.dumps(Dashboard.from_json(board), cls=JSONEncoder))
    assert again == board


def test_the_dashboard_picks_its_data_source_job_and_hubs() -> None:
    board = load_dashboard()
    assert board["uid"] == "tutor-hub" and board["title"]
    assert board["schemaVersion"] >= 39, "a current Grafana's schema (11.x is 39 and up)"
    assert "id" not in board or board["id"] is None, "an import must not name a database id"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name, selector in (("job", "hub_build_info"), ("instance", "hub_build_info{")):
        variable = variables[name]
        assert variable["type"] == "query" and variable["datasource"] == DATASOURCE
        assert variable["query"].startswith(f"label_values({selector}")
        assert variable["query"].endswith(f", {name})")
        assert variable["multi"] and variable["includeAll"]
    for annotation in board["annotations"]["list"]:
        assert annotation["datasource"] == DATASOURCE


def test_every_panel_queries_the_picked_data_source_hubs_and_interval() -> None:
    board = load_dashboard()
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        title = panel["title"]
        assert panel["datasource"] == DATASOURCE, title
        assert panel["fieldConfig"]["defaults"].get("unit") in UNITS, title
        assert panel.get("description"), title
        targets = panel["targets"]
        assert targets, title
        assert len({t["refId"] for t in targets}) == len(targets), title
        for target in targets:
            assert target["datasource"] == DATASOURCE, title
            expr = target["expr"]
            assert target["refId"] and expr, title
            # Each series selected on the picked job; rates over Grafana's interval.
            selectors = re.findall(r"([A-Za-z_:][\w:]*)\{([^}]*)\}", expr)
            assert {name for name, _ in selectors} == series_names(expr), (title, expr)
            assert all('job=~"$job"' in matchers for _, matchers in selectors), (title, expr)
            ranges = re.findall(r"\[([^\]]+)\]", expr)
            assert set(ranges) <= {"$__rate_interval", "$__range"}, (title, expr)


def test_the_panels_sit_in_rows_on_the_grid_without_overlapping() -> None:
    board = load_dashboard()
    ids = [panel["id"] for panel in panels(board)]
    assert len(set(ids)) == len(ids), "panel ids must be unique"
    assert board["panels"][0]["type"] == "row", "the panels are grouped in rows"
    taken: dict[tuple[int, int], str] = {}
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["w"] >= 1 and grid["h"] >= 1 and grid["x"] >= 0 and grid["y"] >= 0
        assert grid["x"] + grid["w"] <= GRID_COLUMNS, panel["title"]
        if panel["type"] == "row":
            assert grid["w"] == GRID_COLUMNS and grid["x"] == 0, panel["title"]
            assert not panel["collapsed"] and panel["panels"] == [], panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"{panel['title']!r} overlaps {taken[(x, y)]!r}"
                taken[(x, y)] = panel["title"]


# -- the alert rules ------------------------------------------------------------------


def test_every_alert_has_a_severity_a_summary_and_its_runbook_entry() -> None:
    names = [rule["alert"] for rule in alert_rules()]
    assert len(set(names)) == len(names)
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        assert annotations["runbook_url"] == f"docs/runbook.md#{name.lower()}", name
        assert 'job="tutor-hub"' in rule["expr"], name


def test_every_alerts_runbook_entry_exists() -> None:
    """Each runbook_url's anchor is a heading of docs/runbook.md (as GitHub makes them)."""
    headings = re.findall(r"^#+ (.+)$", (ROOT / "docs" / "runbook.md").read_text(), re.M)
    anchors = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}
    for rule in alert_rules():
        anchor = rule["annotations"]["runbook_url"].partition("#")[2]
        assert anchor in anchors, f"{rule['alert']}: docs/runbook.md has no #{anchor}"


def test_every_alert_is_shown_firing_and_not_firing() -> None:
    firing, quiet = set(), set()
    for case in yaml.safe_load(ALERT_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - firing == set(), "alerts no unit test shows firing"
    assert names - quiet == set(), "alerts no unit test shows not firing"


def promtool() -> str:
    found = shutil.which("promtool")
    need_service(
        "promtool",
        None if found else "no `promtool` on PATH",
        hint="install Debian's prometheus package",
    )
    assert found is not None
    return found


def run_promtool(*args: str) -> str:
    done = subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout


def test_promtool_checks_the_rules_and_passes_their_unit_tests() -> None:
    assert f"SUCCESS: {len(alert_rules())} rules found" in run_promtool(
        "check", "rules", str(ALERTS)
    )
    assert "SUCCESS" in run_promtool("test", "rules", str(ALERT_TESTS))


# -- a real Prometheus scraping a hub that served a lesson ----------------------------


def prometheus_config(tmp: Path, hub: HubProcess) -> Path:
    """The example configuration, pointed at ``hub``, scraping every second."""
    config = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(ALERTS)]
    del config["alerting"]  # no Alertmanager here
    (job,) = config["scrape_configs"]
    token = tmp / "metrics-token"
    token.write_text(METRICS_TOKEN)
    job["authorization"]["credentials_file"] = str(token)
    job["static_configs"] = [{"targets": [urllib.parse.urlsplit(hub.url).netloc]}]
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


class Prometheus:
    """``prometheus`` on a free loopback port with a TSDB of its own, stopped by ``stop``."""

    def __init__(self, binary: str, config: Path, tmp: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log_path = tmp / "prometheus.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address={self.url.removeprefix('http://')}",
                "--log.level=warn",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def get(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=5) as resp:
            return json.load(resp)

    def query(self, expr: str) -> dict[str, Any]:
        try:
            answer: dict[str, Any] = self.get("/api/v1/query", query=expr)
        except urllib.error.HTTPError as exc:  # a query that does not parse is a 400
            answer = json.load(exc)
        return answer

    def wait_ready(self) -> None:
        deadline = time.monotonic() + PROMETHEUS_START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"prometheus exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prometheus was not ready within the deadline:\n{self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=PROMETHEUS_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def as_prometheus_query(expr: str) -> str:
    """A dashboard query as Grafana sends it with every job and hub picked."""
    expr = re.sub(r"label_values\((.*),\s*\w+\s*\)", r"\1", expr)
    for variable, value in (
        ("$__rate_interval", "1m"),
        ("$__range", "5m"),
        ("$job", ".*"),
        ("$instance", ".*"),
    ):
        expr = expr.replace(variable, value)
    assert "$" not in expr, expr
    return expr


def stroke(i: int) -> list[dict[str, Any]]:
    return [
        {
            "op": "add",
            "path": f"/elements/e{i}",
            "value": {"type": "stroke", "points": [[0, 0], [i, i]]},
        }
    ]


async def serve_a_lesson(hub: HubProcess, scraped: Callable[[], Awaitable[None]]) -> Client:
    """A session, its tutor and a student joined, the student drawing; one refusal. The
    drawing goes on after ``scraped``, so that a rate sees its counters grow (a series
    that first appears at its final value has a rate of 0). The tutor stays connected."""
    async with aiohttp.ClientSession() as http:
        tutor_api = Api(http, hub.url, hub.token("tutor-1", Role.TUTOR))
        status, created = await tutor_api.post("/api/v1/sessions", session_body("tutor-1"))
        assert status == 201, created
        session_id = created["data"]["id"]
        path = f"/api/v1/sessions/{session_id}/enrollments"
        assert (await tutor_api.post(path, {"student_id": "s1"}))[0] == 201
        assert (await tutor_api.get(f"/api/v1/sessions/{session_id}"))[0] == 200
    tutor = await Client().connect(hub.url, hub.token("tutor-1", Role.TUTOR))
    student = await Client().connect(hub.url, hub.token("s1", Role.STUDENT))
    try:
        assert (await tutor.join(session_id))["ok"]
        assert (await student.join(session_id))["ok"]

        async def draw(first: int, count: int) -> None:
            for i in range(first, first + count):
                ack = await student.call(
                    "canvas:patch", {"session_id": session_id, "ops": stroke(i)}
                )
                assert ack["ok"], ack

        await draw(0, 1)
        await scraped()
        await draw(1, 20)
        refused = await student.call("canvas:patch", {"session_id": session_id, "ops": 1})
        assert not refused["ok"]
        await eventually(lambda: len(tutor.events("canvas:patches")) > 0, what="the relay")
    except BaseException:
        await tutor.sio.disconnect()
        raise
    finally:
        await student.sio.disconnect()
    return tutor


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_prometheus_evaluates_every_query_against_a_live_hub(
    live_hub: HubProcess, tmp_path: Path
) -> None:
    binary = shutil.which("prometheus")
    need_service(
        "prometheus",
        None if binary else "no `prometheus` on PATH",
        hint="install Debian's prometheus package",
    )
    assert binary is not None
    config = prometheus_config(tmp_path, live_hub)
    run_promtool("check", "config", str(config))
    prometheus = Prometheus(binary, config, tmp_path)
    tutor: Client | None = None
    try:
        prometheus.wait_ready()
        await eventually(
            lambda: prometheus.query('up{job="tutor-hub"} == 1')["data"]["result"],
            within=15,
            interval=0.2,
            what="prometheus scraping the hub",
        )

        async def scraped() -> None:
            await eventually(
                lambda: prometheus.query('hub_events_total{event="canvas:patch"}')["data"][
                    "result"
                ],
                within=15,
                interval=0.2,
                what="prometheus scraping the first patch",
            )

        tutor = await serve_a_lesson(live_hub, scraped)

        def value(expr: str) -> float | None:
            result = prometheus.query(expr)["data"]["result"]
            return float(result[0]["value"][1]) if result else None

        queries = {where: as_prometheus_query(expr) for where, expr in every_query().items()}
        by_title = {where.split("'")[1]: expr for where, expr in queries.items() if "'" in where}
        # The lesson in the range of a rate: two scrapes after it are enough.
        key = {
            "connections": by_title["Connected sockets"],
            "patches accepted per second": (
                'sum(rate(hub_events_total{event="canvas:patch",outcome="ok"}[1m]))'
            ),
            "ack p99": queries["panel 'Ack latency (canvas:patch)' B"],
        }
        seen: dict[str, float | None] = {}

        def have_data() -> bool:
            seen.update({name: value(expr) for name, expr in key.items()})
            return all((v or 0) > 0 for v in seen.values())

        try:
            await eventually(have_data, within=30, interval=0.5, what="data")
        except AssertionError:
            pytest.fail(f"no data for every key query: {seen} ({key})\n{prometheus.log()}")
        failed = {}
        for where, expr in queries.items():
            answer = prometheus.query(expr)
            if answer.get("status") != "success":
                failed[where] = (expr, answer.get("error"))
        assert not failed, f"queries prometheus refused: {failed}"
        assert value(key["connections"]) == 1.0  # the tutor, still connected
        ack_p99 = value(key["ack p99"])
        assert ack_p99 is not None and 0 < ack_p99 <= 2.5
        assert value(by_title["Hubs ready"]) == 1.0
        assert value(queries["alert TutorHubNotReady"]) is None
        rules = prometheus.get("/api/v1/rules")["data"]["groups"]
        loaded = {rule["name"] for group in rules for rule in group["rules"]}
        assert loaded == {rule["alert"] for rule in alert_rules()}
        unhealthy = [
            (rule["name"], rule.get("lastError"))
            for group in rules
            for rule in group["rules"]
            if rule["health"] == "err"
        ]
        assert not unhealthy, unhealthy
    finally:
        prometheus.stop()
        if tutor is not None:
            await tutor.sio.disconnect()
