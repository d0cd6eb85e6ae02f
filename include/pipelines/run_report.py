"""A run's report as one self-contained HTML page: the decision first, then why, in charts.

`training_curves` reads a training job's metrics over its run time, `tuning_results` a tuning job's
candidates best first; `render_report` turns a report dict (the schema is in its docstring) into a
page with inline SVG charts, inline CSS and no script, font or image from elsewhere, so it opens
from S3, an e-mail attachment or a laptop alike; `publish_report` puts it in S3 under `report_key`.

Only the Airflow side's libraries are used (no matplotlib): the charts are SVG drawn here. Every
value that comes from outside (names, run ids, reasons, hyperparameters, URLs) goes through
html.escape, and a link is made clickable only when its URL is http(s).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import html
import logging
import math
import re
from typing import Any, Iterable

log = logging.getLogger(__name__)

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
# the host SageMaker scrapes metrics from: the first instance, whose streams are <job>/algo-1-<epoch>
METRICS_HOST = "algo-1"


# --- training curves -----------------------------------------------------------------------------


def training_curves(sm, logs, training_job_name: str) -> dict[str, list[tuple[float, float]]]:
    """Each metric's values over the job's run time: {metric: [(seconds since the first log event, value)]}.

    The job's MetricDefinitions (from DescribeTrainingJob) are applied to every line of host algo-1's
    CloudWatch Logs streams (`/aws/sagemaker/TrainingJobs`, `<job>/algo-1-<epoch>`, several when a
    spot job restarted), as SageMaker scrapes them: the first match of each regex in a line, its first
    group when it has one. Every defined metric is a key, in definition order, with [] when it never
    appeared. A metric of FinalMetricDataList the logs do not show (expired, unreadable) gets its
    final value as its one point, at its timestamp.
    """
    description = sm.describe_training_job(TrainingJobName=training_job_name)
    definitions = (description.get("AlgorithmSpecification") or {}).get("MetricDefinitions") or []
    patterns: list[tuple[str, re.Pattern]] = []
    for definition in definitions:
        try:
            patterns.append((definition["Name"], re.compile(definition["Regex"])))
        except re.error as exc:  # SageMaker refuses these at CreateTrainingJob; a report must not fail on one
            log.warning("metric %s: regex %r does not compile (%s); skipped", definition["Name"], definition["Regex"], exc)
    curves: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in patterns}
    origin_ms: int | None = None
    for event in _host_events(logs, training_job_name, METRICS_HOST):
        if origin_ms is None:
            origin_ms = event["timestamp"]
        seconds = (event["timestamp"] - origin_ms) / 1000
        for line in event["message"].splitlines():
            for name, pattern in patterns:
                value = _scraped_value(pattern, line)
                if value is not None:
                    curves[name].append((seconds, value))
    origin = (
        dt.datetime.fromtimestamp(origin_ms / 1000, dt.timezone.utc) if origin_ms is not None
        else description.get("TrainingStartTime")
    )
    for final in description.get("FinalMetricDataList") or []:
        name = final.get("MetricName")
        if name is None or curves.get(name):
            continue
        value = _finite(final.get("Value"))
        if value is None:
            continue
        stamp = final.get("Timestamp")
        seconds = max(0.0, (stamp - origin).total_seconds()) if isinstance(stamp, dt.datetime) and isinstance(origin, dt.datetime) else 0.0
        curves[name] = [(seconds, value)]
    return curves


def _scraped_value(pattern: re.Pattern, line: str) -> float | None:
    match = pattern.search(line)
    if not match:
        return None
    return _finite(match.group(1) if pattern.groups else match.group(0))


def _finite(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _host_events(logs, job_name: str, host: str) -> Iterable[dict]:
    """Every event of the host's streams, stream by stream (oldest first), each stream in order."""
    prefix = f"{job_name}/{host}-"  # the trailing '-' keeps algo-10 out of algo-1
    streams: list[dict] = []
    try:
        for page in logs.get_paginator("describe_log_streams").paginate(logGroupName=LOG_GROUP, logStreamNamePrefix=prefix):
            streams.extend(page.get("logStreams") or [])
    except logs.exceptions.ResourceNotFoundException:
        return  # no log group yet: the job never logged
    streams.sort(key=lambda s: (s.get("firstEventTimestamp") or s.get("creationTime") or 0, s["logStreamName"]))
    for stream in streams:
        token = None
        while True:
            kwargs = {"logGroupName": LOG_GROUP, "logStreamName": stream["logStreamName"], "startFromHead": True}
            if token:
                kwargs["nextToken"] = token
            page = logs.get_log_events(**kwargs)
            yield from page.get("events") or []
            following = page.get("nextForwardToken")
            # the end of a stream answers with no events, or with the token it was given
            if not page.get("events") or not following or following == token:
                break
            token = following


# --- tuning --------------------------------------------------------------------------------------


