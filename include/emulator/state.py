"""The emulator's state and settings: one object that every resource module reaches through ctx."""
from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PORT = 4566
DEFAULT_ACCOUNT = "123456789012"  # moto's default account, so S3/IAM/Logs ARNs agree
DEFAULT_REGION = "us-east-1"
# what the emulator signs its own requests with (moto checks no signature); its subprocesses get them too
EMULATOR_CREDENTIALS = ("emulator", "emulator")


def default_state_dir() -> Path:
    return Path(os.environ.get("EMULATOR_STATE_DIR", Path(__file__).resolve().parents[2] / ".emulator"))


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    # only docker-compose sets this: the emulator container must answer the Airflow containers
    allow_container_network: bool = False
    # Host names besides the loopback ones that requests may address (docker-compose: its service name)
    allowed_hosts: tuple[str, ...] = ()
    # web origins whose pages may call the server; none by default, since a page could start jobs
    allowed_origins: tuple[str, ...] = ()
    port: int = DEFAULT_PORT
    state_dir: Path = field(default_factory=default_state_dir)
    account_id: str = DEFAULT_ACCOUNT
    region: str = DEFAULT_REGION
    # how many training jobs and model servers may run at once; the rest wait their turn
    max_concurrent_jobs: int = int(os.environ.get("EMULATOR_MAX_CONCURRENT_JOBS", "2"))
    # how often each endpoint instance is health-checked (/ping and its process), and after how many
    # failed pings in a row it is replaced (include.emulator.serving.health)
    health_check_interval_s: float = float(os.environ.get("EMULATOR_HEALTH_CHECK_INTERVAL_SECONDS", "5"))
    health_check_failures: int = int(os.environ.get("EMULATOR_HEALTH_CHECK_FAILURES", "3"))
    # how often the AWS/SageMaker endpoint metrics are published (one StatisticSet per period,
    # include.emulator.endpoint_metrics), and how often the alarm evaluator looks for alarms whose period
    # has ended (each alarm is evaluated once per its Period, include.emulator.alarms)
    metrics_period_s: float = float(os.environ.get("EMULATOR_METRICS_PERIOD_SECONDS", "10"))
    alarm_evaluation_interval_s: float = float(os.environ.get("EMULATOR_ALARM_EVALUATION_INTERVAL_SECONDS", "1"))
    # the interpreter that stands in for SageMaker's framework containers
    python: str = sys.executable


@dataclass(frozen=True)
class RequestContext:
    emulator: "Emulator"
    region: str

    @property
    def account_id(self) -> str:
        return self.emulator.settings.account_id

    def arn(self, resource_type: str, name: str) -> str:
        # SageMaker lower-cases names inside ARNs
        return f"arn:aws:sagemaker:{self.region}:{self.account_id}:{resource_type}/{name.lower()}"


def _isolated_boto3_session(region: str):
    """A boto3 session with the emulator's credentials that never reads AWS_PROFILE, AWS_CONFIG_FILE or
    AWS_SHARED_CREDENTIALS_FILE: a test process (or an Airflow worker) that points those elsewhere
    after the emulator started must not break the emulator's own clients."""
    import boto3
    import botocore.session

    core = botocore.session.Session(
        session_vars={  # logical name -> (config file key, environment variables, default, conversion)
            "profile": (None, None, None, None),
            "config_file": (None, None, os.devnull, None),
            "credentials_file": (None, None, os.devnull, None),
        }
    )
    return boto3.Session(
        botocore_session=core, aws_access_key_id=EMULATOR_CREDENTIALS[0], aws_secret_access_key=EMULATOR_CREDENTIALS[1],
        region_name=region,
    )


class Emulator:
    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings()
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        self._stores: dict[type, object] = {}
        self._lock = threading.Lock()
        self._client_lock = threading.Lock()
        self._session = None  # the emulator's own boto3 session, made on first use (see client)
        self.job_slots = threading.BoundedSemaphore(self.settings.max_concurrent_jobs)
        self.port = self.settings.port  # the bound port, once the server knows it

    @property
    def endpoint_url(self) -> str:
        host = self.settings.host
        if host in ("0.0.0.0", "::", ""):  # listening on every interface: its own clients use loopback
            host = "127.0.0.1"
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def context(self, region: str | None = None) -> RequestContext:
        return RequestContext(self, region or self.settings.region)

    def store(self, cls):
        """The one instance of a resource store class, created on first use."""
        with self._lock:
            if cls not in self._stores:
                self._stores[cls] = cls(self)
            return self._stores[cls]

    def client(self, service: str, region: str | None = None):
        """A boto3 client that talks to this emulator (S3, Logs, ... are served on the same port).

        Built from the emulator's own session (see ``_isolated_boto3_session``). Clients are thread-safe
        once built, but building them from one session is not, and every job and model server runs in
        a thread of its own: hence the lock.
        """
        with self._client_lock:
            if self._session is None:
                self._session = _isolated_boto3_session(self.settings.region)
            return self._session.client(service, endpoint_url=self.endpoint_url, region_name=region or self.settings.region)

    def child_environment(self, region: str | None, *, tmp_dir: Path) -> dict[str, str]:
        """The base environment of every process the emulator starts (jobs, model servers): a minimal
        one (see ``child_processes.minimal_environment``) whose AWS calls come back here, with
        ``tmp_dir`` (removed with the job or instance) as its TMPDIR."""
        from .child_processes import minimal_environment

        region = region or self.settings.region
        return minimal_environment(python=self.settings.python, tmp_dir=tmp_dir, aws={
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": region,
            "AWS_REGION": region,
            "AWS_ACCESS_KEY_ID": EMULATOR_CREDENTIALS[0],
            "AWS_SECRET_ACCESS_KEY": EMULATOR_CREDENTIALS[1],
        })

    def shutdown(self) -> None:
        for store in list(self._stores.values()):
            close = getattr(store, "shutdown", None)
            if close:
                close()
