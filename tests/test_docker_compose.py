"""docker-compose.yaml is a valid Compose file that builds what it promises, and its documented login works.

Checked without Docker: the file against the compose-spec JSON schema (tests/fixtures), the images'
Dockerfiles for what they install, the healthchecks and ports, the login the README documents (against
a real api-server), and the Airflow image's pip command in a clean virtual environment (slow). Where
the docker CLI with the compose plugin exists, `docker compose config -q` checks the file as well.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
SCHEMA_FILE = ROOT / "tests" / "fixtures" / "compose-spec.json"
AIRFLOW_SERVICES = ("airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
LONG_RUNNING = ("postgres", "sagemaker-emulator", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                "airflow-triggerer")
AIRFLOW_IMAGE = "apache/airflow:slim-3.3.2-python3.11"  # the official image, Airflow core only (see the Dockerfile)
EMULATOR_IMAGE = "python:3.11-slim"
# what the Airflow side must never install: training and serving run on SageMaker
TRAINING_LIBRARIES = {"torch", "torchvision", "transformers", "ultralytics"}
# the password line of the README's and the compose header's login sentence
LOGIN = re.compile(r"log in as `(?P<user>[^`]+)` with password `(?P<password>[^`]+)`", re.IGNORECASE)


# ---- reading the files -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def interpolate(value: str, environ: dict[str, str] | None = None) -> str:
    """Compose's variable interpolation (${NAME}, ${NAME:-default}, $$) as `docker compose` applies it."""
    environ = environ or {}

    def substitute(match: re.Match) -> str:
        if match["escaped"]:
            return "$"
        name, default = match["name"], match["default"]
        return environ.get(name) or (default if default is not None else "")

    return re.sub(r"(?P<escaped>\$\$)|\$\{(?P<name>\w+)(?::-(?P<default>[^}]*))?\}", substitute, value)


def dockerfile(service: dict) -> Path:
    build = service["build"]
    return ROOT / build.get("context", ".") / build["dockerfile"]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")))
    result = []
    for line in text.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def build_args(path: Path) -> dict[str, str]:
    """The Dockerfile's ARGs and their defaults."""
    return dict(rest.partition("=")[::2] for keyword, rest in instructions(path) if keyword == "ARG")


def pip_install_command(path: Path, args: dict[str, str] | None = None) -> list[str]:
    """The `pip install ...` of the Dockerfile's RUN step, as argv (up to the first `&&`), its ARGs
    replaced by their defaults or by `args`, as `docker build --build-arg` would."""
    values = {**build_args(path), **(args or {})}
    for keyword, rest in instructions(path):
        if keyword == "RUN" and "pip install" in rest:
            command = re.sub(r"\$\{(\w+)\}", lambda m: values.get(m[1], m[0]), rest.split("&&")[0])
            argv = shlex.split(command)
            return argv[argv.index("pip"):]
    raise AssertionError(f"{path.relative_to(ROOT)} has no RUN pip install step")


def option_values(argv: list[str], option: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == option]


def copied_files(path: Path) -> dict[str, str]:
    """Destination path in the image -> source path in the build context, from every COPY."""
    copies = {}
    for keyword, rest in instructions(path):
        if keyword == "COPY":
            parts = [p for p in shlex.split(rest) if not p.startswith("--")]
            *sources, destination = parts
            for source in sources:
                # a file into a folder keeps its name; a folder's contents land in the destination
                into_folder = destination.endswith("/") and not source.endswith("/")
                copies[destination + Path(source).name if into_folder else destination] = source
    return copies