def tuning_results(sm, tuning_job_name: str) -> list[dict]:
    """The tuning job's training jobs, best first.

    Each: {"name", "status", "hyperparameters" (the tuned ones, as SageMaker gives them: strings),
    "objective" (float, or None when the job reported none), "objective_metric", "objective_status",
    "definition" (TrainingJobDefinitionName or None), "failure_reason" (or None)}. The objective's
    type (Maximize or Minimize) is the tuning job's; jobs without a value come last, by name.
    """
    tuning = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=tuning_job_name)
    maximize = _objective_type(tuning) != "Minimize"
    results = []
    paginator = sm.get_paginator("list_training_jobs_for_hyper_parameter_tuning_job")
    for page in paginator.paginate(HyperParameterTuningJobName=tuning_job_name):
        for summary in page.get("TrainingJobSummaries") or []:
            final = summary.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
            results.append({
                "name": summary["TrainingJobName"],
                "status": summary.get("TrainingJobStatus"),
                "hyperparameters": dict(summary.get("TunedHyperParameters") or {}),
                "objective": _finite(final.get("Value")),
                "objective_metric": final.get("MetricName") or _objective_metric(tuning),
                "objective_status": summary.get("ObjectiveStatus"),
                "definition": summary.get("TrainingJobDefinitionName"),
                "failure_reason": summary.get("FailureReason"),
            })

    def rank(result: dict):
        value = result["objective"]
        if value is None:
            return (1, 0.0, result["name"])
        return (0, -value if maximize else value, result["name"])

    return sorted(results, key=rank)


def _objective(tuning: dict) -> dict:
    objective = (tuning.get("HyperParameterTuningJobConfig") or {}).get("HyperParameterTuningJobObjective")
    if objective:
        return objective
    # several training job definitions carry an objective each
    for definition in tuning.get("TrainingJobDefinitions") or [tuning.get("TrainingJobDefinition") or {}]:
        if definition.get("TuningObjective"):
            return definition["TuningObjective"]
    return {}


def _objective_type(tuning: dict) -> str:
    return _objective(tuning).get("Type", "Maximize")


def _objective_metric(tuning: dict) -> str | None:
    return _objective(tuning).get("MetricName")


# --- publishing ----------------------------------------------------------------------------------


def report_key(s3_prefix: str, dag_id: str, run_id: str) -> str:
    """'<prefix>/reports/<dag_id>/<run_id>.html' with every character outside [A-Za-z0-9._-] replaced.

    Run ids hold ':' and '+' ('manual__2025-01-01T00:00:00+00:00'); when a part had to change, a short
    hash of the original is appended so that two run ids never share a key.
    """
    parts = [part for part in (s3_prefix or "").strip("/").split("/") if part]
    return "/".join([*parts, "reports", _safe_key_part(dag_id), _safe_key_part(run_id) + ".html"])


def _safe_key_part(text: str) -> str:
    text = str(text)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", text).lstrip(".")[:120]
    if safe != text or not safe:
        safe = f"{safe}-{hashlib.sha256(text.encode()).hexdigest()[:8]}" if safe else hashlib.sha256(text.encode()).hexdigest()[:8]
    return safe


def publish_report(s3, bucket: str, key: str, html_text: str) -> str:
    """Put the page in S3 (served as text/html, UTF-8); returns its s3:// URI."""
    s3.put_object(Bucket=bucket, Key=key, Body=html_text.encode("utf-8"), ContentType="text/html; charset=utf-8")
    return f"s3://{bucket}/{key}"


# --- formatting ----------------------------------------------------------------------------------


def _e(value: Any) -> str:
    """Text from outside, safe in an element or a quoted attribute."""
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    return _finite(value)


def fmt_number(value: Any) -> str:
    """Four significant digits, thousands separated: 0.8612, 12.35, 1,235, 3.2e-05; '—' for nothing."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    number = _num(value)
    if number is None:
        return str(value)
    if number == 0:
        return "0"
    magnitude = abs(number)
    if magnitude >= 1e7 or magnitude < 1e-3:
        return f"{number:.3g}"
    if magnitude >= 1000:
        return f"{number:,.0f}"
    return f"{number:.4g}"


def fmt_usd(value: Any) -> str:
    number = _num(value)
    if number is None:
        return "—"
    if number != 0 and abs(number) < 0.01:
        return f"${number:.4f}"
    return f"${number:,.2f}"


def fmt_duration(seconds: Any) -> str:
    number = _num(seconds)
    if number is None:
        return "—"
    total = int(round(number))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def _fmt_when(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    return "" if value is None else str(value)


def _tick_label(value: float, step: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e6 or abs(value) < 1e-4:
        return f"{value:.2g}"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    if step < 10 and round(step / 10 ** math.floor(math.log10(step)), 6) == 2.5:
        decimals += 1
    return f"{value:,.{decimals}f}"


def _time_tick_label(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:g} s"
    if seconds < 7200:
        minutes = seconds / 60
        return f"{minutes:g} min" if minutes == int(minutes) else f"{int(minutes)}:{int(seconds % 60):02d}"
    return f"{seconds / 3600:g} h"


def nice_ticks(lo: float, hi: float, count: int = 5, *, time_axis: bool = False) -> list[float]:
    """Round tick values covering [lo, hi] (steps of 1, 2, 2.5 or 5 times a power of ten; on a time
    axis past two minutes, whole minutes)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        pad = abs(hi) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(1, count)
    if time_axis and raw >= 60:
        choices = [60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400]
        step = next((c for c in choices if c >= raw), choices[-1])
    else:
        magnitude = 10 ** math.floor(math.log10(raw))
        step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw - 1e-12)
    start = math.floor(lo / step + 1e-9) * step
    end = math.ceil(hi / step - 1e-9) * step
    return [round(start + i * step, 12) for i in range(int(round((end - start) / step)) + 1)]


