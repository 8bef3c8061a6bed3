"""The hub's Grafana dashboard, built with Grafana Labs' own SDK (``grafana-foundation-sdk``,
the Grafana 11.6 types), so the JSON has Grafana's schema by construction.

``python docs/ops/dashboard.py > docs/ops/hub-dashboard.json`` (``make dashboard``)
writes the committed file; ``tests/test_ops_kit.py`` checks the two are the same and
that every series a query names is one the hub exports.

The panels answer an on-call's first questions, top to bottom: are the hubs up and
ready; who is connected; are patches getting in, out and acked in time; is the
database keeping up; is a hub's process in trouble (loop lag, memory); is the fan-out
between hubs healthy; are students waiting for help; REST.
"""

from __future__ import annotations

import json
import sys

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as d
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as m

UID = "tutor-hub"
TITLE = "Tutor hub"
# Every query goes to the data source the viewer picks, never to a uid of ours.
DATASOURCE = m.DataSourceRef(type_val="prometheus", uid="${datasource}")
# The hubs the viewer picked.
HUBS = 'job=~"$job",instance=~"$instance"'
# Only the hub leading the sweeps reports the help queue; the others report 0. So
# the help panels take the max over every hub of the job, whichever instances are picked.
CENTER = 'job=~"$job"'
# Panels per row of 24 columns: the widths used below.
FULL, HALF, THIRD, QUARTER, SIXTH = 24, 12, 8, 6, 4
HEIGHT = 8
Panel = timeseries.Panel | stat.Panel


def matchers(extra: str = "", scope: str = HUBS) -> str:
    return "{" + ",".join(part for part in (extra, scope) if part) + "}"


def rate(name: str, extra: str = "", scope: str = HUBS) -> str:
    return f"rate({name}{matchers(extra, scope)}[$__rate_interval])"


def increase(name: str, extra: str = "") -> str:
    return f"increase({name}{matchers(extra)}[$__rate_interval])"


def quantile(q: float, histogram: str, extra: str = "", by: str = "instance") -> str:
    """The q-quantile of a histogram over the picked hubs, one series per ``by``."""
    return f"histogram_quantile({q}, sum by (le, {by}) ({rate(histogram + '_bucket', extra)}))"


class Queries:
    """Targets for one panel, lettered A, B, ... as Grafana does."""

    def __init__(self) -> None:
        self._letters = iter("ABCDEFGHIJ")
        self.targets: list[Builder[Dataquery]] = []

    def add(self, expr: str, legend: str, *, instant: bool = False) -> Queries:
        target = (
            prometheus.Dataquery()
            .datasource(DATASOURCE)
            .ref_id(next(self._letters))
            .expr(expr)
            .legend_format(legend)
        )
        self.targets.append(target.instant() if instant else target.range())
        return self


def q(expr: str, legend: str) -> Queries:
    return Queries().add(expr, legend)


