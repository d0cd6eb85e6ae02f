"""A real Airflow on this machine, run as users run theirs: api-server, scheduler, dag-processor and
triggerer as separate processes, LocalExecutor, tasks in parallel, deferrable operators deferred to
the triggerer. Runs are triggered, watched and read back through Airflow's REST API.

Used by `make demo` and the end-to-end tests; only the `aws_default` connection points at the local
SageMaker. SQLite keeps it self-contained (docker-compose.yaml runs the same DAGs on PostgreSQL).

    with LocalAirflow(home, endpoint_url) as airflow:
        run = airflow.run("cifar10_pipeline", conf={"tune": False}, on_change=print)
        run.states["train"], airflow.task_log(run, "train"), airflow.xcom(run, "smoke_test")
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
# The scheduler and the triggerer would each serve logs on 0.0.0.0 (ports 8793 and 8794, fixed): the
# api-server reads the log files of this one machine directly, so neither is needed, and without them
# nothing listens beyond 127.0.0.1 and two harnesses can run side by side.
COMPONENTS = {
    "api-server": (),
    "scheduler": ("--skip-serve-logs",),
    "dag-processor": (),
    "triggerer": ("--skip-serve-logs",),
}
FINISHED_RUN_STATES = ("success", "failed")
ADMIN = "admin"


def airflow_environment(airflow_home: Path, endpoint_url: str, region: str = "us-east-1") -> dict[str, str]:
    """The environment of every Airflow process: this home, the project's DAGs and plugins, SQLite, and
    an aws_default connection to the local SageMaker. Nothing AWS- or Airflow-related leaks in from
    the caller's shell."""
    connection = {
        "conn_type": "aws",
        # the local SageMaker accepts any credentials; never real ones. Airflow masks the password
        # wherever it appears in a task log, so it must be a word no path or message contains
        "login": "local",
        "password": "local-only-not-a-secret",
        "extra": {"region_name": region, "endpoint_url": endpoint_url},
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AIRFLOW_CONN_", "AIRFLOW__"))}
    env.update(
        AIRFLOW_HOME=str(airflow_home),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{airflow_home / 'airflow.db'}",
        AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
        AIRFLOW_CONN_AWS_DEFAULT=json.dumps(connection),
        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "plugins")]),
        # boto3 in the tasks' own processes must not find a developer's real credentials
        AWS_ACCESS_KEY_ID="emulator",
        AWS_SECRET_ACCESS_KEY="emulator",
        AWS_DEFAULT_REGION=region,
    )
    return env


def _airflow_cli() -> str:
    return str(Path(sys.executable).with_name("airflow"))


def migrate_db(env: dict) -> None:
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    result = subprocess.run([_airflow_cli(), "db", "migrate"], env=env, cwd=ROOT, timeout=300, text=True,
                            capture_output=True)
    if result.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AirflowError(RuntimeError):
    """Airflow did not start, or its API refused a request."""


@dataclass
class DagRun:
    """One run as the REST API reports it: its state and the state of each task (id -> state)."""

    airflow: "LocalAirflow" = field(repr=False)
    dag_id: str
    run_id: str
    state: str = "queued"
    states: dict[str, str | None] = field(default_factory=dict)
    start_date: str | None = None
    end_date: str | None = None

    @property
    def seconds(self) -> float | None:
        """How long the run ran as Airflow counts it (start to end, or to now while it runs)."""
        if not self.start_date:
            return None
        from datetime import datetime, timezone

        end = datetime.fromisoformat(self.end_date) if self.end_date else datetime.now(timezone.utc)
        return (end - datetime.fromisoformat(self.start_date)).total_seconds()

    @property
    def succeeded(self) -> bool:
        return self.state == "success"

    def log(self, task_id: str, try_number: int | None = None) -> str:
        return self.airflow.task_log(self, task_id, try_number)

    def logs(self) -> str:
        """Every task's log, in the order the tasks started: what `airflow dags test` would have printed."""
        return "\n".join(self.log(task_id) for task_id, state in self.states.items() if state not in (None, "skipped")
                         and "[" not in task_id)

    def xcom(self, task_id: str, key: str = "return_value"):
        return self.airflow.xcom(self, task_id, key)

    def report(self) -> str:
        """The task states and the logs of the tasks that failed: what to print when a run did not succeed."""
        failed = [t for t, s in self.states.items() if s in ("failed", "upstream_failed") and "[" not in t]
        parts = [f"{self.dag_id} {self.run_id}: {self.state}", *(f"  {t}: {s}" for t, s in self.states.items())]
        for task_id in failed:
            if self.states[task_id] == "failed":
                parts += [f"--- log of {task_id} ---", self.log(task_id)[-6000:]]
        return "\n".join(parts)


