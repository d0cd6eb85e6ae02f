"""How long a fresh `make setup` takes with uv (the default) and with plain pip, side by side in one run.

    python3.11 benchmarks/setup_time.py [--installers uv,pip] [--workdir /tmp] [--keep] [--json OUT]

Each installer gets a fresh temporary folder under --workdir (default: the system's temporary folder)
holding its venv and its caches, and runs the Makefile's own recipe there:
`make setup VENV=<folder>/venv INSTALLER=<uv|pip>`, with PIP_CACHE_DIR and UV_CACHE_DIR pointed at
empty folders of its own. So every run starts with cold caches, as on a fresh machine (the fair figure
for a new clone), and neither installer's downloads, built wheels or unpacked archives can help the
other (uv's bootstrap, `pip install uv`, starts from a cold pip cache too). Both use the package index
that pip is configured with (the Makefile maps it to uv).

The runs go one after the other, not at once (on two cores they would slow each other down), uv first:
whatever the first run leaves in the operating system's page cache (wheels that pip's configured index
keeps on local disk, say) helps the second, so the ratio errs on pip's side. On a machine shared with
other work the wall times move with its load: the load average is printed beside them, and the CPU
time (user + system) of each setup, which the load moves less.

Then, for each venv: `pip check`; `python -m pip --version` (the venv is made by `python -m venv`, so
pip stays usable whatever installed the rest); importing torch, torchvision (with its compiled nms
operator, which a mismatched torch breaks) and airflow, timed (a venv without byte-compiled modules
would show it here); the Hugging Face inference toolkit beside the venv; the venv's size, and what its
caches add beyond it (uv's cache shares the venv's files through hard links). The two
venvs' distributions are compared, each by version and by the tags of the wheel it was installed
from (uv itself aside). Each folder is deleted once measured (a venv is
about 7 GB; --keep keeps them), and a run refuses to start with less than --min-free-gb free there.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSTALLERS = ("uv", "pip")
SETUP_TIMEOUT_S = 3600
# what the import check prints: versions, nms on a tiny input, and how long the imports took
IMPORT_PROBE = """
import json, time
started = time.perf_counter()
import torch, torchvision, airflow
from torchvision.ops import nms
seconds = time.perf_counter() - started
boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
kept = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist()
print(json.dumps({"torch": torch.__version__, "torchvision": torchvision.__version__,
                  "airflow": airflow.__version__, "nms": kept, "import_s": seconds}))
"""
# the local SageMaker's own way in: the folder beside the venv on sys.path (sys.prefix/hf-inference-toolkit)
TOOLKIT_PROBE = "from include.emulator.serving.huggingface import handler_service_class; handler_service_class()"


def _run(command: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(part) for part in command], capture_output=True, text=True, **kwargs)


def _size_bytes(*paths: Path) -> int:
    """What `du` counts under paths together: a file hard-linked in two of them (uv links the venv's files
    to its cache) counts once."""
    out = _run(["du", "-scb", *paths]).stdout.split()
    return int(out[-2]) if out else 0


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _environment(folder: Path) -> dict:
    """The caller's environment, with cold caches of this run's own and nothing that points elsewhere."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("VIRTUAL_ENV", "MAKEFLAGS", "MAKELEVEL", "MFLAGS", "PIP_NO_CACHE_DIR", "UV_NO_CACHE")}
    for name, variable in (("pip-cache", "PIP_CACHE_DIR"), ("uv-cache", "UV_CACHE_DIR")):
        (folder / name).mkdir()
        env[variable] = str(folder / name)
    return env


# each distribution's version and the tags of the wheel it came from: the same version from a
# less specific wheel (soundfile's none-any wheel has no libsndfile inside) is a different install
INSTALLED_PROBE = """import importlib.metadata as metadata, json, re
installed = {}
for dist in metadata.distributions():
    tags = sorted(line.partition(":")[2].strip() for line in (dist.read_text("WHEEL") or "").splitlines()
                  if line.startswith("Tag:"))
    installed[re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()] = f"{dist.version} ({'.'.join(tags)})"
print(json.dumps(installed))
"""


def _installed(python: Path) -> dict[str, str]:
    installed = json.loads(_run([python, "-c", INSTALLED_PROBE]).stdout)
    installed.pop("uv", None)  # the uv way's installer, in its venv only
    return installed