# --- charts --------------------------------------------------------------------------------------

_BLUE, _ORANGE, _GREY, _RED, _INK, _MUTED, _GRID = "#0969da", "#bc4c00", "#8c959f", "#cf222e", "#1f2328", "#656d76", "#e6e9ed"
_LOSS_WORDS = ("loss", "error", "err", "mse", "mae", "rmse", "wer", "cer", "perplexity", "nll", "ctc")


def _lower_is_better(metric: str) -> bool:
    words = re.split(r"[^a-z0-9]+", metric.lower())
    return any(word in _LOSS_WORDS or word.endswith("loss") for word in words)


def _svg_open(width: int, height: int, label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'role="img" aria-label="{_e(label)}"><title>{_e(label)}</title>')


def _comparison_chart(metric: str, challenger: float | None, champion: float | None,
                      threshold: float | None, margin: float | None, direction: str | None) -> str:
    """Horizontal bars for challenger and champion, the threshold (and the champion's bar plus margin) as lines."""
    bars = [("Challenger", challenger, _BLUE), ("Champion", champion, _GREY)]
    bars = [bar for bar in bars if bar[1] is not None]
    if not bars:
        return ""
    lines = []
    if threshold is not None:
        lines.append(("threshold", threshold, _RED, "6 4"))
    if champion is not None and margin:
        target = champion + margin if direction != "minimize" else champion - margin
        lines.append(("champion " + ("+" if direction != "minimize" else "−") + " margin", target, _INK, "2 3"))
    values = [value for _, value, _ in bars] + [value for _, value, _, _ in lines]
    ticks = nice_ticks(min(0.0, *values), max(0.0, *values), 5)
    lo, hi = ticks[0], ticks[-1]
    width, left, right, top, bar_h, gap = 900, 110, 90, 12, 34, 16
    plot_w = width - left - right
    height = top + len(bars) * (bar_h + gap) + (54 if lines else 28)
    x = lambda value: left + (value - lo) / (hi - lo) * plot_w  # noqa: E731
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1
    out = [_svg_open(width, height, f"{metric}: challenger against champion and threshold")]
    axis_y = top + len(bars) * (bar_h + gap) - gap / 2
    for tick in ticks:
        out.append(f'<line x1="{x(tick):.1f}" y1="{top - 6}" x2="{x(tick):.1f}" y2="{axis_y:.1f}" stroke="{_GRID}"/>')
        out.append(f'<text x="{x(tick):.1f}" y="{axis_y + 16:.1f}" text-anchor="middle" class="tick">{_e(_tick_label(tick, step))}</text>')
    for index, (label, value, color) in enumerate(bars):
        y = top + index * (bar_h + gap)
        x0, x1 = sorted((x(0.0), x(value)))
        out.append(f'<text x="{left - 10}" y="{y + bar_h / 2 + 5:.1f}" text-anchor="end" class="barlabel">{_e(label)}</text>')
        out.append(f'<rect x="{x0:.1f}" y="{y}" width="{max(1.5, x1 - x0):.1f}" height="{bar_h}" rx="3" fill="{color}">'
                   f'<title>{_e(label)}: {_e(fmt_number(value))}</title></rect>')
        # the values in a column right of the plot, clear of the bars' ends and the lines
        out.append(f'<text x="{width - 8}" y="{y + bar_h / 2 + 5:.1f}" text-anchor="end" class="barvalue">{_e(fmt_number(value))}</text>')
    for index, (label, value, color, dash) in enumerate(lines):
        lx = x(value)
        out.append(f'<line x1="{lx:.1f}" y1="{top - 6}" x2="{lx:.1f}" y2="{axis_y:.1f}" stroke="{color}" '
                   f'stroke-width="2" stroke-dasharray="{dash}"><title>{_e(label)}: {_e(fmt_number(value))}</title></line>')
    # the lines' legend under the axis, one entry after the other
    legend_x, legend_y = left, axis_y + 40
    for label, value, color, dash in lines:
        text = f"{label} {fmt_number(value)}"
        out.append(f'<line x1="{legend_x}" y1="{legend_y - 4}" x2="{legend_x + 24}" y2="{legend_y - 4}" stroke="{color}" '
                   f'stroke-width="2" stroke-dasharray="{dash}"/>')
        out.append(f'<text x="{legend_x + 30}" y="{legend_y}" class="linelabel" fill="{color}">{_e(text)}</text>')
        legend_x += 30 + 7.5 * len(text) + 28
    out.append("</svg>")
    return "".join(out)


