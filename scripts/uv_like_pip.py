"""`python scripts/uv_like_pip.py pip install ARGS...`: uv, installing from where pip would and what pip would.

uv reads none of pip's configuration, so this hands pip's effective one (`pip config list`: the
[install] section over [global], PIP_* variables over both) to `python -m uv` as its flags: index,
extra indexes, find-links, constraint files, certificate and timeout.

One difference stays that no uv flag removes: where several indexes hold the same version of a package,
pip ranks the wheels of all of them by this interpreter's tags, while uv (even with
`--index-strategy unsafe-best-match`) looks only at the first index holding that version. With one
index holding only `soundfile-0.14.0-py2.py3-none-any.whl` (no libsndfile inside) and another the
manylinux wheel, uv installs a soundfile that cannot load. So after an install into an interpreter
(`--python`, this one by default), every distribution in it is checked against the wheels of its
version in all of pip's sources, ranked by that interpreter's tags as its pip ranks them, and any for
which a better-ranked wheel exists is installed again from that wheel (`--no-deps`): what pip would
have installed. A venv set up before this check is repaired by the next install into it. With a
single source uv already saw every file, and nothing is checked.
"""
from __future__ import annotations

import ast
import functools
import html
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import sysconfig
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# pip's own copy of packaging, so tags are ranked as pip ranks them (packaging's own releases have
# changed the order, e.g. of linux_x86_64 against manylinux)
from pip._vendor.packaging import tags as wheel_tags
from pip._vendor.packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

RANK = {":env:": 2, "install": 1, "global": 0}  # later wins
TRUE = ("1", "true", "yes", "on", "y", "t")


def pip_configuration() -> dict[str, str]:
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                            capture_output=True, text=True, check=True).stdout
    conf: dict[str, str] = {}
    for line in sorted(listed.splitlines(), key=lambda line: RANK.get(line.partition(".")[0], -1)):
        key, _, value = line.partition("=")
        section, _, name = key.partition(".")
        if section in RANK:
            conf[name] = ast.literal_eval(value)
    return conf


def indexes(conf: dict[str, str]) -> list[str]:
    if conf.get("no-index", "").lower() in TRUE:
        return []
    return [conf.get("index-url", "https://pypi.org/simple"), *conf.get("extra-index-url", "").split()]


def uv_flags(conf: dict[str, str]) -> list[str]:
    flags = ["--index-strategy", "unsafe-best-match"]
    if conf.get("no-index", "").lower() in TRUE:
        flags.append("--no-index")
    else:
        default, *extra = indexes(conf)
        flags += ["--default-index", default]
        for url in extra:
            flags += ["--index", url]
    for link in conf.get("find-links", "").split():
        flags += ["--find-links", link]
    for path in conf.get("constraint", "").split():
        flags += ["--constraint", path]
    return flags