class LocalAirflow:
    """Airflow's four services on 127.0.0.1 with one home folder; a context manager that stops them all."""

    def __init__(self, home: Path, endpoint_url: str, *, port: int | None = None, parallelism: int = 8,
                 extra_env: dict[str, str] | None = None):
        self.home = Path(home)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.password = secrets.token_urlsafe(12)
        self.env = airflow_environment(self.home, endpoint_url)
        self.env.update(
            AIRFLOW__CORE__EXECUTOR="LocalExecutor",
            AIRFLOW__CORE__PARALLELISM=str(parallelism),
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{self.url}/execution/",
            AIRFLOW__API__HOST="127.0.0.1",
            AIRFLOW__API__PORT=str(self.port),
            AIRFLOW__API__BASE_URL=self.url,
            AIRFLOW__API__WORKERS="1",
            # every component signs and checks the same task tokens
            AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_urlsafe(64),
            AIRFLOW__CORE__AUTH_MANAGER="airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=f"{ADMIN}:admin",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(self.home / "passwords.json"),
            # a new DAG file is picked up within seconds, not the default five minutes
            AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="10",
            # a file is parsed again when it changes (file_parsing_sort_mode modified_time, the default),
            # not every 30 s regardless: 11 unchanged files parsed twice a minute cost a tenth of a core
            # per running Airflow, and the tests run up to three at once on two cores
            AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL="3600",
            # the local SageMaker answers at once: see a deferred job's end within 2 s (stages.CHECK_INTERVAL)
            SAGEMAKER_PIPELINES_CHECK_INTERVAL="2",
            **(extra_env or {}),
        )
        self._processes: dict[str, subprocess.Popen] = {}
        self._token: str | None = None

    # --- the services -----------------------------------------------------------------------

    def start(self, timeout: float = 240) -> "LocalAirflow":
        """Migrate the metadata database, start the four services, and wait until the API answers."""
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "passwords.json").write_text(json.dumps({ADMIN: self.password}))
        migrate_db(self.env)
        logs = self.home / "services"
        logs.mkdir(exist_ok=True)
        for component, arguments in COMPONENTS.items():
            with open(logs / f"{component}.log", "ab") as log:
                # a session of its own: stop() ends each service with every process it started
                self._processes[component] = subprocess.Popen(
                    [_airflow_cli(), component, *arguments], env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=5) as response:
                    health = json.load(response)
                if all(health.get(part, {}).get("status") == "healthy" for part in ("metadatabase", "scheduler")):
                    return self
            except (OSError, ValueError):
                pass
            time.sleep(1)
        self.stop()
        raise AirflowError(f"Airflow did not become healthy within {timeout:.0f} s; see {logs}")

    def _check_alive(self) -> None:
        for component, process in self._processes.items():
            if process.poll() is not None:
                tail = self.service_log(component)[-3000:]
                raise AirflowError(f"airflow {component} exited with code {process.returncode}:\n{tail}")

    def service_log(self, component: str) -> str:
        path = self.home / "services" / f"{component}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM each service's process group, then SIGKILL what is left."""
        for process in self._processes.values():
            if process.poll() is None:
                _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self._processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(process, signal.SIGKILL)  # workers a service started may outlive it
        self._processes.clear()

    def __enter__(self) -> "LocalAirflow":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- the REST API ----------------------------------------------------------------------

    def _login(self) -> str:
        body = json.dumps({"username": ADMIN, "password": self.password}).encode()
        request = urllib.request.Request(f"{self.url}/auth/token", data=body,
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)["access_token"]

    def api(self, method: str, path: str, body: dict | None = None, *, query: dict | None = None):
        """One call to /api/v2; JSON in and out. Raises AirflowError with Airflow's own reason on 4xx/5xx."""
        if self._token is None:
            self._token = self._login()
        url = f"{self.url}/api/v2/{path.lstrip('/')}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                payload = response.read()
        except urllib.error.HTTPError as error:
            if error.code == 401 and self._token is not None:  # the token expired: log in again, once
                self._token = None
                return self.api(method, path, body, query=query)
            raise AirflowError(f"{method} {path}: {error.code} {error.read().decode(errors='replace')[:2000]}") from None
        return json.loads(payload) if payload else None

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> dict:
        """The DAG as the API knows it, once the dag-processor has parsed it; an import error fails at once."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            errors = self.api("GET", "importErrors")["import_errors"]
            for error in errors:
                if Path(error["filename"]).stem == dag_id:
                    raise AirflowError(f"{error['filename']} does not import:\n{error['stack_trace']}")
            try:
                return self.api("GET", f"dags/{dag_id}")
            except AirflowError as error:
                if " 404 " not in str(error) or time.monotonic() > deadline:
                    raise
            time.sleep(2)

    def trigger(self, dag_id: str, conf: dict | None = None, *, run_id: str | None = None) -> DagRun:
        """Unpause the DAG and trigger a run with `conf`, as the UI's trigger form does."""
        self.wait_for_dag(dag_id)
        self.api("PATCH", f"dags/{dag_id}", {"is_paused": False})
        body = {"logical_date": None, "conf": conf or {}}
        if run_id:
            body["dag_run_id"] = run_id
        created = self.api("POST", f"dags/{dag_id}/dagRuns", body)
        return DagRun(self, dag_id, created["dag_run_id"], created["state"])

    def refresh(self, run: DagRun) -> DagRun:
        """The run's state and its tasks' states, now."""
        details = self.api("GET", f"dags/{run.dag_id}/dagRuns/{_quote(run.run_id)}")
        tasks = self.api("GET", f"dags/{run.dag_id}/dagRuns/{_quote(run.run_id)}/taskInstances",
                         query={"limit": 1000})["task_instances"]
        run.state = details["state"]
        run.start_date, run.end_date = details.get("start_date"), details.get("end_date")
        run.states = {_task_key(ti): ti["state"] for ti in sorted(tasks, key=_started)}
        return run

    def wait(self, run: DagRun, *, timeout: float = 1800, poll: float = 3,
             on_change: Callable[[str, str | None, str | None], None] | None = None) -> DagRun:
        """Poll until the run ends; `on_change(task_id, old, new)` hears of every task state change."""
        deadline = time.monotonic() + timeout
        seen: dict[str, str | None] = {}
        while True:
            self._check_alive()
            self.refresh(run)
            if on_change:
                for task_id, state in run.states.items():
                    if seen.get(task_id) != state:
                        on_change(task_id, seen.get(task_id), state)
                        seen[task_id] = state
            if run.state in FINISHED_RUN_STATES:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"{run.dag_id} run {run.run_id} still {run.state} after {timeout:.0f} s: {run.states}")
            time.sleep(poll)

    def run(self, dag_id: str, conf: dict | None = None, *, timeout: float = 1800, on_change=None) -> DagRun:
        """Trigger a run and wait for it to end."""
        return self.wait(self.trigger(dag_id, conf), timeout=timeout, on_change=on_change)

    def respond(self, run: DagRun, task_id: str, option: str, *, map_index: int = -1) -> dict:
        """Answer a human-in-the-loop task (an ApprovalOperator's Approve or Reject), as the UI's Required actions do."""
        return self.api("PATCH", f"dags/{run.dag_id}/dagRuns/{_quote(run.run_id)}/taskInstances/{task_id}/{map_index}"
                                 "/hitlDetails", {"chosen_options": [option]})

    def task_instance(self, run: DagRun, task_id: str) -> dict:
        return self.api("GET", f"dags/{run.dag_id}/dagRuns/{_quote(run.run_id)}/taskInstances/{task_id}")

    def set_task_state(self, run: DagRun, task_id: str, state: str) -> None:
        """Mark a task as a person does from the UI (e.g. "failed" while it runs or is deferred)."""
        self.api("PATCH", f"dags/{run.dag_id}/dagRuns/{_quote(run.run_id)}/taskInstances/{task_id}",
                 {"new_state": state})

    def task_log(self, run: DagRun, task_id: str, try_number: int | None = None) -> str:
        """A task's log as the UI shows it (every try when try_number is None), one event a line."""
        tries = [try_number] if try_number else range(1, (self.task_instance(run, task_id)["try_number"] or 1) + 1)
        lines = []
        for number in tries:
            payload = self.api("GET", f"dags/{run.dag_id}/dagRuns/{_quote(run.run_id)}/taskInstances/{task_id}"
                                      f"/logs/{number}", query={"full_content": "true"})
            lines += [log_line(entry) for entry in payload.get("content") or []]
        return "\n".join(lines)

    def xcom(self, run: DagRun, task_id: str, key: str = "return_value"):
        """A task's XCom value (None when it pushed none)."""
        try:
            entry = self.api("GET", f"dags/{run.dag_id}/dagRuns/{_quote(run.run_id)}/taskInstances/{task_id}"
                                    f"/xcomEntries/{key}")
        except AirflowError as error:
            if " 404 " in str(error):
                return None
            raise
        return _decoded(entry["value"])


def log_line(entry) -> str:
    """One structured log entry as the UI shows it: its event, then the exception it carries, if any
    (a failed task's message lives there, not in the event "Task failed with exception")."""
    if not isinstance(entry, dict):
        return str(entry)
    text = entry.get("event", "")
    for error in entry.get("error_detail") or []:
        if isinstance(error, dict):
            text += f"\n{error.get('exc_type', 'Exception')}: {error.get('exc_value', '')}"
    return text


def _decoded(value):
    """An XCom value as stored: JSON text (sometimes JSON text of JSON text) or the value itself."""
    for _ in range(2):
        if not isinstance(value, (str, bytes)):
            break
        try:
            value = json.loads(value)
        except ValueError:
            break
    return value


def _quote(run_id: str) -> str:
    return urllib.parse.quote(run_id, safe="")


def _task_key(ti: dict) -> str:
    return ti["task_id"] if ti.get("map_index", -1) < 0 else f"{ti['task_id']}[{ti['map_index']}]"


def _started(ti: dict) -> tuple:
    return (ti.get("start_date") is None, ti.get("start_date") or "", ti["task_id"])


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