def _line_chart(metric: str, points: list[tuple[float, float]], *, threshold: float | None = None) -> str:
    """One metric over time: a line with its points, the last value labelled, the threshold dashed."""
    width, height, left, right, top, bottom = 440, 220, 56, 58, 14, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    color = _ORANGE if _lower_is_better(metric) else _BLUE
    out = [_svg_open(width, height, f"{metric} over the training job's run time")]
    if not points:
        out.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#f6f8fa" stroke="{_GRID}"/>')
        out.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle" class="empty">'
                   "no values logged</text></svg>")
        return "".join(out)
    values = [value for _, value in points] + ([threshold] if threshold is not None else [])
    y_ticks = nice_ticks(min(values), max(values), 4)
    t_max = max(t for t, _ in points)
    t_ticks = nice_ticks(0.0, t_max if t_max > 0 else 1.0, 4, time_axis=True)
    y_lo, y_hi, t_hi = y_ticks[0], y_ticks[-1], t_ticks[-1]
    px = lambda t: left + t / t_hi * plot_w  # noqa: E731
    py = lambda v: top + (1 - (v - y_lo) / (y_hi - y_lo)) * plot_h  # noqa: E731
    y_step = y_ticks[1] - y_ticks[0]
    for tick in y_ticks:
        out.append(f'<line x1="{left}" y1="{py(tick):.1f}" x2="{left + plot_w}" y2="{py(tick):.1f}" stroke="{_GRID}"/>')
        out.append(f'<text x="{left - 6}" y="{py(tick) + 4:.1f}" text-anchor="end" class="tick">{_e(_tick_label(tick, y_step))}</text>')
    for tick in t_ticks:
        out.append(f'<line x1="{px(tick):.1f}" y1="{top + plot_h}" x2="{px(tick):.1f}" y2="{top + plot_h + 4}" stroke="{_MUTED}"/>')
        out.append(f'<text x="{px(tick):.1f}" y="{top + plot_h + 17}" text-anchor="middle" class="tick">{_e(_time_tick_label(tick))}</text>')
    out.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="{_MUTED}"/>')
    out.append(f'<text x="{left + plot_w / 2}" y="{height - 3}" text-anchor="middle" class="axis">time since the job\'s first log line</text>')
    if threshold is not None:
        out.append(f'<line x1="{left}" y1="{py(threshold):.1f}" x2="{left + plot_w}" y2="{py(threshold):.1f}" stroke="{_RED}" '
                   f'stroke-width="1.5" stroke-dasharray="6 4"><title>threshold {_e(fmt_number(threshold))}</title></line>')
        above = py(threshold) - top > 16
        out.append(f'<text x="{left + 4}" y="{py(threshold) + (-5 if above else 14):.1f}" class="linelabel" fill="{_RED}">'
                   f'threshold {_e(fmt_number(threshold))}</text>')
    path = " ".join(f"{px(t):.1f},{py(v):.1f}" for t, v in points)
    out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2" stroke-linejoin="round"/>')
    if len(points) <= 60:
        for t, v in points:
            out.append(f'<circle cx="{px(t):.1f}" cy="{py(v):.1f}" r="2.6" fill="{color}">'
                       f'<title>{_e(_time_tick_label(round(t, 1)))}: {_e(fmt_number(v))}</title></circle>')
    last_t, last_v = points[-1]
    out.append(f'<circle cx="{px(last_t):.1f}" cy="{py(last_v):.1f}" r="4" fill="#fff" stroke="{color}" stroke-width="2"/>')
    out.append(f'<text x="{px(last_t) + 7:.1f}" y="{py(last_v) + 4:.1f}" class="lastvalue" fill="{color}">{_e(fmt_number(last_v))}</text>')
    out.append("</svg>")
    return "".join(out)


def _share_bar(fraction: float, color: str = _BLUE, width: int = 100) -> str:
    fraction = min(1.0, max(0.0, fraction))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} 10" width="{width}" height="10" aria-hidden="true">'
            f'<rect x="0" y="0" width="{width}" height="10" rx="2" fill="{_GRID}"/>'
            f'<rect x="0" y="0" width="{fraction * width:.1f}" height="10" rx="2" fill="{color}"/></svg>')


# --- the page ------------------------------------------------------------------------------------

# outcome -> (label, css class, icon)
OUTCOMES = {
    "promoted": ("Promoted", "promoted", "check"),
    "rejected": ("Rejected", "rejected", "cross"),
    "rolled_back": ("Rolled back", "rolled-back", "undo"),
    "approval_rejected": ("Approval rejected", "approval-rejected", "cross"),
    "not_deployed": ("Not deployed", "not-deployed", "dash"),
    "failed": ("Failed", "failed", "bang"),
}
_ICONS = {
    "check": '<polyline points="5,12.5 10,17.5 19,7" />',
    "cross": '<line x1="6" y1="6" x2="18" y2="18"/><line x1="18" y1="6" x2="6" y2="18"/>',
    "undo": '<path d="M9 5 4 10l5 5"/><path d="M4 10h10a5 5 0 0 1 0 10h-3"/>',
    "dash": '<line x1="6" y1="12" x2="18" y2="12"/>',
    "bang": '<line x1="12" y1="5" x2="12" y2="14"/><line x1="12" y1="18.5" x2="12" y2="19"/>',
}
_STATE_CLASSES = {
    "inservice": "ok", "approved": "ok", "completed": "ok", "succeeded": "ok",
    "failed": "bad", "rejected": "bad", "stopped": "bad", "outofservice": "bad",
}
_NOT_RUN = '<p class="notrun">not run</p>'