def requirement_names(path: Path) -> set[str]:
    """Distribution names a requirements file installs, following its `-r` includes."""
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        if line.startswith(("-r ", "--requirement ")):
            names |= requirement_names(path.parent / line.split(None, 1)[1])
        elif not line.startswith("-"):
            names.add(re.split(r"[\[=<>!~; ]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def in_context(image_path: str, path: Path) -> Path:
    """The build-context file an image path of the Dockerfile's COPY steps came from."""
    copies = copied_files(path)
    assert image_path in copies, f"{path.relative_to(ROOT)} copies nothing to {image_path} (copies {sorted(copies)})"
    return ROOT / copies[image_path]


# ---- the file as a whole --------------------------------------------------------------------------

def test_compose_file_matches_the_compose_spec(compose):
    import jsonschema

    schema = json.loads(SCHEMA_FILE.read_text())
    validator = jsonschema.Draft7Validator(schema)
    problems = [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in validator.iter_errors(compose)]
    assert not problems, "docker-compose.yaml breaks the compose spec:\n" + "\n".join(problems)


def test_docker_compose_config_accepts_the_file():
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("no docker CLI with the compose plugin on this machine")
    result = subprocess.run([docker, "compose", "-f", str(COMPOSE_FILE), "config", "-q"], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr


def test_every_service_this_stack_needs_is_there(compose):
    assert set(AIRFLOW_SERVICES) | set(LONG_RUNNING) <= set(compose["services"])


# ---- what each image installs ---------------------------------------------------------------------

@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_airflow_services_build_the_official_image_with_requirements_txt(compose, name):
    path = dockerfile(compose["services"][name])
    assert path == ROOT / "docker" / "airflow.Dockerfile", f"{name} builds {path}"
    steps = instructions(path)
    assert ("FROM", AIRFLOW_IMAGE) in steps, f"{path.name} must build FROM {AIRFLOW_IMAGE}"
    assert "REQUIREMENTS" not in (compose["services"][name]["build"].get("args") or {}), "compose builds the default"
    # the default (requirements.txt plus the local profile's data libraries) and the AWS-only build
    for args in ({}, {"REQUIREMENTS": "requirements.txt"}):
        pip = pip_install_command(path, args)
        requirements = [in_context(p, path) for p in option_values(pip, "-r")]
        constraints = [in_context(p, path).name for p in option_values(pip, "-c")]
        installed = set().union(*(requirement_names(r) for r in requirements))
        assert requirement_names(ROOT / "requirements.txt") <= installed, f"{args}: not all of requirements.txt"
        assert "requirements-local.txt" not in [r.name for r in requirements], requirements
        assert constraints == ["constraints.txt"], constraints
    # the official image refuses pip as root: the install must run as the airflow user
    user = None
    for keyword, rest in steps:
        user = rest if keyword == "USER" else user
        if keyword == "RUN" and "pip install" in rest:
            assert user == "airflow", f"{path.name} runs pip install as {user or 'the image default'}, not USER airflow"


def test_airflow_image_pins_the_airflow_version_of_requirements_txt():
    pinned = re.search(r"^apache-airflow==([\w.]+)", (ROOT / "requirements.txt").read_text(), re.M)
    assert pinned, "requirements.txt pins no apache-airflow version"
    tag = re.fullmatch(r"apache/airflow:(?:slim-)?(?P<version>[\w.]+)-python(?P<python>3\.\d+)", AIRFLOW_IMAGE)
    assert tag and tag["version"] == pinned[1], f"image {AIRFLOW_IMAGE} vs apache-airflow=={pinned[1]}"
    assert tag["python"] == "3.11", "the project runs on Python 3.11"


def test_airflow_side_installs_no_training_libraries(compose):
    path = dockerfile(compose["services"]["airflow-scheduler"])
    installed = set()
    for requirement in option_values(pip_install_command(path), "-r"):
        installed |= requirement_names(in_context(requirement, path))
    assert not installed & TRAINING_LIBRARIES, f"the Airflow image would install {sorted(installed & TRAINING_LIBRARIES)}"


def test_airflow_image_installs_the_postgres_drivers_airflow_3_needs(compose):
    path = dockerfile(compose["services"]["airflow-init"])
    installed = set()
    for requirement in option_values(pip_install_command(path), "-r"):
        installed |= requirement_names(in_context(requirement, path))
    assert "asyncpg" in installed, "airflow db migrate fails with ModuleNotFoundError: asyncpg without it"
    assert installed & {"psycopg2-binary", "psycopg2", "psycopg", "psycopg-binary"}, "no sync PostgreSQL driver"
    env = compose["services"]["airflow-init"]["environment"]
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"].startswith("postgresql+asyncpg://")


def test_emulator_builds_python_slim_with_requirements_local(compose):
    service = compose["services"]["sagemaker-emulator"]
    path = dockerfile(service)
    assert ("FROM", EMULATOR_IMAGE) in instructions(path), f"{path.name} must build FROM {EMULATOR_IMAGE}"
    pip = pip_install_command(path)
    requirements = [p for p in option_values(pip, "-r")]
    assert [Path(p).name for p in requirements] == ["requirements-local.txt"], requirements
    assert [Path(p).name for p in option_values(pip, "-c")] == ["constraints.txt"]
    local = ROOT / "requirements-local.txt"
    assert local.exists(), "requirements-local.txt (the local SageMaker's and the tests' packages) is missing"
    first = next(line for line in local.read_text().splitlines() if line.strip() and not line.startswith("#"))
    assert first.strip() == "-r requirements.txt", f"requirements-local.txt should start with -r requirements.txt, not {first!r}"
    assert "torch" in requirement_names(local), "the local SageMaker runs the training code: it needs torch"
    command = service["command"]
    assert command[:3] == ["python", "-m", "include.emulator"] and "--allow-container-network" in command


@pytest.mark.parametrize("image", ["airflow.Dockerfile", "emulator.Dockerfile"])
def test_build_context_holds_what_the_dockerfiles_copy(image):
    """.dockerignore keeps .venv and local state out of the context, but not what a COPY needs."""
    allowed = [line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")]
    for source in copied_files(ROOT / "docker" / image).values():
        top = source.rstrip("/").split("/")[0]
        assert source.rstrip("/") in allowed or top in allowed, f"{image} copies {source}, which .dockerignore leaves out"
        assert (ROOT / source).exists(), f"{image} copies {source}, which does not exist"


# ---- wiring, healthchecks, ports, secrets ---------------------------------------------------------

def test_published_ports_bind_the_loopback_interface_only(compose):
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond the host's loopback"


def test_each_long_running_service_has_a_healthcheck(compose):
    expected = {
        "postgres": "pg_isready",
        "sagemaker-emulator": "/_emulator/health",
        "airflow-apiserver": "/api/v2/monitor/health",
        "airflow-scheduler": "--job-type SchedulerJob",
        "airflow-dag-processor": "--job-type DagProcessorJob",
        "airflow-triggerer": "--job-type TriggererJob",
    }
    for name, probe in expected.items():
        check = compose["services"][name].get("healthcheck")
        assert check and check.get("test"), f"{name} has no healthcheck"
        assert probe in " ".join(check["test"]), f"{name}'s healthcheck {check['test']} does not probe {probe}"


def test_airflow_waits_for_the_database_and_its_migration(compose):
    for name in AIRFLOW_SERVICES:
        depends = compose["services"][name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy", name
        if name != "airflow-init":
            assert depends["airflow-init"]["condition"] == "service_completed_successfully", name
    assert compose["services"]["airflow-init"]["command"] == ["airflow", "db", "migrate"]


def test_aws_default_points_every_airflow_service_at_the_emulator_service(compose):
    port = compose["services"]["sagemaker-emulator"]["command"][compose["services"]["sagemaker-emulator"]["command"].index("--port") + 1]
    for name in AIRFLOW_SERVICES:
        connection = json.loads(compose["services"][name]["environment"]["AIRFLOW_CONN_AWS_DEFAULT"])
        assert connection["extra"]["endpoint_url"] == f"http://sagemaker-emulator:{port}", name


def test_secrets_come_from_variables_and_every_component_shares_them(compose):
    for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY"):
        values = {compose["services"][name]["environment"][key] for name in AIRFLOW_SERVICES}
        assert len(values) == 1, f"{key} differs between Airflow services: tokens one issues another rejects"
        value = values.pop()
        assert re.fullmatch(r"\$\{\w+:-.+\}", value), f"{key} should be ${{VARIABLE:-local default}}, is {value!r}"
        assert len(interpolate(value)) >= 64, f"{key}'s default is shorter than HS512's 64-byte key"


def test_readme_documents_the_login_the_stack_really_has(compose):
    user, password = compose_login(compose)
    for document, text in (("README.md", (ROOT / "README.md").read_text()), ("docker-compose.yaml", COMPOSE_FILE.read_text())):
        documented = LOGIN.search(text)
        assert documented, f"{document} does not say how to log in (\"log in as `user` with password `...`\")"
        assert (documented["user"], documented["password"]) == (user, password), (
            f"{document} documents {documented['user']} / {documented['password']}, the stack has {user} / {password}")


def compose_login(compose) -> tuple[str, str]:
    """(user, default password) as the stack configures them: the admin user, the passwords file's default."""
    service = compose["services"]["airflow-apiserver"]
    env = service["environment"]
    users = [entry.split(":") for entry in env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(",")]
    admins = [name for name, role, *_ in users if role == "admin"]
    assert admins, "no user with the admin role"
    assert env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"), "no passwords file: Airflow would generate a password"
    return admins[0], interpolate(env["AIRFLOW_ADMIN_PASSWORD"])


def password_writer(compose) -> str:
    """The api-server's start script up to (not including) the `exec airflow api-server` line."""
    command = compose["services"]["airflow-apiserver"]["command"]
    assert command[:2] == ["bash", "-c"], command
    lines = command[2].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("exec airflow api-server"))
    return "\n".join(lines[:start])


# ---- the login, for real, against an api-server on SQLite ------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(url: str, *, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, {}


@pytest.mark.slow
def test_documented_login_gets_a_token_from_a_real_api_server(compose, tmp_path):
    """The compose stack's auth settings and passwords-file writer, run here on SQLite: the README's
    login gets a token, the token reads the DAG list, a wrong password gets none."""
    user, password = compose_login(compose)
    compose_env = compose["services"]["airflow-apiserver"]["environment"]
    home = tmp_path / "airflow-home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
    env.update({key: interpolate(compose_env[key]) for key in (
        "AIRFLOW__CORE__AUTH_MANAGER", "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__API__SECRET_KEY", "AIRFLOW_ADMIN_PASSWORD")})
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(home / "passwords.json"),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(tmp_path / "no-dags"),
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
    )
    subprocess.run(["bash", "-c", password_writer(compose)], env=env, check=True, timeout=60)
    assert json.loads((home / "passwords.json").read_text()) == {user: password}
    assert (home / "passwords.json").stat().st_mode & 0o077 == 0, "the passwords file is readable by others"

    airflow = str(Path(sys.executable).with_name("airflow"))
    migrate = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True, timeout=600)
    assert migrate.returncode == 0, migrate.stdout[-2000:] + migrate.stderr[-2000:]
    port = _free_port()
    log = (tmp_path / "api-server.log").open("w")
    server = subprocess.Popen([airflow, "api-server", "--host", "127.0.0.1", "--port", str(port)], env=env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                status, health = _request(f"{base}/api/v2/monitor/health")
                if status == 200:
                    break
            except OSError:
                pass
            assert server.poll() is None, "api-server exited:\n" + (tmp_path / "api-server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "api-server did not answer its health check in 180 s"
            time.sleep(1)
        assert health["metadatabase"]["status"] == "healthy", health

        status, answer = _request(f"{base}/auth/token", body={"username": user, "password": password})
        assert status == 201 and answer.get("access_token"), (status, answer)
        status, dags = _request(f"{base}/api/v2/dags", token=answer["access_token"])
        assert status == 200 and "dags" in dags, (status, dags)
        assert _request(f"{base}/api/v2/dags")[0] == 401, "the DAG list answered without a token"
        assert _request(f"{base}/auth/token", body={"username": user, "password": password + "-wrong"})[0] == 401
    finally:
        os.killpg(server.pid, 15)  # the api-server and the workers it started, no other process
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait(timeout=30)
        log.close()


# ---- the Airflow image's pip install, in a clean virtual environment --------------------------------

@pytest.mark.slow
def test_airflow_image_pip_install_resolves_cleanly_without_torch(compose, tmp_path):
    """The Dockerfile's exact pip command (image paths mapped back to the repository) in a fresh
    Python 3.11 venv: it installs, `pip check` is clean, and torch is not there."""
    python = shutil.which("python3.11")
    if python is None:
        pytest.skip("no python3.11 on this machine")
    path = dockerfile(compose["services"]["airflow-scheduler"])
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=300)
    # --no-cache-dir only keeps the image small; here pip's cache saves the downloads. Byte-compiling
    # what it installs is a third of pip's time, and nothing here imports the installed packages
    pip_argv = [arg for arg in pip_install_command(path) if arg != "--no-cache-dir"]
    argv = [str(venv / "bin" / "python"), "-m", *pip_argv, "--no-compile"]
    for i, arg in enumerate(argv):
        if arg in copied_files(path):
            argv[i] = str(in_context(arg, path))
    version = re.search(r"^apache-airflow==([\w.]+)", (ROOT / "requirements.txt").read_text(), re.M)[1]
    argv = [arg.replace("${AIRFLOW_VERSION}", version) for arg in argv]
    install = subprocess.run(argv, capture_output=True, text=True, timeout=1800, cwd=tmp_path)
    assert install.returncode == 0, f"{shlex.join(argv)}\n{install.stdout[-3000:]}\n{install.stderr[-3000:]}"
    check = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "check"], capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
    probe = "import importlib.util as u, json; print(json.dumps({m: u.find_spec(m) is not None for m in %r}))" % (
        sorted(m.replace("-", "_") for m in TRAINING_LIBRARIES) + ["airflow", "asyncpg", "psycopg2"])
    found = json.loads(subprocess.run([str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True,
                                      check=True, timeout=120).stdout)
    assert found.pop("airflow") and found.pop("asyncpg") and found.pop("psycopg2"), found
    assert not any(found.values()), f"the Airflow side installed training libraries: {found}"
    torch = subprocess.run([str(venv / "bin" / "python"), "-c", "import torch"], capture_output=True, timeout=120)
    assert torch.returncode != 0, "import torch works in the Airflow image's environment"
