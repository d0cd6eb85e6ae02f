"""The run report: the HTML page (structure, escaping, formatting, each outcome, missing sections),
the training curves read back from a real job's log on the local SageMaker, tuning results, publishing."""
from __future__ import annotations

import datetime as dt
import textwrap
from html.parser import HTMLParser

import boto3
import pytest
from botocore.stub import ANY, Stubber

from include.pipelines.run_report import (
    LOG_GROUP,
    OUTCOMES,
    fmt_duration,
    fmt_number,
    fmt_usd,
    nice_ticks,
    publish_report,
    render_report,
    report_key,
    training_curves,
    tuning_results,
)
from tests.conftest import TEST_BUCKET, TEST_REGION
from tests.emulator.hosting_fixtures import model_archive
from tests.emulator.test_training_jobs import training_request, wait_until_done

HOSTILE = "<script>alert('x')</script>"
VOID = {"meta", "br", "img", "hr", "input", "link", "area", "base", "col", "embed", "source", "track", "wbr"}
T0 = dt.datetime(2025, 6, 1, 10, 0, tzinfo=dt.timezone.utc)


# --- a small DOM from html.parser, strict about nesting ------------------------------------------


class Node:
    def __init__(self, tag: str, attrs: dict, parent: "Node | None"):
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node] = []
        self.texts: list[str] = []

    def iter(self):
        yield self
        for child in self.children:
            yield from child.iter()

    def find_all(self, tag: str | None = None, **attrs) -> list["Node"]:
        return [node for node in self.iter() if (tag is None or node.tag == tag)
                and all(node.attrs.get(key.rstrip("_").replace("_", "-")) == value for key, value in attrs.items())]

    def find(self, tag: str | None = None, **attrs) -> "Node":
        found = self.find_all(tag, **attrs)
        assert found, f"no <{tag} {attrs}>"
        return found[0]

    def text(self) -> str:
        return " ".join(" ".join(node.texts) for node in self.iter() if node.tag not in ("style", "title")).strip()

    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())


