"""`make setup` installs with uv by default and with plain pip on INSTALLER=pip, from the same places.

uv reads none of pip's configuration, so the Makefile's install command (scripts/uv_like_pip.py) hands
pip's effective one (`pip config list`) to uv as flags: checked here by running that command with a
stand-in `uv` module that prints what it was given. Where several indexes hold one version, uv takes
the first one's wheels and pip the best-ranked of all: the command then installs pip's pick, checked
here with the real uv and two local indexes. The recipes are checked with `make -n` (nothing installed),
and the venv these tests run in, as `make setup` left it, with `python -m pip`.
The fresh installs themselves, timed side by side: benchmarks/setup_time.py.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FAKE_UV = '''import json, os, sys
print(json.dumps({"argv": sys.argv[1:], "env": {k: os.environ.get(k) for k in ("SSL_CERT_FILE", "UV_HTTP_TIMEOUT")}}))
'''
# --dry-run: the stand-in installs nothing, so there is nothing to compare with pip's pick either
PROBE_MAKEFILE = '''probe: ; @PYTHONPATH=$(FAKE_UV_PATH) $(INSTALL) -r requirements-local.txt --dry-run
'''


def _flag_values(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == flag]


@pytest.fixture
def uv_command(tmp_path):
    """run(pip_config_text, **PIP_vars) -> what `uv` was run with by the Makefile's INSTALL (INSTALLER=uv)."""
    (tmp_path / "fake" / "uv").mkdir(parents=True)
    (tmp_path / "fake" / "uv" / "__init__.py").write_text("")  # a regular package, ahead of a real uv
    (tmp_path / "fake" / "uv" / "__main__.py").write_text(FAKE_UV)
    (tmp_path / "probe.mk").write_text(PROBE_MAKEFILE)

    def run(pip_config: str, **pip_variables: str) -> dict:
        config = tmp_path / "pip.conf"
        config.write_text(pip_config)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PIP_", "UV_", "MAKE")) and k not in ("SSL_CERT_FILE", "MFLAGS")}
        env.update(PIP_CONFIG_FILE=str(config), **pip_variables)  # overrides the machine's files key by key
        made = subprocess.run(
            ["make", "-s", "--no-print-directory", "-f", ROOT / "Makefile", "-f", tmp_path / "probe.mk", "probe",
             "INSTALLER=uv", f"PY={sys.executable}", f"FAKE_UV_PATH={tmp_path / 'fake'}"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert made.returncode == 0, made.stdout + made.stderr
        return json.loads(made.stdout.strip().splitlines()[-1])

    return run


def test_uv_is_given_pips_index_extra_indexes_find_links_constraints_cert_and_timeout(uv_command, tmp_path):
    ran = uv_command(
        "[global]\n"
        "index-url = https://mirror.example/simple\n"
        "extra-index-url = file:///srv/one/simple file:///srv/two/simple\n"
        "find-links = /srv/global-wheels\n"
        "constraint = /srv/cap.txt\n"
        "cert = /srv/ca.pem\n"
        "timeout = 42\n"
        "no-index = false\n"
        "[install]\n"
        "find-links = /srv/install-wheels\n",  # pip install reads [install] over [global]
        PIP_EXTRA_INDEX_URL="file:///srv/env/simple",  # and PIP_* over both
    )
    argv = ran["argv"]
    assert argv[:6] == ["pip", "install", "--python", sys.executable, "--compile-bytecode", "-r"]
    assert _flag_values(argv, "--default-index") == ["https://mirror.example/simple"]
    assert _flag_values(argv, "--index") == ["file:///srv/env/simple"]
    assert _flag_values(argv, "--find-links") == ["/srv/install-wheels"]
    assert _flag_values(argv, "--constraint") == ["/srv/cap.txt"]
    # pip takes the best version from any of its indexes; uv's default would stop at the first that has the name
    assert _flag_values(argv, "--index-strategy") == ["unsafe-best-match"]
    assert "--no-index" not in argv
    assert ran["env"] == {"SSL_CERT_FILE": "/srv/ca.pem", "UV_HTTP_TIMEOUT": "42"}


def test_no_index_in_pips_configuration_is_no_index_for_uv(uv_command):
    ran = uv_command("[global]\nindex-url = https://mirror.example/simple\nfind-links = /srv/wheels\n",
                     PIP_NO_INDEX="1")
    argv = ran["argv"]
    assert "--no-index" in argv and "--default-index" not in argv and "--index" not in argv
    assert _flag_values(argv, "--find-links") == ["/srv/wheels"]


def _wheel(folder: Path, tag: str, says: str) -> Path:
    """A one-module wheel of tagpick 1.0 with the given tag, whose module says which wheel it came from."""
    files = {"tagpick.py": f"WHEEL = {says!r}\n",
             "tagpick-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: tagpick\nVersion: 1.0\n",
             "tagpick-1.0.dist-info/WHEEL": f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n"}
    record = [f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b'=').decode()},"
              f"{len(text.encode())}" for name, text in files.items()]
    files["tagpick-1.0.dist-info/RECORD"] = "\n".join([*record, "tagpick-1.0.dist-info/RECORD,,", ""])
    path = folder / f"tagpick-1.0-{tag}.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
    return path


def _index(root: Path, wheel: Path) -> str:
    """A PEP 503 index in `root` (file://) holding the one wheel."""
    (root / "simple" / "tagpick").mkdir(parents=True)
    (root / "simple" / "tagpick" / "index.html").write_text(f'<a href="{wheel.as_uri()}">{wheel.name}</a>\n')
    return (root / "simple").as_uri()


def test_where_two_indexes_hold_the_version_the_wheel_pip_ranks_first_is_installed(tmp_path):
    """The extra index, which uv searches first, has only the pure wheel (as soundfile's none-any wheel,
    without libsndfile, on this machine's first extra index); the index the one tagged for this
    interpreter: pip takes that one, uv alone the pure one."""
    from pip._vendor.packaging.tags import sys_tags  # pip's ranking, which packaging's releases have changed

    (tmp_path / "wheels").mkdir()
    pure = _wheel(tmp_path / "wheels", "py3-none-any", "pure")
    best = _wheel(tmp_path / "wheels", str(next(iter(sys_tags()))), "platform")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_")) and k != "SSL_CERT_FILE"}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL=_index(tmp_path / "index", best),
               PIP_EXTRA_INDEX_URL=_index(tmp_path / "extra", pure), UV_CACHE_DIR=str(tmp_path / "uv-cache"))
    installed = subprocess.run(
        [sys.executable, ROOT / "scripts" / "uv_like_pip.py", "pip", "install", "--python", venv / "bin" / "python",
         "--compile-bytecode", "tagpick==1.0"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert best.name in installed.stderr  # it says what it put in, and why
    said = subprocess.run([venv / "bin" / "python", "-c", "import tagpick; print(tagpick.WHEEL)"],
                          capture_output=True, text=True, timeout=60)
    assert said.stdout.strip() == "platform", said.stdout + said.stderr


def test_a_single_source_is_left_to_uv_alone(tmp_path):
    """One index and no find-links: uv saw every file pip would, so no index page is read again."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import uv_like_pip
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    assert uv_like_pip.replacements(sys.executable, {"index-url": "file:///nowhere/simple"}) == []
    assert uv_like_pip.replacements(sys.executable, {"no-index": "1", "find-links": "/nowhere"}) == []


def _dry_run(tmp_path, *variables: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE") and k != "MFLAGS"}
    return subprocess.run(["make", "-n", "--no-print-directory", "setup", f"VENV={tmp_path / 'venv'}", *variables],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_the_uv_recipe_bootstraps_a_pinned_uv_from_pip_into_a_venv_made_by_python_m_venv(tmp_path):
    made = _dry_run(tmp_path)
    assert made.returncode == 0, made.stderr
    venv_python = f"{tmp_path / 'venv'}/bin/python"
    lines = made.stdout.splitlines()
    assert any(f"-m venv {tmp_path / 'venv'}" in line for line in lines)
    [bootstrap] = [line for line in lines if " -m pip install" in line and "uv==" in line]
    assert bootstrap.startswith(f"{venv_python} -m pip install") and "uv==0." in bootstrap
    installs = [line for line in lines if "scripts/uv_like_pip.py pip install" in line]
    assert len(installs) == 2, lines
    main, toolkit = installs
    assert "-r requirements-local.txt -c constraints.txt" in main and f"--python {venv_python}" in main
    assert f"--no-deps --upgrade --target {tmp_path / 'venv'}/hf-inference-toolkit -r requirements-hf-inference.txt" in toolkit
    assert lines.index(bootstrap) < lines.index(main) < lines.index(f"{venv_python} -m pip check") < lines.index(toolkit)


def test_installer_pip_is_plain_pip_as_before(tmp_path):
    made = _dry_run(tmp_path, "INSTALLER=pip")
    assert made.returncode == 0, made.stderr
    venv_python = f"{tmp_path / 'venv'}/bin/python"
    assert "uv" not in made.stdout.replace(f"{tmp_path}", "")
    assert f"{venv_python} -m pip install --quiet -r requirements-local.txt -c constraints.txt" in made.stdout
    assert f"{venv_python} -m pip check" in made.stdout
    assert (f"{venv_python} -m pip install --quiet --no-deps --upgrade --target {tmp_path / 'venv'}/hf-inference-toolkit"
            " -r requirements-hf-inference.txt") in made.stdout


def test_an_unknown_installer_is_refused(tmp_path):
    made = _dry_run(tmp_path, "INSTALLER=conda")
    assert made.returncode != 0 and 'INSTALLER is uv or pip, not "conda"' in made.stderr


@pytest.mark.skipif(Path(sys.prefix).resolve() != (ROOT / ".venv").resolve(), reason="runs in the venv `make setup` made")
def test_the_set_up_venv_keeps_a_working_pip_and_a_clean_pip_check():
    version = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and str(Path(sys.prefix).resolve()) in version.stdout, version.stdout + version.stderr
    check = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
    assert (Path(sys.prefix) / "hf-inference-toolkit" / "sagemaker_huggingface_inference_toolkit").is_dir()
