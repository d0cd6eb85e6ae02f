"""`python -m include.emulator`: the local SageMaker in the foreground on 127.0.0.1."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from .app import DEFAULT_PORT, Settings, default_state_dir
from .gateway import EmulatorServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("EMULATOR_PORT", DEFAULT_PORT)))
    parser.add_argument("--state-dir", type=Path, default=default_state_dir())
    parser.add_argument(
        "--allow-container-network",
        action="store_true",
        help="listen on all interfaces of a container (docker-compose only; never on a host)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    host = "0.0.0.0" if args.allow_container_network else "127.0.0.1"
    server = EmulatorServer(
        Settings(host=host, port=args.port, state_dir=args.state_dir, allow_container_network=args.allow_container_network)
    )
    # SIGTERM (make, docker) shuts down as cleanly as Ctrl-C: jobs stopped, model servers closed
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    print(f"local SageMaker listening on {server.endpoint_url} (state in {args.state_dir})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