class StrictTree(HTMLParser):
    """Builds a tree; fails on a close tag that does not close the open element, or one left open."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = self.current = Node("#root", {}, None)
        self.doctype = None

    def handle_decl(self, decl):
        self.doctype = decl

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.current)
        self.current.children.append(node)
        if tag not in VOID:
            self.current = node

    def handle_startendtag(self, tag, attrs):
        self.current.children.append(Node(tag, dict(attrs), self.current))

    def handle_endtag(self, tag):
        assert tag not in VOID, f"</{tag}> closes a void element"
        assert self.current.tag == tag, f"</{tag}> closes <{self.current.tag}>"
        self.current = self.current.parent

    def handle_data(self, data):
        self.current.texts.append(data)


def parse(page: str) -> Node:
    parser = StrictTree()
    parser.feed(page)
    parser.close()
    assert parser.current is parser.root, f"<{parser.current.tag}> never closed"
    assert parser.doctype and parser.doctype.lower() == "doctype html"
    return parser.root


def section_ids(root: Node) -> list[str]:
    return [node.attrs["id"] for node in root.find_all("section")]


# --- reports ---------------------------------------------------------------------------------------


def full_report(**overrides) -> dict:
    report = {
        "workload": "cifar10",
        "dag_id": "cifar10_pipeline",
        "run_id": "manual__2025-06-01T10:00:00+00:00",
        "generated_at": dt.datetime(2025, 6, 1, 10, 42, 7, tzinfo=dt.timezone.utc),
        "decision": {"outcome": "promoted", "reason": "clears the threshold and beats the champion", "metric": "val_accuracy",
                     "direction": "maximize", "challenger": 0.86123456, "champion": 0.8431, "threshold": 0.8, "margin": 0.005},
        "training_job": "cifar10-train-3f9a1c2b7d",
        "curves": {
            "train:loss": [(0.0, 2.31), (14.0, 1.52), (28.5, 0.91), (43.0, 0.4)],
            "val_accuracy": [(10.0, 0.41), (40.0, 0.86123456)],
            "never:seen": [],
        },
        "tuning": [
            {"name": "cifar10-tune-1-002", "status": "Completed", "hyperparameters": {"lr": "0.04", "batch-size": "128"},
             "objective": 0.851, "objective_metric": "val_accuracy", "objective_status": "Succeeded", "definition": None,
             "failure_reason": None},
            {"name": "cifar10-tune-1-001", "status": "Failed", "hyperparameters": {"lr": "0.9", "batch-size": "32"},
             "objective": None, "objective_metric": "val_accuracy", "objective_status": "Failed", "definition": None,
             "failure_reason": "AlgorithmError: loss became NaN"},
        ],
        "cost": {"total_usd": 1.4213, "lines": [
            {"kind": "tuning", "name": "cifar10-tune-1", "instance_type": "ml.g4dn.xlarge", "instance_count": 4,
             "billable_seconds": 2710, "usd_per_hour": 0.7364, "usd": 1.2301},
            {"kind": "training", "name": "cifar10-train-1", "instance_type": "ml.g4dn.xlarge", "instance_count": 1,
             "billable_seconds": 935, "usd_per_hour": 0.7364, "usd": 0.1912},
        ]},
        "model_package": {"arn": "arn:aws:sagemaker:us-east-1:123456789012:model-package/cifar10/7", "version": 7,
                          "approval_status": "Approved", "approval_description": "gate passed"},
        "endpoint": {"name": "cifar10-endpoint-1", "status": "InService", "config": "cifar10-epc-1",
                     "variants": [{"name": "Blue", "model": "m-old", "weight": 3, "instances": 1},
                                  {"name": "Green", "model": "m-new", "weight": 1, "instances": 2}],
                     "failure_reason": None},
        "links": {"Airflow run": "http://127.0.0.1:8080/dags/cifar10_pipeline", "Model": "s3://bucket/model.tar.gz"},
    }
    report.update(overrides)
    return report


SECTIONS = ["decision", "curves", "tuning", "cost", "registry", "endpoint"]


@pytest.mark.parametrize("outcome", sorted(OUTCOMES))
def test_each_outcome_renders_its_badge_first(outcome):
    decision = {**full_report()["decision"], "outcome": outcome, "reason": f"because {outcome}"}
    root = parse(render_report(full_report(decision=decision)))
    assert section_ids(root) == [*SECTIONS, "links"]  # the decision first, the rest in a fixed order
    badge = root.find("section", id="decision").find("div", data_outcome=outcome)
    label, css, _ = OUTCOMES[outcome]
    assert "badge" in badge.classes() and css in badge.classes()
    assert badge.text() == label
    assert f"because {outcome}" in root.find("section", id="decision").text()
    assert " ".join(root.find("title").texts).startswith(label)  # the browser tab says it too


def test_badge_colours_tell_outcomes_apart():
    page = render_report(full_report())
    colours = {}
    for outcome, (_, css, _) in OUTCOMES.items():
        marker = f".badge.{css} {{ background: "
        assert marker in page, css
        colours[outcome] = page.split(marker, 1)[1].split(";", 1)[0]
    assert colours["promoted"] == "#1a7f37"  # green
    assert colours["rolled_back"] == "#cf222e"  # red
    assert len(set(colours.values())) == len(colours)


def test_the_decision_chart_draws_both_bars_and_the_threshold():
    root = parse(render_report(full_report()))
    chart = root.find("div", id="comparison")
    svg = chart.find("svg")
    assert {"Challenger", "Champion"} <= set(svg.text().split())
    assert len(svg.find_all("rect")) == 2
    dashed = [line for line in svg.find_all("line") if line.attrs.get("stroke-dasharray") == "6 4"]
    assert len(dashed) == 2  # the threshold on the plot and in the legend
    assert "threshold 0.8" in svg.text() and "champion + margin 0.8481" in svg.text()
    facts = root.find("section", id="decision").text()
    assert "0.8612" in facts and "0.86123456" not in facts  # four significant digits
    checks = [li.attrs["class"] for li in root.find("ul", class_="checks").find_all("li")]
    assert checks == ["yes", "yes"]


def test_no_champion_yet_draws_the_challenger_alone_and_a_minimize_gate_reads_the_other_way():
    decision = {"outcome": "rejected", "reason": "loss too high", "metric": "val_loss", "direction": "minimize",
                "challenger": 0.9, "champion": None, "threshold": 0.5, "margin": 0.01}
    root = parse(render_report(full_report(decision=decision, curves={"val_loss": [(0.0, 1.2), (5.0, 0.9)]})))
    svg = root.find("div", id="comparison").find("svg")
    assert len(svg.find_all("rect")) == 1 and "Champion" not in svg.text()
    assert "none yet" in root.find("section", id="decision").text()
    checks = root.find("ul", class_="checks")
    assert [li.attrs["class"] for li in checks.find_all("li")] == ["no"]
    assert "challenger 0.9 > threshold 0.5" in checks.text()
    assert "lower is better" in root.find("section", id="decision").text()
    # the gate metric's curve carries the threshold too
    curve = root.find("div", data_metric="val_loss")
    assert "gate metric, threshold 0.5" in curve.text()
    assert any(line.attrs.get("stroke-dasharray") == "6 4" for line in curve.find_all("line"))


def test_one_small_chart_per_metric_loss_and_accuracy_apart():
    root = parse(render_report(full_report()))
    cards = root.find("section", id="curves").find_all("div", class_="curve")
    assert [card.attrs["data-metric"] for card in cards] == ["train:loss", "val_accuracy", "never:seen"]
    loss, accuracy, never = cards
    for card, count in ((loss, 4), (accuracy, 2)):
        assert len(card.find_all("svg")) == 1
        points = card.find("polyline").attrs["points"].split()
        assert len(points) == count
    loss_y = [float(point.split(",")[1]) for point in loss.find("polyline").attrs["points"].split()]
    assert loss_y == sorted(loss_y)  # a falling loss goes down the chart (SVG y grows downwards)
    assert "last 0.4" in loss.text() and "lower is better" in loss.text()
    assert "no values logged" in never.text() and not never.find_all("polyline")
    assert "cifar10-train-3f9a1c2b7d" in root.find("section", id="curves").text()


def test_tables_format_numbers_and_mark_the_best_candidate():
    root = parse(render_report(full_report()))
    tuning = root.find("section", id="tuning")
    rows = tuning.find("tbody").find_all("tr")
    assert "best" in rows[0].classes() and "0.851" in rows[0].text() and "★" in rows[0].text()
    assert "AlgorithmError: loss became NaN" in tuning.text()
    assert [th.text() for th in tuning.find("thead").find_all("th")][3:5] == ["batch-size", "lr"]
    cost = root.find("section", id="cost").text()
    for expected in ("$1.42", "$1.23", "$0.19", "45 min 10 s", "15 min 35 s", "$0.74", "ml.g4dn.xlarge"):
        assert expected in cost, expected
    endpoint = root.find("section", id="endpoint").text()
    assert "75%" in endpoint and "25%" in endpoint and "InService" in endpoint
    registry = root.find("section", id="registry")
    assert registry.find("span", class_="state ok").text() == "Approved"
    assert "model-package/cifar10/7" in registry.text()


def test_missing_sections_say_not_run():
    page = render_report({"workload": "brain_to_text", "run_id": "scheduled__2025-01-01T00:00:00+00:00"})
    root = parse(page)
    assert section_ids(root) == SECTIONS  # no links section without links
    for section_id in SECTIONS:
        assert "not run" in root.find("section", id=section_id).text(), section_id
    assert root.find("div", data_outcome="none").text() == "No decision"
    assert not root.find_all("div", id="comparison")


def test_none_sections_say_what_there_is_not():
    root = parse(render_report(full_report(tuning=None, endpoint=None, curves={})))
    assert "no tuning in this run" in root.find("section", id="tuning").text()
    assert "no endpoint" in root.find("section", id="endpoint").text()
    assert "defined no metrics" in root.find("section", id="curves").text()


def test_no_training_job_means_no_curves_and_unpriced_cost_lines_are_said():
    cost = {"total_usd": 0.19, "prices": {"source": "sagemaker_prices.yaml", "as_of": "2025-06-01", "region": "us-east-1"},
            "lines": [{"kind": "training", "name": "t", "instance_type": "ml.m5.large", "instance_count": 1, "billable_seconds": 60,
                       "usd_per_hour": 0.115, "usd": 0.0019, "note": "managed spot: billable time is the discounted time"},
                      {"kind": "transform", "name": "x", "instance_type": "ml.weird", "instance_count": 1, "billable_seconds": 5,
                       "usd_per_hour": None, "usd": None, "note": "no price for ml.weird"}]}
    report = full_report(curves={}, cost=cost)
    del report["training_job"]
    root = parse(render_report(report))
    assert "not run" in root.find("section", id="curves").text()
    text = root.find("section", id="cost").text()
    for expected in ("managed spot: billable time is the discounted time", "no price for ml.weird", "$0.0019",
                     "Prices: us-east-1, as of 2025-06-01, sagemaker_prices.yaml", "1 line without a price"):
        assert expected in text, expected


def test_a_challenger_level_with_champion_plus_margin_does_not_beat_it():
    decision = {**full_report()["decision"], "outcome": "rejected", "challenger": 0.85, "champion": 0.84, "margin": 0.01}
    checks = parse(render_report(full_report(decision=decision))).find("ul", class_="checks")
    assert [li.attrs["class"] for li in checks.find_all("li")] == ["yes", "no"]
    assert "does not beat champion + margin (0.85)" in checks.text()


def test_endpoint_failure_reason_is_shown():
    endpoint = {"name": "e", "status": "Failed", "config": "c", "variants": [], "failure_reason": "health check failed <ping>"}
    root = parse(render_report(full_report(endpoint=endpoint)))
    section = root.find("section", id="endpoint")
    assert section.find("p", class_="failure").text() == "health check failed <ping>"
    assert section.find("span", class_="state bad").text() == "Failed"


def test_every_outside_value_is_escaped():
    report = full_report(
        workload='w"&\'<b>',
        dag_id=HOSTILE,
        run_id=HOSTILE,
        generated_at=HOSTILE,
        training_job=HOSTILE,
        decision={**full_report()["decision"], "reason": HOSTILE, "metric": HOSTILE, "outcome": HOSTILE},
        curves={HOSTILE: [(0.0, 1.0)]},
        tuning=[{"name": HOSTILE, "status": HOSTILE, "hyperparameters": {HOSTILE: '<img src=x onerror="alert(1)">'},
                 "objective": 1.0, "objective_metric": HOSTILE, "failure_reason": HOSTILE}],
        cost={"total_usd": 1, "lines": [{"kind": HOSTILE, "name": HOSTILE, "instance_type": HOSTILE, "usd": 1}]},
        model_package={"arn": HOSTILE, "version": HOSTILE, "approval_status": HOSTILE, "approval_description": HOSTILE},
        endpoint={"name": HOSTILE, "status": HOSTILE, "config": HOSTILE, "failure_reason": HOSTILE,
                  "variants": [{"name": HOSTILE, "model": HOSTILE, "weight": 1, "instances": 1}]},
        links={HOSTILE: "javascript:alert(1)", "ok": 'https://example.com/?a=1&b="2"><script>'},
    )
    page = render_report(report)
    root = parse(page)
    tags = {node.tag for node in root.iter()}
    assert "script" not in tags and "img" not in tags
    assert root.find("h1").text() == 'Run report: w"&\'<b>' and not root.find("h1").children
    assert "<script>" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert HOSTILE in root.find("header").text()  # shown as text, as given
    assert root.find("title").texts == [f"{HOSTILE} · w\"&'<b> · {HOSTILE}"]  # outcome · workload · run
    assert all(not (node.attrs.get(attr) or "").lower().startswith("javascript:")
               for node in root.iter() for attr in ("href", "src"))
    links = root.find("section", id="links")
    assert [a.attrs["href"] for a in links.find_all("a")] == ['https://example.com/?a=1&b="2"><script>']
    assert "javascript:alert(1)" in links.text()  # shown, not a link
    assert all(not key.startswith("on") for node in root.iter() for key in node.attrs)
    assert root.find("div", data_outcome=HOSTILE).text() == HOSTILE  # an unknown outcome, grey, as given


def test_number_formats():
    assert fmt_number(0.86123456) == "0.8612"
    assert fmt_number(12.3456) == "12.35"
    assert fmt_number(1234.56) == "1,235"
    assert fmt_number(1234567) == "1,234,567"
    assert fmt_number(3.2e-05) == "3.2e-05"
    assert fmt_number(0) == "0" and fmt_number(None) == "—" and fmt_number(float("nan")) == "nan"
    assert fmt_usd(1.4213) == "$1.42" and fmt_usd(0.0042) == "$0.0042" and fmt_usd(12345.678) == "$12,345.68"
    assert fmt_duration(45) == "45 s" and fmt_duration(2710) == "45 min 10 s" and fmt_duration(7325) == "2 h 02 min"


@pytest.mark.parametrize("lo,hi", [(0, 1), (0.8, 0.8612), (-3.2, 17), (0.1, 0.1), (0, 2710), (1e-6, 3e-6)])
def test_ticks_are_round_and_cover_the_values(lo, hi):
    ticks = nice_ticks(lo, hi, 5)
    assert ticks[0] <= lo and ticks[-1] >= hi and 2 <= len(ticks) <= 12
    steps = {round(b - a, 12) for a, b in zip(ticks, ticks[1:])}
    assert len(steps) == 1
    step = steps.pop()
    mantissa = step / 10 ** __import__("math").floor(__import__("math").log10(step))
    assert round(mantissa, 6) in (1, 2, 2.5, 5, 10)
    assert nice_ticks(0, 2710, 4, time_axis=True) == [0, 900, 1800, 2700, 3600]


def test_report_key_is_safe_stable_and_distinct():
    run_id = "manual__2025-01-01T00:00:00+00:00"
    key = report_key("/cifar10/", "cifar10_pipeline", run_id)
    assert key.startswith("cifar10/reports/cifar10_pipeline/manual__2025-01-01T00_00_00_00_00-") and key.endswith(".html")
    assert set(key) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/")
    assert key == report_key("cifar10", "cifar10_pipeline", run_id)
    assert report_key("p", "d", "a:b") != report_key("p", "d", "a+b")
    assert report_key("p", "d", "plain_run-1") == "p/reports/d/plain_run-1.html"  # nothing to replace, no hash
    assert report_key("", "d", "r") == "reports/d/r.html"
    for hostile in ("../../etc/passwd", "..", "a/b", " ", "é"):
        parts = report_key("p", "d", hostile).split("/")
        assert len(parts) == 4 and parts[-1] not in ("..", ".html") and not parts[-1].startswith("."), hostile


# --- tuning results from a stubbed SageMaker (botocore checks the shapes both ways) ---------------


def _tuning_description(objective_type: str) -> dict:
    return {
        "HyperParameterTuningJobName": "t", "HyperParameterTuningJobArn": "arn:aws:sagemaker:us-east-1:123456789012:hyper-parameter-tuning-job/t",
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian", "ResourceLimits": {"MaxParallelTrainingJobs": 2, "MaxNumberOfTrainingJobs": 4},
            "HyperParameterTuningJobObjective": {"Type": objective_type, "MetricName": "val:loss"},
        },
        "HyperParameterTuningJobStatus": "Completed", "CreationTime": T0,
        "TrainingJobStatusCounters": {"Completed": 3, "NonRetryableError": 1},
        "ObjectiveStatusCounters": {"Succeeded": 3, "Failed": 1},
    }


def _summary(name: str, value: float | None, status: str = "Completed", **extra) -> dict:
    summary = {"TrainingJobName": name, "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{name}",
               "CreationTime": T0, "TrainingJobStatus": status, "TunedHyperParameters": {"lr": f"0.{len(name)}"},
               "ObjectiveStatus": "Succeeded" if value is not None else "Failed", **extra}
    if value is not None:
        summary["FinalHyperParameterTuningJobObjectiveMetric"] = {"Type": "Minimize", "MetricName": "val:loss", "Value": value}
    return summary


@pytest.mark.parametrize("objective_type,expected", [("Minimize", ["b", "c", "a", "d"]), ("Maximize", ["a", "c", "b", "d"])])
def test_tuning_results_best_first_across_pages(objective_type, expected):
    sm = boto3.client("sagemaker", region_name=TEST_REGION)
    with Stubber(sm) as stub:
        stub.add_response("describe_hyper_parameter_tuning_job", _tuning_description(objective_type), {"HyperParameterTuningJobName": "t"})
        stub.add_response("list_training_jobs_for_hyper_parameter_tuning_job",
                          {"TrainingJobSummaries": [_summary("a", 0.9), _summary("d", None, "Failed", FailureReason="OOM")], "NextToken": "p2"},
                          {"HyperParameterTuningJobName": "t"})
        stub.add_response("list_training_jobs_for_hyper_parameter_tuning_job",
                          {"TrainingJobSummaries": [_summary("b", 0.2), _summary("c", 0.5)]},
                          {"HyperParameterTuningJobName": "t", "NextToken": "p2"})
        results = tuning_results(sm, "t")
        stub.assert_no_pending_responses()
    assert [r["name"] for r in results] == expected
    by_name = {r["name"]: r for r in results}
    assert by_name["b"] == {"name": "b", "status": "Completed", "hyperparameters": {"lr": "0.1"}, "objective": 0.2,
                            "objective_metric": "val:loss", "objective_status": "Succeeded", "definition": None, "failure_reason": None}
    assert by_name["d"]["objective"] is None and by_name["d"]["failure_reason"] == "OOM"
    assert by_name["d"]["objective_metric"] == "val:loss"  # from the tuning job's objective
    parse(render_report(full_report(tuning=results)))  # renders


# --- training curves: algo-1 only, every restart's stream, the final metrics as a fallback ---------


def _event(ms: int, message: str) -> dict:
    return {"timestamp": ms, "message": message, "ingestionTime": ms}


def _stubbed_job(sm_stub: Stubber, metric_definitions: list[dict], final_metrics: dict[str, float], *,
                 instance_count: int = 1) -> None:
    """DescribeTrainingJob of "job", Completed, started at T0, with these MetricDefinitions and final values
    (name -> seconds after T0, value)."""
    sm_stub.add_response("describe_training_job", {
        "TrainingJobName": "job", "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/job",
        "TrainingJobStatus": "Completed", "SecondaryStatus": "Completed", "CreationTime": T0, "TrainingStartTime": T0,
        "ModelArtifacts": {"S3ModelArtifacts": "s3://b/model.tar.gz"},
        "AlgorithmSpecification": {"TrainingInputMode": "File", "MetricDefinitions": metric_definitions},
        "ResourceConfig": {"InstanceCount": instance_count, "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
        "FinalMetricDataList": [{"MetricName": name, "Value": value, "Timestamp": T0 + dt.timedelta(seconds=seconds)}
                                for name, (seconds, value) in final_metrics.items()],
    }, {"TrainingJobName": "job"})


def test_training_curves_read_algo_1_streams_in_order_and_fill_in_final_metrics():
    sm = boto3.client("sagemaker", region_name=TEST_REGION)
    logs = boto3.client("logs", region_name=TEST_REGION)
    metric_definitions = [
        {"Name": "loss", "Regex": r"loss=([0-9.]+)"},
        {"Name": "step", "Regex": r"(?<=step )[0-9]+"},  # no group: the whole match
        {"Name": "val:f1", "Regex": r"f1=([0-9.]+)"},  # only in FinalMetricDataList
        {"Name": "never", "Regex": r"never=([0-9.]+)"},
    ]
    start = int(T0.timestamp() * 1000) + 5000
    first, restart = "job/algo-1-1748772000", "job/algo-1-1748772060"
    with Stubber(sm) as sm_stub, Stubber(logs) as logs_stub:
        _stubbed_job(sm_stub, metric_definitions, {"loss": (70, 0.3), "val:f1": (75, 0.77)}, instance_count=2)
        # listed out of order and over two pages; the restart's stream started later
        logs_stub.add_response("describe_log_streams", {"logStreams": [{"logStreamName": restart, "firstEventTimestamp": start + 60000}],
                                                        "nextToken": "n"},
                               {"logGroupName": LOG_GROUP, "logStreamNamePrefix": "job/algo-1-"})
        logs_stub.add_response("describe_log_streams", {"logStreams": [{"logStreamName": first, "firstEventTimestamp": start}]},
                               {"logGroupName": LOG_GROUP, "logStreamNamePrefix": "job/algo-1-", "nextToken": "n"})
        logs_stub.add_response("get_log_events", {"events": [_event(start, "starting"), _event(start + 1000, "step 1 loss=0.9")],
                                                  "nextForwardToken": "f/1", "nextBackwardToken": "b/0"},
                               {"logGroupName": LOG_GROUP, "logStreamName": first, "startFromHead": True})
        logs_stub.add_response("get_log_events", {"events": [_event(start + 2500, "step 2 loss=0.7\nstep 3 loss=nan")],
                                                  "nextForwardToken": "f/2", "nextBackwardToken": "b/1"},
                               {"logGroupName": LOG_GROUP, "logStreamName": first, "startFromHead": True, "nextToken": "f/1"})
        logs_stub.add_response("get_log_events", {"events": [], "nextForwardToken": "f/2", "nextBackwardToken": "b/2"},
                               {"logGroupName": LOG_GROUP, "logStreamName": first, "startFromHead": True, "nextToken": "f/2"})
        logs_stub.add_response("get_log_events", {"events": [_event(start + 60000, "resumed step 4 loss=0.5"),
                                                             _event(start + 61000, "step 5 loss=0.3")],
                                                  "nextForwardToken": "g/1", "nextBackwardToken": "h/0"},
                               {"logGroupName": LOG_GROUP, "logStreamName": restart, "startFromHead": True})
        logs_stub.add_response("get_log_events", {"events": [], "nextForwardToken": "g/1", "nextBackwardToken": "h/1"},
                               {"logGroupName": LOG_GROUP, "logStreamName": restart, "startFromHead": True, "nextToken": "g/1"})
        curves = training_curves(sm, logs, "job")
        sm_stub.assert_no_pending_responses()
        logs_stub.assert_no_pending_responses()
    assert list(curves) == ["loss", "step", "val:f1", "never"]
    assert curves["loss"] == [(1.0, 0.9), (2.5, 0.7), (60.0, 0.5), (61.0, 0.3)]  # nan skipped, times from the first event
    assert curves["step"] == [(1.0, 1.0), (2.5, 2.0), (2.5, 3.0), (60.0, 4.0), (61.0, 5.0)]
    assert curves["val:f1"] == [(70.0, 0.77)]  # the final value, at its time since the first event (T0 + 5 s)
    assert curves["never"] == []


def test_training_curves_of_a_job_that_never_logged_are_its_final_metrics():
    sm = boto3.client("sagemaker", region_name=TEST_REGION)
    logs = boto3.client("logs", region_name=TEST_REGION)
    with Stubber(sm) as sm_stub, Stubber(logs) as logs_stub:
        _stubbed_job(sm_stub, [{"Name": "loss", "Regex": "loss=(.*)"}], {"loss": (42, 0.3)})
        logs_stub.add_client_error("describe_log_streams", "ResourceNotFoundException", "The specified log group does not exist.",
                                   expected_params={"logGroupName": LOG_GROUP, "logStreamNamePrefix": ANY})
        assert training_curves(sm, logs, "job") == {"loss": [(42.0, 0.3)]}


# --- on the local SageMaker: a real job's printed values come back, in order ------------------------

PREFIX = "run-report-tests"
LOSSES = [0.9, 0.71, 0.55, 0.42, 0.3]
ACCURACIES = [0.2, 0.45, 0.6, 0.74, 0.81]
TRAIN_PY = textwrap.dedent(
    f"""
    import os, time
    losses, accuracies = {LOSSES!r}, {ACCURACIES!r}
    print("loading data; loss=not-a-number yet", flush=True)
    for epoch, (loss, accuracy) in enumerate(zip(losses, accuracies), start=1):
        print(f"epoch {{epoch}} train_loss={{loss:.4f}}", flush=True)
        print(f"epoch {{epoch}} val_accuracy={{accuracy:.4f}}", flush=True)
        time.sleep(0.3)
    open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w").write("ok")
    """
)
METRICS = [
    {"Name": "train:loss", "Regex": r"train_loss=([0-9.]+)"},
    {"Name": "val:accuracy", "Regex": r"val_accuracy=([0-9.]+)"},
    {"Name": "val:f1", "Regex": r"val_f1=([0-9.]+)"},
]


@pytest.fixture(scope="module")
def finished_job(sagemaker_client, s3_client):
    """A tiny training job (the request of the emulator's training tests) running TRAIN_PY with METRICS; it completes."""
    source = f"{PREFIX}/source/sourcedir.tar.gz"
    s3_client.put_object(Bucket=TEST_BUCKET, Key=source, Body=model_archive({"train.py": TRAIN_PY}))
    s3_client.put_object(Bucket=TEST_BUCKET, Key=f"{PREFIX}/data/train/a.csv", Body=b"x\n1\n")
    name = "run-report-curves"
    request = training_request(name, f"s3://{TEST_BUCKET}/{source}", f"s3://{TEST_BUCKET}/{PREFIX}/data/train",
                               max_runtime=300)
    request["AlgorithmSpecification"]["MetricDefinitions"] = METRICS
    sagemaker_client.create_training_job(**request)
    description = wait_until_done(sagemaker_client, name, timeout=180)
    assert description["TrainingJobStatus"] == "Completed", description.get("FailureReason")
    return name, description


@pytest.mark.slow
def test_training_curves_from_a_real_job_hold_the_printed_values_in_order(sagemaker_client, logs_client, finished_job):
    name, description = finished_job
    curves = training_curves(sagemaker_client, logs_client, name)
    assert list(curves) == ["train:loss", "val:accuracy", "val:f1"]
    assert [value for _, value in curves["train:loss"]] == LOSSES
    assert [value for _, value in curves["val:accuracy"]] == ACCURACIES
    assert curves["val:f1"] == []
    for series in (curves["train:loss"], curves["val:accuracy"]):
        times = [t for t, _ in series]
        assert times == sorted(times) and times[0] >= 0
        assert times[-1] - times[0] >= 1.0  # four sleeps of 0.3 s between the first and the last epoch
    assert curves["val:accuracy"][0][0] >= curves["train:loss"][0][0]
    finals = {m["MetricName"]: m["Value"] for m in description["FinalMetricDataList"]}
    assert finals == {"train:loss": curves["train:loss"][-1][1], "val:accuracy": curves["val:accuracy"][-1][1]}
    parse(render_report(full_report(training_job=name, curves=curves)))


def test_publish_report_puts_html_in_s3(s3_client):
    page = render_report(full_report(run_id="manual__2025-06-01T10:00:00+00:00 ✓"))
    key = report_key("cifar10", "cifar10_pipeline", "manual__2025-06-01T10:00:00+00:00 ✓")
    uri = publish_report(s3_client, TEST_BUCKET, key, page)
    assert uri == f"s3://{TEST_BUCKET}/{key}"
    stored = s3_client.get_object(Bucket=TEST_BUCKET, Key=key)
    assert stored["ContentType"].split(";")[0] == "text/html"
    assert stored["Body"].read().decode("utf-8") == page