def measure(installer: str, workdir: Path, python: str | None, keep: bool) -> dict:
    folder = Path(tempfile.mkdtemp(prefix=f"setup-time-{installer}-", dir=workdir))
    venv = folder / "venv"
    result: dict = {"installer": installer, "folder": str(folder), "load_before": os.getloadavg()[0]}
    try:
        env = _environment(folder)
        command = ["make", "--no-print-directory", "setup", f"VENV={venv}", f"INSTALLER={installer}"]
        if python:
            command.append(f"PYTHON={python}")
        _log(f"{installer}: {' '.join(command)}  (caches: {folder}/pip-cache, {folder}/uv-cache)")
        cpu_before = _children_cpu_s()
        started = time.monotonic()
        with open(folder / "make.log", "w") as log:
            setup = subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   timeout=SETUP_TIMEOUT_S)
        result["setup_s"] = time.monotonic() - started
        # user + system time of make and everything under it: what the other work on a shared machine moves less
        result["cpu_s"] = _children_cpu_s() - cpu_before
        result["load_after"] = os.getloadavg()[0]
        result["setup_ok"] = setup.returncode == 0
        if not result["setup_ok"]:
            result["setup_log_tail"] = (folder / "make.log").read_text()[-3000:]
            _log(f"{installer}: make setup failed after {result['setup_s']:.0f} s:\n{result['setup_log_tail']}")
            return result
        _log(f"{installer}: set up in {result['setup_s']:.0f} s; checking the venv")
        venv_python = venv / "bin" / "python"
        check = _run([venv_python, "-m", "pip", "check"])
        result["pip_check_clean"] = check.returncode == 0
        result["pip_check"] = (check.stdout + check.stderr).strip()[-2000:]
        result["python_m_pip"] = _run([venv_python, "-m", "pip", "--version"]).returncode == 0
        probe = _run([venv_python, "-c", IMPORT_PROBE], cwd=folder)
        if probe.returncode == 0:
            result["imports"] = json.loads(probe.stdout.strip().splitlines()[-1])
            result["imports_ok"] = result["imports"]["nms"] == [0, 2]
        else:
            result["imports_ok"] = False
            result["imports_error"] = probe.stderr[-2000:]
        toolkit = _run([venv_python, "-c", TOOLKIT_PROBE], cwd=ROOT, env={**{k: v for k, v in os.environ.items() if k != "EMULATOR_HF_INFERENCE_TOOLKIT"}, "PYTHONPATH": str(ROOT)})
        result["hf_toolkit_ok"] = toolkit.returncode == 0
        if not result["hf_toolkit_ok"]:
            result["hf_toolkit_error"] = toolkit.stderr[-2000:]
        result["venv_bytes"] = _size_bytes(venv)
        # what the caches add on disk beyond the venv
        result["caches_bytes"] = _size_bytes(venv, folder / "pip-cache", folder / "uv-cache") - result["venv_bytes"]
        result["installed"] = _installed(venv_python)
        return result
    finally:
        if keep:
            _log(f"{installer}: kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
            _log(f"{installer}: removed {folder}")


def _gb(value: int | None) -> str:
    return f"{value / 1e9:.1f}" if value is not None else "-"


def report(results: list[dict]) -> None:
    print(f"\n{'installer':<10}{'setup s':>9}{'cpu s':>7}{'venv GB':>9}{'+caches GB':>11}{'pip check':>11}"
          f"{'-m pip':>8}{'imports':>9}{'import s':>10}{'hf toolkit':>12}{'load avg':>14}")
    for r in results:
        imports = r.get("imports", {})
        print(f"{r['installer']:<10}{r.get('setup_s', float('nan')):>9.0f}{r.get('cpu_s', float('nan')):>7.0f}"
              f"{_gb(r.get('venv_bytes')):>9}"
              f"{_gb(r.get('caches_bytes')):>11}"
              f"{('clean' if r.get('pip_check_clean') else 'FAILED'):>11}"
              f"{('ok' if r.get('python_m_pip') else 'FAILED'):>8}"
              f"{('ok' if r.get('imports_ok') else 'FAILED'):>9}"
              f"{imports.get('import_s', float('nan')):>10.1f}"
              f"{('ok' if r.get('hf_toolkit_ok') else 'FAILED'):>12}"
              f"{r['load_before']:>7.1f}->{r.get('load_after', float('nan')):<5.1f}")
    for r in results:
        if "imports" in r:
            i = r["imports"]
            print(f"{r['installer']}: torch {i['torch']}, torchvision {i['torchvision']}, airflow {i['airflow']}")
        for key in ("setup_log_tail", "pip_check", "imports_error", "hf_toolkit_error"):
            if key in r and (key != "pip_check" or not r.get("pip_check_clean")):
                print(f"{r['installer']} {key}:\n{r[key]}")
    by_name = {r["installer"]: r for r in results}
    if {"uv", "pip"} <= set(by_name) and by_name["uv"].get("setup_ok") and by_name["pip"].get("setup_ok"):
        uv, pip = by_name["uv"], by_name["pip"]
        print(f"\npip / uv: {pip['setup_s']:.0f} s / {uv['setup_s']:.0f} s = {pip['setup_s'] / uv['setup_s']:.2f}x"
              f" ({pip['setup_s'] - uv['setup_s']:.0f} s saved); CPU time {pip['cpu_s']:.0f} s / {uv['cpu_s']:.0f} s"
              f" = {pip['cpu_s'] / uv['cpu_s']:.2f}x")
        a, b = uv["installed"], pip["installed"]
        differ = sorted(name for name in a.keys() | b.keys() if a.get(name) != b.get(name))
        if differ:
            print("the venvs differ: " + ", ".join(f"{n} uv={a.get(n)} pip={b.get(n)}" for n in differ))
        else:
            print(f"the venvs hold the same {len(a)} packages at the same versions from wheels of the same tags"
                  " (uv itself aside)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--installers", default="uv,pip", help="comma-separated, run in this order (default: uv,pip)")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--python", help="the Python 3.11 to make the venvs with (default: the Makefile's choice)")
    parser.add_argument("--keep", action="store_true", help="keep the venvs and their caches")
    parser.add_argument("--min-free-gb", type=float, default=12.0, help="free space needed before each run")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    installers = [name.strip() for name in args.installers.split(",") if name.strip()]
    unknown = set(installers) - set(INSTALLERS)
    if unknown:
        parser.error(f"unknown installers {sorted(unknown)}; choose from {INSTALLERS}")
    results = []
    for installer in installers:
        free_gb = shutil.disk_usage(args.workdir).free / 1e9
        if free_gb < args.min_free_gb:
            print(f"only {free_gb:.1f} GB free in {args.workdir}, {args.min_free_gb:.0f} GB needed for one venv:"
                  f" not running {installer}", file=sys.stderr)
            break
        results.append(measure(installer, args.workdir, args.python, args.keep))
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    ok = all(r.get("setup_ok") and r.get("pip_check_clean") and r.get("imports_ok") and r.get("python_m_pip")
             and r.get("hf_toolkit_ok") for r in results)
    return 0 if ok and len(results) == len(installers) else 1


if __name__ == "__main__":
    sys.exit(main())