_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f6f8fa; color: #1f2328; line-height: 1.45;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Liberation Sans", "DejaVu Sans", sans-serif; }
main { max-width: 1000px; margin: 0 auto; padding: 28px 24px 48px; }
header { margin-bottom: 18px; }
header h1 { font-size: 24px; margin: 0 0 4px; font-weight: 650; }
header .meta { color: #656d76; font-size: 13px; display: flex; flex-wrap: wrap; gap: 4px 18px; }
header .meta b { color: #1f2328; font-weight: 600; }
section { background: #fff; border: 1px solid #d0d7de; border-radius: 10px; padding: 18px 22px; margin: 0 0 18px; }
section h2 { font-size: 16px; margin: 0 0 12px; font-weight: 650; }
section h2 .sub { color: #656d76; font-weight: 400; font-size: 13px; margin-left: 8px; }
.badge { display: inline-flex; align-items: center; gap: 12px; padding: 10px 22px 10px 16px; border-radius: 999px;
  color: #fff; font-size: 30px; font-weight: 700; letter-spacing: .01em; }
.badge svg { width: 32px; height: 32px; stroke: #fff; stroke-width: 3; fill: none; stroke-linecap: round; stroke-linejoin: round; }
.badge.promoted { background: #1a7f37; }
.badge.rejected { background: #6e7781; }
.badge.rolled-back { background: #cf222e; }
.badge.approval-rejected { background: #bf8700; }
.badge.not-deployed { background: #57606a; }
.badge.failed { background: #82071e; }
.badge.unknown { background: #8c959f; }
.badge.none { background: #eaeef2; color: #656d76; font-size: 20px; padding: 8px 18px; }
.decision-top { display: flex; flex-wrap: wrap; align-items: center; gap: 14px 22px; }
.reason { font-size: 17px; margin: 0; flex: 1 1 340px; }
.facts { display: flex; flex-wrap: wrap; gap: 10px; margin: 18px 0 6px; }
.fact { flex: 1 1 110px; min-width: 0; background: #f6f8fa; border-radius: 8px; padding: 8px 12px; }
.fact .k { color: #656d76; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.fact .v { font-size: 20px; font-weight: 650; font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
.fact .v.small { font-size: 15px; }
.fact.wide { flex: 1 1 auto; }
.checks { list-style: none; padding: 0; margin: 8px 0 4px; display: flex; flex-wrap: wrap; gap: 6px 20px; font-size: 14px; }
.checks .yes::before { content: "\\2713\\00a0"; color: #1a7f37; font-weight: 700; }
.checks .no::before { content: "\\2717\\00a0"; color: #cf222e; font-weight: 700; }
.chart { margin-top: 10px; overflow-x: auto; }
.chart svg { max-width: 100%; height: auto; }
svg text { font-family: inherit; fill: #1f2328; }
svg .tick { font-size: 11px; fill: #656d76; }
svg .axis { font-size: 11px; fill: #8c959f; }
svg .barlabel { font-size: 14px; font-weight: 600; }
svg .barvalue { font-size: 14px; font-weight: 650; }
svg .linelabel { font-size: 12px; font-weight: 600; }
svg .lastvalue { font-size: 12px; font-weight: 700; }
svg .empty { font-size: 13px; fill: #8c959f; }
.curves { display: grid; grid-template-columns: repeat(auto-fill, minmax(440px, 1fr)); gap: 14px; }
.curve { border: 1px solid #e6e9ed; border-radius: 8px; padding: 10px 12px 6px; }
.curve h3 { font-size: 14px; margin: 0 0 2px; font-weight: 650; overflow-wrap: anywhere; }
.curve .hint { color: #656d76; font-size: 12px; font-weight: 400; margin-left: 6px; }
.curve svg { width: 100%; height: auto; display: block; }
table { border-collapse: collapse; width: 100%; font-size: 13.5px; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid #e6e9ed; vertical-align: top; }
th { color: #656d76; font-weight: 600; font-size: 12px; text-transform: uppercase; letter-spacing: .03em; white-space: nowrap; }
td.mono, td > span.mono { white-space: nowrap; overflow-wrap: normal; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.best td { background: #dafbe1; }
tr:has(+ tr.reason-row) td { border-bottom: none; }
tr.reason-row td { padding-top: 0; }
tr.total td { font-weight: 700; border-bottom: none; border-top: 2px solid #d0d7de; }
.table-wrap { overflow-x: auto; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", "DejaVu Sans Mono", monospace; font-size: 12.5px; overflow-wrap: anywhere; }
.state { display: inline-block; padding: 1px 9px; border-radius: 999px; font-size: 12.5px; font-weight: 600; background: #fff8c5; color: #7d4e00; }
.state.ok { background: #dafbe1; color: #116329; }
.state.bad { background: #ffebe9; color: #a40e26; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 6px 18px; margin: 0 0 8px; font-size: 14px; }
dl.kv dt { color: #656d76; }
dl.kv dd { margin: 0; overflow-wrap: anywhere; }
.total-cost { font-size: 26px; font-weight: 700; margin: 0 0 10px; font-variant-numeric: tabular-nums; }
.notrun { color: #8c959f; font-style: italic; margin: 0; }
.note { color: #656d76; font-size: 13px; margin: 8px 0 0; }
.failure { background: #ffebe9; border-radius: 6px; padding: 8px 12px; color: #82071e; font-size: 13.5px; white-space: pre-wrap; overflow-wrap: anywhere; }
ul.links { margin: 0; padding-left: 18px; }
ul.links li { margin: 3px 0; overflow-wrap: anywhere; }
a { color: #0969da; }
footer { color: #8c959f; font-size: 12px; text-align: center; }
@media print { body { background: #fff; } section { break-inside: avoid; } }
"""


def render_report(report: dict) -> str:
    """The run's report as one self-contained HTML page.

    `report` (every key but "workload" and "run_id" optional; a section whose key is absent says
    "not run"):
      "workload", "dag_id", "run_id", "generated_at" (str or datetime);
      "decision": {"outcome": "promoted" | "rejected" | "rolled_back" | "approval_rejected" |
          "not_deployed" | "failed", "reason", "metric", "direction": "maximize" | "minimize",
          "challenger": float, "champion": float | None, "threshold": float, "margin": float
          (how far the challenger must beat the champion)};
      "training_job": the job's name; "curves": what training_curves returns;
      "tuning": what tuning_results returns, or None (no tuning in this run);
      "cost": {"total_usd", "lines": [{"kind", "name", "instance_type", "instance_count",
          "billable_seconds", "usd_per_hour", "usd"}]};
      "model_package": {"arn", "version", "approval_status", "approval_description"};
      "endpoint": {"name", "status", "config", "variants": [{"name", "model", "weight", "instances"}],
          "failure_reason"}, or None (no endpoint);
      "links": {label: url} (only http(s) URLs become links).
    """
    workload = report.get("workload") or "run"
    decision = report.get("decision")
    title = f"{workload} · {report.get('run_id', '')}"
    if decision:
        title = f"{_outcome_label(decision.get('outcome'))} · {title}"
    meta = [("DAG", report.get("dag_id")), ("Run", report.get("run_id")), ("Generated", _fmt_when(report.get("generated_at")))]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>",
        f'<header><h1>Run report: {_e(workload)}</h1><div class="meta">',
        "".join(f"<span>{_e(k)} <b>{_e(v)}</b></span>" for k, v in meta if v not in (None, "")),
        "</div></header>",
        _decision_section(decision),
        _curves_section(report),
        _tuning_section(report),
        _cost_section(report),
        _registry_section(report),
        _endpoint_section(report),
        _links_section(report),
        '<footer>Self-contained report: no scripts, fonts or images from elsewhere.</footer>',
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"


def _section(section_id: str, heading: str, body: str, sub: str | None = None) -> str:
    sub_html = f'<span class="sub">{_e(sub)}</span>' if sub else ""
    return f'<section id="{section_id}"><h2>{_e(heading)}{sub_html}</h2>{body}</section>'


def _badge(outcome: str | None) -> str:
    if outcome is None:
        return '<div class="badge none" data-outcome="none">No decision</div>'
    _, css, icon = OUTCOMES.get(outcome, (None, "unknown", "dash"))
    label = _outcome_label(outcome)
    svg = f'<svg viewBox="0 0 24 24" aria-hidden="true">{_ICONS[icon]}</svg>'
    return f'<div class="badge {css}" data-outcome="{_e(outcome)}">{svg}<span>{_e(label)}</span></div>'


def _outcome_label(outcome: Any) -> str:
    """'Rolled back' for rolled_back; an outcome this page does not know, as given."""
    if isinstance(outcome, str) and outcome in OUTCOMES:
        return OUTCOMES[outcome][0]
    return str(outcome or "unknown").replace("_", " ").capitalize()


def _fact(key: str, value: str, small: bool = False, wide: bool = False) -> str:
    return (f'<div class="fact{" wide" if wide else ""}"><div class="k">{_e(key)}</div>'
            f'<div class="v{" small" if small else ""}">{_e(value)}</div></div>')


def _decision_section(decision: dict | None) -> str:
    if not decision:
        return _section("decision", "Decision", f'<div class="decision-top">{_badge(None)}{_NOT_RUN}</div>')
    metric = decision.get("metric") or "metric"
    direction = decision.get("direction")
    challenger, champion = _num(decision.get("challenger")), _num(decision.get("champion"))
    threshold, margin = _num(decision.get("threshold")), _num(decision.get("margin"))
    reason = decision.get("reason")
    top = (f'<div class="decision-top">{_badge(decision.get("outcome"))}'
           + (f'<p class="reason">{_e(reason)}</p>' if reason else "") + "</div>")
    arrow = {"maximize": "higher is better", "minimize": "lower is better"}.get(direction, direction or "—")
    facts = [
        _fact("metric", metric, small=len(str(metric)) > 9, wide=len(str(metric)) > 12),
        _fact("direction", arrow, small=True),
        _fact("challenger", fmt_number(challenger)),
        _fact("champion", fmt_number(champion) if champion is not None else "none yet", small=champion is None),
        _fact("threshold", fmt_number(threshold)),
    ]
    if margin is not None:
        facts.append(_fact("margin", fmt_number(margin)))
    checks = []
    if challenger is not None and direction in ("maximize", "minimize"):
        better = (lambda a, b: a >= b) if direction == "maximize" else (lambda a, b: a <= b)
        sign = "≥" if direction == "maximize" else "≤"
        if threshold is not None:
            ok = better(challenger, threshold)
            checks.append((ok, f"challenger {fmt_number(challenger)} {sign if ok else ('<' if direction == 'maximize' else '>')} "
                               f"threshold {fmt_number(threshold)}"))
        if champion is not None:
            target = champion + (margin or 0) * (1 if direction == "maximize" else -1)
            ok = challenger > target if direction == "maximize" else challenger < target  # by more than the margin
            what = "champion" + (f" {'+' if direction == 'maximize' else '−'} margin" if margin else "")
            checks.append((ok, f"challenger {'beats' if ok else 'does not beat'} {what} ({fmt_number(target)})"))
    checks_html = ("<ul class=\"checks\">" + "".join(f'<li class="{"yes" if ok else "no"}">{_e(text)}</li>' for ok, text in checks)
                   + "</ul>") if checks else ""
    chart = _comparison_chart(metric, challenger, champion, threshold, margin, direction)
    chart_html = (f'<div class="chart" id="comparison">{chart}</div>' if chart else "")
    return _section("decision", "Decision", top + f'<div class="facts">{"".join(facts)}</div>' + checks_html + chart_html)


def _curves_section(report: dict) -> str:
    job = report.get("training_job")
    if "curves" not in report or report["curves"] is None:
        return _section("curves", "Training curves", _NOT_RUN, sub=job)
    curves: dict = report["curves"] or {}
    if not curves and not job:
        return _section("curves", "Training curves", _NOT_RUN)
    if not curves:
        return _section("curves", "Training curves", '<p class="notrun">the job defined no metrics</p>', sub=job)
    decision = report.get("decision") or {}
    gate_metric, gate_threshold = decision.get("metric"), _num(decision.get("threshold"))
    cards = []
    for metric, raw_points in curves.items():
        points = []
        for point in raw_points or []:
            t, v = _num(point[0]), _num(point[1])
            if t is not None and v is not None:
                points.append((t, v))
        is_gate = metric == gate_metric
        hint = "lower is better" if _lower_is_better(str(metric)) else ""
        if is_gate:
            hint = "gate metric" + (f", threshold {fmt_number(gate_threshold)}" if gate_threshold is not None else "")
        last = f" · last {fmt_number(points[-1][1])}" if points else ""
        count = f"{len(points)} value{'s' if len(points) != 1 else ''}{last}"
        chart = _line_chart(str(metric), points, threshold=gate_threshold if is_gate else None)
        cards.append(f'<div class="curve" data-metric="{_e(metric)}"><h3>{_e(metric)}'
                     f'<span class="hint">{_e(count)}{(" · " + _e(hint)) if hint else ""}</span></h3>{chart}</div>')
    return _section("curves", "Training curves", f'<div class="curves">{"".join(cards)}</div>', sub=job)


def _state(value: Any) -> str:
    if value in (None, ""):
        return "—"
    css = _STATE_CLASSES.get(re.sub(r"[^a-z]", "", str(value).lower()), "")
    return f'<span class="state {css}">{_e(value)}</span>'


def _tuning_section(report: dict) -> str:
    if "tuning" not in report:
        return _section("tuning", "Hyperparameter tuning", _NOT_RUN)
    results = report["tuning"]
    if results is None:
        return _section("tuning", "Hyperparameter tuning", '<p class="notrun">no tuning in this run</p>')
    if not results:
        return _section("tuning", "Hyperparameter tuning", '<p class="notrun">the tuning job ran no training jobs</p>')
    names = sorted({key for result in results for key in (result.get("hyperparameters") or {})})
    metric = next((r.get("objective_metric") for r in results if r.get("objective_metric")), None) or "objective"
    values = [_num(r.get("objective")) for r in results]
    known = [v for v in values if v is not None]
    lo, hi = (min(known), max(known)) if known else (0.0, 0.0)
    best_index = 0 if values and values[0] is not None else None
    head = ("<tr><th>#</th><th>training job</th><th>status</th>" + "".join(f"<th>{_e(n)}</th>" for n in names)
            + f'<th class="num">{_e(metric)}</th><th></th></tr>')
    rows = []
    for index, (result, value) in enumerate(zip(results, values)):
        params = result.get("hyperparameters") or {}
        status = result.get("status")
        reason = result.get("failure_reason")
        share = ((value - lo) / (hi - lo) if hi > lo else 1.0) if value is not None else None
        bar = _share_bar(0.08 + 0.92 * share, "#1a7f37" if index == best_index else _BLUE, 60) if share is not None else ""
        cells = "".join(f'<td class="mono">{_e(params.get(n, "—"))}</td>' for n in names)
        rows.append(f'<tr class="{"best" if index == best_index else ""}"><td class="num">{index + 1}{" ★" if index == best_index else ""}</td>'
                    f'<td class="mono">{_e(result.get("name"))}</td><td>{_state(status)}</td>{cells}'
                    f'<td class="num">{_e(fmt_number(value))}</td><td>{bar}</td></tr>')
        if reason:
            short = reason if len(reason) <= 300 else reason[:299] + "…"
            rows.append(f'<tr class="reason-row"><td></td><td colspan="{len(names) + 4}" title="{_e(reason)}">'
                        f'<span class="note">{_e(short)}</span></td></tr>')
    sub = f"{len(results)} training job{'s' if len(results) != 1 else ''}, best first"
    table = f'<div class="table-wrap"><table><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table></div>'
    return _section("tuning", "Hyperparameter tuning", table, sub=sub)


def _cost_section(report: dict) -> str:
    cost = report.get("cost")
    if not cost:
        return _section("cost", "Cost", _NOT_RUN)
    lines = cost.get("lines") or []
    total = _num(cost.get("total_usd"))
    if total is None:
        total = sum(_num(line.get("usd")) or 0.0 for line in lines)
    head = ('<tr><th>kind</th><th>name</th><th>instance</th><th class="num">count</th><th class="num">billable</th>'
            '<th class="num">$/hour</th><th class="num">cost</th><th>share</th></tr>')
    rows = []
    for line in lines:
        usd = _num(line.get("usd"))
        count = line.get("instance_count")
        rows.append(
            f'<tr><td>{_e(line.get("kind", ""))}</td><td><span class="mono">{_e(line.get("name", ""))}</span>'
            + (f'<div class="note">{_e(line["note"])}</div>' if line.get("note") else "") + '</td>'
            f'<td class="mono">{_e(line.get("instance_type", "") or "—")}</td>'
            f'<td class="num">{_e(fmt_number(count) if count is not None else "—")}</td>'
            f'<td class="num">{_e(fmt_duration(line.get("billable_seconds")))}</td>'
            f'<td class="num">{_e(fmt_usd(line.get("usd_per_hour")))}</td><td class="num">{_e(fmt_usd(usd))}</td>'
            f'<td>{_share_bar(usd / total) if usd is not None and total else ""}</td></tr>')
    rows.append(f'<tr class="total"><td colspan="6">total</td><td class="num">{_e(fmt_usd(total))}</td><td></td></tr>')
    body = (f'<p class="total-cost">{_e(fmt_usd(total))}</p>'
            f'<div class="table-wrap"><table><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table></div>')
    prices = cost.get("prices") or {}
    if any(prices.get(k) for k in ("source", "as_of", "region")):
        where = ", ".join(str(v) for v in (prices.get("region"), f"as of {prices['as_of']}" if prices.get("as_of") else None,
                                           prices.get("source")) if v)
        body += f'<p class="note">Prices: {_e(where)}</p>'
    unpriced = [line for line in lines if _num(line.get("usd")) is None]
    if unpriced:
        body += f'<p class="note">{len(unpriced)} line{"s" if len(unpriced) != 1 else ""} without a price: not in the total</p>'
    return _section("cost", "Cost", body, sub="billable time × instances × the hourly price")


def _kv(pairs: list[tuple[str, str]]) -> str:
    """pairs of (label, HTML already escaped)."""
    return '<dl class="kv">' + "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in pairs) + "</dl>"


def _registry_section(report: dict) -> str:
    package = report.get("model_package")
    if not package:
        return _section("registry", "Model registry", _NOT_RUN)
    pairs = [
        ("version", _e(fmt_number(package.get("version")) if package.get("version") is not None else "—")),
        ("approval", _state(package.get("approval_status"))),
        ("description", _e(package.get("approval_description") or "—")),
        ("package", f'<code>{_e(package.get("arn") or "—")}</code>'),
    ]
    return _section("registry", "Model registry", _kv(pairs))


def _endpoint_section(report: dict) -> str:
    if "endpoint" not in report:
        return _section("endpoint", "Endpoint", _NOT_RUN)
    endpoint = report["endpoint"]
    if not endpoint:
        return _section("endpoint", "Endpoint", '<p class="notrun">no endpoint</p>')
    pairs = [
        ("name", f'<code>{_e(endpoint.get("name") or "—")}</code>'),
        ("status", _state(endpoint.get("status"))),
        ("config", f'<code>{_e(endpoint.get("config") or "—")}</code>'),
    ]
    body = _kv(pairs)
    variants = endpoint.get("variants") or []
    if variants:
        weights = [_num(v.get("weight")) or 0.0 for v in variants]
        total = sum(weights)
        rows = "".join(
            f'<tr><td class="mono">{_e(v.get("name", ""))}</td><td class="mono">{_e(v.get("model", ""))}</td>'
            f'<td class="num">{_e(fmt_number(v.get("weight")))}</td>'
            f'<td class="num">{_e(f"{w / total:.0%}" if total else "—")}</td><td>{_share_bar(w / total) if total else ""}</td>'
            f'<td class="num">{_e(fmt_number(v.get("instances")) if v.get("instances") is not None else "—")}</td></tr>'
            for v, w in zip(variants, weights))
        body += ('<div class="table-wrap"><table><thead><tr><th>variant</th><th>model</th><th class="num">weight</th>'
                 '<th class="num">traffic</th><th></th><th class="num">instances</th></tr></thead>'
                 f"<tbody>{rows}</tbody></table></div>")
    if endpoint.get("failure_reason"):
        body += f'<p class="failure">{_e(endpoint["failure_reason"])}</p>'
    return _section("endpoint", "Endpoint", body)


def _links_section(report: dict) -> str:
    links = report.get("links")
    if not links:
        return ""
    items = []
    for label, url in links.items():
        url_text = "" if url is None else str(url)
        if re.match(r"^https?://", url_text, re.IGNORECASE):
            items.append(f'<li><a href="{_e(url_text)}" rel="noopener noreferrer">{_e(label)}</a></li>')
        else:  # s3:// and anything else: shown, not followed (a javascript: URL must never become a link)
            items.append(f'<li>{_e(label)}: <code>{_e(url_text)}</code></li>')
    return _section("links", "Links", f'<ul class="links">{"".join(items)}</ul>')
