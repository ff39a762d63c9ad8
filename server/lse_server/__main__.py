"""`lse-server`: start the LSE language server over stdio (default) or TCP."""

from __future__ import annotations

import argparse
import logging
import sys

from lse_engine import __version__


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lse-server", description="LSE language server")
    ap.add_argument("--stdio", action="store_true", help="talk over stdin/stdout (default)")
    ap.add_argument("--tcp", metavar="HOST:PORT", help="listen on a TCP address instead")
    ap.add_argument("--log-file", help="write the server log here (default: stderr)")
    ap.add_argument("--log-level", default="INFO")
    ap.add_argument("--version", action="version", version=f"lse-server {__version__}")
    args = ap.parse_args(argv)
    handler = logging.FileHandler(args.log_file) if args.log_file else logging.StreamHandler(sys.stderr)
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if logging.getLogger().level > logging.DEBUG:
        # pygls logs every message it sends at INFO, payload and all: megabytes for a big suite's diagnostics,
        # and a client that does not drain our stderr would stall the server. Its traffic is for --log-level DEBUG.
        logging.getLogger("pygls").setLevel(logging.WARNING)
    from lse_server.app import server

    log = logging.getLogger("lse_server")
    if args.tcp:
        host, _, port = args.tcp.rpartition(":")
        if not port.isdigit():
            ap.error(f"--tcp wants HOST:PORT, got {args.tcp!r}")
        log.info("lse-server %s listening on %s:%s", __version__, host or "127.0.0.1", port)
        server.start_tcp(host or "127.0.0.1", int(port))
    else:
        log.info("lse-server %s on stdio", __version__)
        server.start_io()
    return 0


if __name__ == "__main__":
    sys.exit(main())