def uv_environment(conf: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    if conf.get("cert"):
        env.setdefault("SSL_CERT_FILE", conf["cert"])
    timeout = conf.get("timeout") or conf.get("default-timeout")
    if timeout:
        env.setdefault("UV_HTTP_TIMEOUT", str(timeout))
    return env


# what pip would have picked -------------------------------------------------------------------------

HREF = re.compile(r"""<a\s[^>]*?href\s*=\s*["']([^"']+)["']""", re.IGNORECASE)  # PEP 503's anchors


@functools.lru_cache(maxsize=None)
def _tls_context(cafile: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile)


def _read(url: str, conf: dict[str, str]) -> tuple[str, str] | None:
    """(the page's text, the base its links resolve against), or None where there is no such page."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme in ("", "file"):
        path = Path(urllib.request.url2pathname(parsed.path))
        if path.is_dir():
            if (path / "index.html").is_file():
                path = path / "index.html"
            else:  # a plain folder of files, as find-links may be
                return "".join(f'<a href="{urllib.parse.quote(p.name)}"></a>' for p in path.iterdir()), \
                    path.as_uri() + "/"
        return (path.read_text(errors="replace"), path.as_uri()) if path.is_file() else None
    context = _tls_context(conf.get("cert") or None)
    timeout = float(conf.get("timeout") or conf.get("default-timeout") or 15)
    try:
        request = urllib.request.Request(url, headers={"Accept": "text/html"})
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return response.read().decode(errors="replace"), response.geturl()
    except OSError:  # not found, unreachable: that source offers nothing, as pip would conclude
        return None


def wheels_offered(name: str, version: str, sources: list[str], find_links: list[str],
                   conf: dict[str, str]) -> list[str]:
    """The URLs of wheels that may be `name` `version` in pip's sources: each index's project page and
    each find-links page (better_wheel reads their file names)."""
    pages = [f"{index.rstrip('/')}/{canonicalize_name(name)}/" for index in sources] + find_links
    urls = []
    for page in pages:
        read = _read(page, conf)
        if read is None:
            continue
        text, base = read
        urls += [urllib.parse.urljoin(base, html.unescape(href)).partition("#")[0] for href in HREF.findall(text)
                 if f"-{version}-" in href and ".whl" in href]  # a big project's page lists thousands
    return [url for url in urls if url.endswith(".whl")]


def _rank(wheel_tag_set, priority: dict) -> int | None:
    ranks = [priority[tag] for tag in wheel_tag_set if tag in priority]
    return min(ranks) if ranks else None


def better_wheel(name: str, version: str, installed_tags: set, offered: list[str], priority: dict) -> str | None:
    """The URL of a wheel of this version pip ranks above the installed one's tags, if any."""
    best, best_rank = None, _rank(installed_tags, priority)
    if best_rank is None:
        return None  # not installed from a wheel of known tags: nothing to compare
    for url in offered:
        try:
            wheel_name, wheel_version, _, tag_set = parse_wheel_filename(urllib.parse.unquote(url.rsplit("/", 1)[-1]))
        except InvalidWheelFilename:
            continue
        if wheel_name != canonicalize_name(name) or str(wheel_version) != version:
            continue
        rank = _rank(tag_set, priority)
        if rank is not None and rank < best_rank:
            best, best_rank = url, rank
    return best


TARGET_FACTS = """import json, sysconfig
try:
    from pip._vendor.packaging import tags
except ImportError:
    tags = None
print(json.dumps({"purelib": sysconfig.get_paths()["purelib"],
                  "tags": tags and [str(tag) for tag in tags.sys_tags()]}))
"""


def target_facts(python: str) -> tuple[Path, list]:
    """The target interpreter's site-packages and its wheel tags, best first, as its own pip ranks them
    (a venv without pip is ranked by this interpreter's pip)."""
    facts = json.loads(subprocess.run([python, "-c", TARGET_FACTS], capture_output=True, text=True, check=True).stdout)
    ranked = [tag for text in facts["tags"] for tag in wheel_tags.parse_tag(text)] if facts["tags"] else \
        list(wheel_tags.sys_tags())
    return Path(facts["purelib"]), ranked


def _installed_tags(dist_info: Path) -> set:
    wheel = dist_info / "WHEEL"
    lines = wheel.read_text().splitlines() if wheel.is_file() else []
    return {tag for line in lines if line.startswith("Tag:")
            for tag in wheel_tags.parse_tag(line.partition(":")[2].strip())}


def replacements(python: str, conf: dict[str, str]) -> list[str]:
    """`name @ url` of a better-ranked wheel for each distribution in the target that has one."""
    sources = indexes(conf)
    find_links = conf.get("find-links", "").split()
    if len(sources) + len(find_links) < 2:
        return []
    site, ranked = target_facts(python)
    priority = {tag: i for i, tag in enumerate(ranked)}

    def check(dist_info: Path) -> str | None:
        name, _, version = dist_info.name[: -len(".dist-info")].partition("-")
        url = better_wheel(name, version, _installed_tags(dist_info),
                           wheels_offered(name, version, sources, find_links, conf), priority)
        return url and f"{canonicalize_name(name)} @ {url}"

    # one lookup per index host, not one per page: a resolver that drops a query now and then costs its
    # 5 s retry once rather than on one page in every few dozen
    getaddrinfo = socket.getaddrinfo
    socket.getaddrinfo = functools.lru_cache(maxsize=None)(getaddrinfo)
    try:
        with ThreadPoolExecutor(32) as pool:  # mostly waiting on index pages
            return [requirement for requirement in pool.map(check, sorted(site.glob("*.dist-info"))) if requirement]
    finally:
        socket.getaddrinfo = getaddrinfo


def _target(args: list[str]) -> str | None:
    """The interpreter an install goes into, or None for one that installs nowhere a venv's pip would look."""
    if args[:2] != ["pip", "install"] or {"--target", "--prefix", "--dry-run"} & set(args):
        return None
    return args[args.index("--python") + 1] if "--python" in args else sys.executable


def main(args: list[str]) -> int:
    conf = pip_configuration()
    flags, env = uv_flags(conf), uv_environment(conf)
    uv = [sys.executable, "-m", "uv"]
    ran = subprocess.run([*uv, *args, *flags], env=env)
    python = _target(args)
    if ran.returncode or python is None:
        return ran.returncode
    better = replacements(python, conf)
    if not better:
        return 0
    print("uv_like_pip: installing the wheels pip ranks first, where uv took another index's:",
          ", ".join(urllib.parse.unquote(r.rsplit("/", 1)[-1]) for r in better), file=sys.stderr)
    reinstall = ["pip", "install", "--python", python, "--no-deps", "--reinstall", "--quiet"]
    if "--compile-bytecode" in args:
        reinstall.append("--compile-bytecode")
    return subprocess.run([*uv, *reinstall, *better, *flags], env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
