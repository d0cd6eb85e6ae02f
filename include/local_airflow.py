"""Run the DAGs with `airflow dags test` against the local SageMaker: one environment, one helper.

Used by `make demo` and the end-to-end tests, so both run the DAGs exactly as a user's Airflow would,
with only the `aws_default` connection pointing at the emulator.
"""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def airflow_environment(airflow_home: Path, endpoint_url: str, region: str = "us-east-1") -> dict[str, str]:
    connection = {
        "conn_type": "aws",
        "login": "emulator",  # the local SageMaker accepts any credentials; never real ones
        "password": "emulator",
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


def _airflow(*args: str, env: dict, timeout: float, capture: bool = True) -> subprocess.CompletedProcess:
    airflow = Path(sys.executable).with_name("airflow")
    return subprocess.run(
        [str(airflow), *args], env=env, cwd=ROOT, timeout=timeout, text=True, capture_output=capture
    )


def migrate_db(env: dict) -> None:
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    result = _airflow("db", "migrate", env=env, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def dags_test(dag_id: str, env: dict, *, conf: dict | None = None, timeout: float = 1800, capture: bool = True):
    """`airflow dags test <dag_id>` (tasks and triggers run in-process, as a scheduler would run them)."""
    args = ["dags", "test", dag_id]
    if conf:
        args += ["--conf", json.dumps(conf)]
    return _airflow(*args, env=env, timeout=timeout, capture=capture)


def task_states(env: dict, dag_id: str) -> dict[str, str]:
    """Final state of each task in the DAG's latest run, in the order they ran, from the metadata database."""
    db = Path(env["AIRFLOW_HOME"]) / "airflow.db"
    with sqlite3.connect(db) as connection:
        run_id = connection.execute(
            "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
        ).fetchone()[0]
        rows = connection.execute(
            "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ? ORDER BY start_date",
            (dag_id, run_id),
        ).fetchall()
    return dict(rows)


def xcom(env: dict, dag_id: str, task_id: str, key: str = "return_value"):
    """A task's XCom value from the DAG's latest run (None when the task pushed none)."""
    db = Path(env["AIRFLOW_HOME"]) / "airflow.db"
    with sqlite3.connect(db) as connection:
        row = connection.execute(
            "SELECT value FROM xcom WHERE dag_id = ? AND task_id = ? AND key = ? ORDER BY dag_run_id DESC LIMIT 1",
            (dag_id, task_id, key),
        ).fetchone()
    if row is None:
        return None
    value = json.loads(row[0]) if isinstance(row[0], (str, bytes)) else row[0]
    # a value serialized twice (a JSON string holding JSON) decodes once more
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
