"""`python -m include.emulator`: the local SageMaker in the foreground on 127.0.0.1."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from .state import DEFAULT_PORT, Settings, default_state_dir
from .gateway import EmulatorServer
from .request_gate import COMPOSE_HOST_NAMES, normalize_origin


def settings_from_arguments(argv: list[str] | None = None) -> Settings:
    """The server's Settings from its command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("EMULATOR_PORT", DEFAULT_PORT)))
    parser.add_argument("--state-dir", type=Path, default=default_state_dir())
    parser.add_argument(
        "--allow-container-network",
        action="store_true",
        help="listen on all interfaces of a container (docker-compose only; never on a host)",
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        metavar="NAME",
        help="a Host name requests may address besides 127.0.0.1, localhost and [::1] (repeatable; "
        f"with --allow-container-network the default is {', '.join(COMPOSE_HOST_NAMES)})",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        type=_origin,
        metavar="ORIGIN",
        help="a web origin (scheme://host[:port]) whose pages may call the server (repeatable; none by default)",
    )
    args = parser.parse_args(argv)
    return Settings(
        host="0.0.0.0" if args.allow_container_network else "127.0.0.1",
        port=args.port,
        state_dir=args.state_dir,
        allow_container_network=args.allow_container_network,
        allowed_hosts=tuple(args.allow_host or (COMPOSE_HOST_NAMES if args.allow_container_network else ())),
        allowed_origins=tuple(args.allow_origin or ()),
    )


def main(argv: list[str] | None = None) -> int:
    settings = settings_from_arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = EmulatorServer(settings)
    # SIGTERM (make, docker) shuts down as cleanly as Ctrl-C: jobs stopped, model servers closed
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    print(f"local SageMaker listening on {server.endpoint_url} (state in {settings.state_dir})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def _origin(value: str) -> str:
    try:
        return normalize_origin(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


if __name__ == "__main__":
    sys.exit(main())