def graph(
    title: str,
    description: str,
    queries: Queries,
    *,
    unit: str,
    width: int = HALF,
    objective: float | None = None,
    stack: bool = False,
) -> timeseries.Panel:
    """A time series panel; ``objective`` draws a dashed red line at that value."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .min(0)
        .span(width)
        .height(HEIGHT)
        .line_width(1)
        .fill_opacity(10)
        .legend(
            cb.VizLegendOptions()
            .show_legend(True)
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
        )
        .tooltip(
            cb.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
        .targets(queries.targets)
    )
    if stack:
        panel = panel.stacking(cb.StackingConfig().mode(common.StackingMode.NORMAL))
    if objective is not None:
        panel = panel.thresholds_style(
            cb.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED)
        ).thresholds(
            d.ThresholdsConfig()
            .mode(m.ThresholdsMode.ABSOLUTE)
            .steps(
                [
                    m.Threshold(value=None, color="green"),
                    m.Threshold(value=objective, color="red"),
                ]
            )
        )
    return panel


def single(
    title: str,
    description: str,
    queries: Queries,
    *,
    unit: str,
    red_below: float | None = None,
    red_above: float | None = None,
) -> stat.Panel:
    """A stat panel of the latest value, red past its threshold."""
    steps = [m.Threshold(value=None, color="green")]
    if red_below is not None:
        steps = [
            m.Threshold(value=None, color="red"),
            m.Threshold(value=red_below, color="green"),
        ]
    if red_above is not None:
        steps.append(m.Threshold(value=red_above, color="red"))
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(SIXTH)
        .height(4)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.AREA)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(d.ThresholdsConfig().mode(m.ThresholdsMode.ABSOLUTE).steps(steps))
        .targets(queries.targets)
    )


def variables() -> list[Builder[m.VariableModel]]:
    source = d.DatasourceVariable("datasource").label("Data source").type("prometheus")
    job = (
        d.QueryVariable("job")
        .label("Job")
        .datasource(DATASOURCE)
        .query("label_values(hub_build_info, job)")
        .refresh(m.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(m.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
    )
    instance = (
        d.QueryVariable("instance")
        .label("Hub")
        .datasource(DATASOURCE)
        .query('label_values(hub_build_info{job=~"$job"}, instance)')
        .refresh(m.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(m.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
    )
    return [source, job, instance]


def restarts() -> d.AnnotationQuery:
    """A mark wherever a hub process (re)started."""
    return (
        d.AnnotationQuery()
        .name("Hub restarts")
        .datasource(DATASOURCE)
        .enable(True)
        .icon_color("orange")
        .expr(f"changes(process_start_time_seconds{matchers()}[$__rate_interval]) > 0")
    )


PATCH = 'event="canvas:patch"'
NOT_OK = 'outcome!="ok"'
# The ack objective's threshold is a bucket edge (LATENCY_BUCKETS in realtime/base/metrics.py).
WITHIN_100_MS = 'le="0.1"'
ACK = "hub_event_handler_seconds"


def p50_p99(histogram: str, extra: str = "", by: str = "instance") -> Queries:
    legend = "{{" + by + "}}"
    return (
        Queries()
        .add(quantile(0.5, histogram, extra, by), f"p50 {legend}")
        .add(quantile(0.99, histogram, extra, by), f"p99 {legend}")
    )


def overview() -> list[Panel]:
    acked_in_time = (
        f"sum(increase({ACK}_bucket{matchers(PATCH + ',' + WITHIN_100_MS)}"
        f"[$__range])) / sum(increase({ACK}_count{matchers(PATCH)}[$__range]))"
    )
    return [
        single(
            "Hubs up",
            "Hubs Prometheus reached on its last scrape (up)",
            q(f"sum(up{matchers()})", "up"),
            unit="short",
            red_below=1,
        ),
        single(
            "Hubs ready",
            "Hubs whose last readiness check passed and that are not stopping (hub_ready)",
            q(f"sum(hub_ready{matchers()})", "ready"),
            unit="short",
            red_below=1,
        ),
        single(
            "Connected sockets",
            "Open Socket.IO connections on the picked hubs",
            q(f"sum(hub_connections{matchers()})", "sockets"),
            unit="short",
        ),
        single(
            "Joined sessions",
            "Session memberships held by the picked hubs' sockets",
            q(f"sum(hub_joined_sessions{matchers()})", "joined"),
            unit="short",
        ),
        single(
            "Acks within 100 ms",
            "Share of canvas:patch acks sent within 100 ms over the dashboard's range; "
            "the objective is 99% (docs/objectives.md)",
            q(acked_in_time, "within 100 ms"),
            unit="percentunit",
            red_below=0.99,
        ),
        single(
            "Help requests overdue",
            "Help requests waiting past their priority's target, across the center "
            "(the sweeping hub reports them, the others 0: max over hubs)",
            q(
                f"sum(max by (priority) (hub_help_requests_overdue{matchers(scope=CENTER)}))",
                "overdue",
            ),
            unit="short",
            red_above=1,
        ),
    ]


def connections() -> list[Panel]:
    return [
        graph(
            "Connected sockets per hub",
            "Open Socket.IO connections (hub_connections)",
            q(f"sum by (instance) (hub_connections{matchers()})", "{{instance}}"),
            unit="short",
        ),
        graph(
            "Joined sessions per hub",
            "Session memberships held by each hub's sockets (hub_joined_sessions)",
            q(f"sum by (instance) (hub_joined_sessions{matchers()})", "{{instance}}"),
            unit="short",
        ),
        graph(
            "Connection attempts by outcome",
            "Socket.IO connects per second, accepted or the reason refused",
            q(f"sum by (outcome) ({rate('hub_connects_total')})", "{{outcome}}"),
            unit="ops",
        ),
        graph(
            "Refused and dropped connections",
            "Requests refused by a connection limit, and websockets the hub dropped, per second",
            Queries()
            .add(f"sum by (limit) ({rate('hub_refused_connections_total')})", "refused {{limit}}")
            .add(f"sum by (why) ({rate('hub_dropped_connections_total')})", "dropped {{why}}"),
            unit="ops",
        ),
    ]


def patches() -> list[Panel]:
    return [
        graph(
            "Patches in, by outcome",
            "canvas:patch events per second: ok (acked) or the error code it was refused with",
            q(f"sum by (outcome) ({rate('hub_events_total', PATCH)})", "{{outcome}}"),
            unit="ops",
            stack=True,
        ),
        graph(
            "Patches delivered to tutors",
            "Patches relayed to staff rooms per second (the relay's batch sizes summed), "
            "and canvas:patches events sent",
            Queries()
            .add(
                f"sum by (instance) ({rate('hub_canvas_relay_batch_size_sum')})",
                "patches {{instance}}",
            )
            .add(
                f"sum by (instance) ({rate('hub_canvas_relay_batch_size_count')})",
                "events {{instance}}",
            ),
            unit="ops",
        ),
        graph(
            "Refused client events by reason",
            "Client events refused per second, by event and error code",
            q(
                f"sum by (event, outcome) ({rate('hub_events_total', NOT_OK)})",
                "{{event}} {{outcome}}",
            ),
            unit="ops",
        ),
        graph(
            "Refused share of client events",
            "Refused events over all events; the refusals alert fires over 5% for 10 min",
            q(
                f"sum by (instance) ({rate('hub_events_total', NOT_OK)})"
                f" / sum by (instance) ({rate('hub_events_total')})",
                "{{instance}}",
            ),
            unit="percentunit",
            objective=0.05,
        ),
    ]


def latency() -> list[Panel]:
    return [
        graph(
            "Ack latency (canvas:patch)",
            "From the patch arriving to its ack, which waits for the commit; objective: "
            "p99 under 100 ms (dashed)",
            p50_p99(ACK, PATCH),
            unit="s",
            objective=0.1,
        ),
        graph(
            "Student to tutor on the hub: durable to relayed",
            "After the ack path, the patch waits this long to be sent to the tutor's room "
            "(hub_canvas_relay_seconds); student to tutor is the ack latency plus this",
            p50_p99("hub_canvas_relay_seconds"),
            unit="s",
        ),
        graph(
            "Between hubs: published to received",
            "A frame from another hub, from its publish to this hub reading it "
            "(hub_cluster_relay_seconds, wall clocks): the extra hop when the tutor is "
            "on another hub",
            p50_p99("hub_cluster_relay_seconds"),
            unit="s",
        ),
        graph(
            "Event handler p99 by event",
            "Every client event's handler latency, p99",
            q(quantile(0.99, "hub_event_handler_seconds", by="event"), "{{event}}"),
            unit="s",
        ),
    ]


def commits() -> list[Panel]:
    return [
        graph(
            "Commit latency",
            "One group commit of the canvas op log (hub_canvas_commit_seconds)",
            p50_p99("hub_canvas_commit_seconds"),
            unit="s",
            width=THIRD,
        ),
        graph(
            "Commit batch size",
            "Writes per group commit: they grow when the database is slow",
            p50_p99("hub_canvas_commit_batch_size"),
            unit="short",
            width=THIRD,
        ),
        graph(
            "Commit failures",
            "Canvas writes that could not be stored (refused INTERNAL, never acked), per second",
            q(f"sum by (instance) ({rate('hub_canvas_commit_failures_total')})", "{{instance}}"),
            unit="ops",
            width=THIRD,
        ),
    ]


def process() -> list[Panel]:
    return [
        graph(
            "Event-loop lag",
            "How late the loop woke a short sleep; objective: p99 under 50 ms (dashed)",
            p50_p99("hub_event_loop_lag_seconds"),
            unit="s",
            width=THIRD,
            objective=0.05,
        ),
        graph(
            "Resident memory",
            "The hub process's RSS; the alert predicts it over 2 GiB within 6 h",
            q(f"sum by (instance) (process_resident_memory_bytes{matchers()})", "{{instance}}"),
            unit="bytes",
            width=THIRD,
        ),
        graph(
            "CPU",
            "Share of one core the hub process uses",
            q(f"sum by (instance) ({rate('process_cpu_seconds_total')})", "{{instance}}"),
            unit="percentunit",
            width=THIRD,
        ),
        graph(
            "Catch-up log and canvases in memory",
            "Encoded bytes of the patches kept for catch-up, and of the canvas documents",
            Queries()
            .add(f"sum by (instance) (hub_canvas_log_bytes{matchers()})", "log {{instance}}")
            .add(
                f"sum by (instance) (hub_canvas_document_bytes{matchers()})",
                "documents {{instance}}",
            ),
            unit="bytes",
            width=THIRD,
        ),
        graph(
            "Catch-up log patches",
            "Patches held in memory for catch-up, all canvases",
            q(f"sum by (instance) (hub_canvas_log_patches{matchers()})", "{{instance}}"),
            unit="short",
            width=THIRD,
        ),
        graph(
            "Garbage collector pauses p99",
            "Time the cyclic GC stopped the process, by generation",
            q(
                quantile(0.99, "hub_gc_pause_seconds", by="instance, generation"),
                "{{instance}} gen {{generation}}",
            ),
            unit="s",
            width=THIRD,
        ),
    ]


def fan_out() -> list[Panel]:
    return [
        graph(
            "Dependencies up",
            "1 when the hub reaches the dependency (checked every 5 s)",
            q(
                f"min by (instance, dependency) (hub_dependency_up{matchers()})",
                "{{instance}} {{dependency}}",
            ),
            unit="short",
            width=THIRD,
        ),
        graph(
            "Session channels subscribed",
            "Session channels each hub subscribes to in Redis",
            q(f"sum by (instance) (hub_redis_subscriptions{matchers()})", "{{instance}}"),
            unit="short",
            width=THIRD,
        ),
        graph(
            "Subscription resumes",
            "Times a hub lost its Redis subscription and took it up again",
            q(
                f"sum by (instance) ({increase('hub_redis_reconnects_total')})",
                "{{instance}}",
            ),
            unit="short",
            width=THIRD,
        ),
        graph(
            "Canvas handovers and takeovers",
            "Canvases changing hands between hubs, by event; holder_gone is a takeover "
            "from a hub that died, a new epoch",
            q(
                f"sum by (event) ({increase('hub_canvas_handovers_total')})",
                "{{event}}",
            ),
            unit="short",
            width=THIRD,
        ),
        graph(
            "Frames between hubs",
            "Frames published to and received from other hubs per second, by kind",
            Queries()
            .add(f"sum by (kind) ({rate('hub_redis_published_total')})", "out {{kind}}")
            .add(f"sum by (kind) ({rate('hub_redis_received_total')})", "in {{kind}}"),
            unit="ops",
            width=THIRD,
        ),
        graph(
            "Publish errors and dropped frames",
            "Publish batches that failed (retried) and frames dropped after Redis was "
            "unreachable too long (tutors catch up from the log)",
            Queries()
            .add(
                f"sum by (instance) ({rate('hub_redis_publish_errors_total')})",
                "errors {{instance}}",
            )
            .add(
                f"sum by (instance) ({rate('hub_redis_publish_dropped_total')})",
                "dropped {{instance}}",
            ),
            unit="ops",
            width=THIRD,
        ),
    ]


def help_and_alerts() -> list[Panel]:
    center = matchers(scope=CENTER)
    return [
        graph(
            "Help requests waiting",
            "Waiting help requests by priority, across the center",
            q(f"max by (priority) (hub_help_requests_waiting{center})", "{{priority}}"),
            unit="short",
            width=THIRD,
        ),
        graph(
            "Oldest help request's wait",
            "How long the oldest waiting request of each priority has waited",
            q(f"max by (priority) (hub_help_request_oldest_wait_seconds{center})", "{{priority}}"),
            unit="s",
            width=THIRD,
        ),
        graph(
            "Alerts to tutors",
            "The hub's own alerts to tutors (timer:alert), by kind",
            q(
                f"sum by (kind) ({increase('hub_alerts_total')})",
                "{{kind}}",
            ),
            unit="short",
            width=THIRD,
        ),
    ]


def rest() -> list[Panel]:
    errors = 'status=~"5.."'
    refused = 'status=~"4.."'
    return [
        graph(
            "REST requests by route",
            "Requests per second by method and route template",
            q(
                f"sum by (method, route) ({rate('hub_http_requests_total')})",
                "{{method}} {{route}}",
            ),
            unit="reqps",
            width=THIRD,
        ),
        graph(
            "REST errors by route",
            "5xx and 4xx answers per second by route and status",
            Queries()
            .add(
                f"sum by (method, route, status) ({rate('hub_http_requests_total', errors)})",
                "{{method}} {{route}} {{status}}",
            )
            .add(
                f"sum by (method, route, status) ({rate('hub_http_requests_total', refused)})",
                "{{method}} {{route}} {{status}}",
            ),
            unit="reqps",
            width=THIRD,
        ),
        graph(
            "REST latency p99 by route",
            "Request latency p99 by method and route template",
            q(
                quantile(0.99, "hub_http_request_seconds", by="method, route"),
                "{{method}} {{route}}",
            ),
            unit="s",
            width=THIRD,
        ),
    ]


def rows() -> list[tuple[str, list[Panel]]]:
    return [
        ("Overview", overview()),
        ("Connections", connections()),
        ("Canvas patches", patches()),
        ("Latency", latency()),
        ("Commits", commits()),
        ("Process", process()),
        ("Fan-out between hubs (Redis)", fan_out()),
        ("Help and alerts", help_and_alerts()),
        ("REST", rest()),
    ]


def build() -> d.Dashboard:
    board = (
        d.Dashboard(TITLE)
        .uid(UID)
        .description("The tutor hub at a glance: docs/objectives.md says what each part promises")
        .tags(["tutor-hub"])
        .editable()
        .tooltip(m.DashboardCursorSync.CROSSHAIR)
        .time("now-3h", "now")
        .refresh("30s")
        .timezone("browser")
        .variables(variables())
        .annotation(restarts())
    )

    for title, panels in rows():
        board = board.with_row(d.Row(title))
        for panel in panels:
            board = board.with_panel(panel)
    return board


def dashboard() -> m.Dashboard:
    """The dashboard, its panels numbered 1, 2, ... top to bottom (Grafana wants ids unique)."""
    built = build().build()
    for number, panel in enumerate(built.panels or [], start=1):
        panel.id_val = number
    return built


def render() -> str:
    """The dashboard as the committed file has it."""
    return json.dumps(dashboard(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
