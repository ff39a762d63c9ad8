"""`lse-server`: start the LSE language server over stdio (default) or TCP."""

from __future__ import annotations

import argparse
import logging
import sys

from lse_engine import __version__


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lse-server", description="LSE language server")
    ap.add_argument("--stdio", action="store_true", help="talk over stdin/stdout (default)")
    ap.add_argument("--tcp", metavar="HOST:PORT", help="listen on a TCP address instead (one client)")
    ap.add_argument("--log-file", help="also write the server log here (it always goes to the client)")
    ap.add_argument("--log-level", default="INFO", type=str.upper, choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    ap.add_argument("--version", action="version", version=f"lse-server {__version__}")
    args = ap.parse_args(argv)
    host, port = "", 0
    if args.tcp:
        host, _, port_text = args.tcp.rpartition(":")
        if not port_text.isdigit():
            ap.error(f"--tcp wants HOST:PORT, got {args.tcp!r}")
        host, port = host or "127.0.0.1", int(port_text)

    from lse_server.app import build
    from lse_server.core import ClientLogHandler
    from lse_server.transport import serve_stdio, serve_tcp

    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    client = ClientLogHandler()
    client.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    handlers: list[logging.Handler] = [client]
    if args.log_file:
        handlers.append(logging.FileHandler(args.log_file, encoding="utf-8"))
        handlers[-1].setFormatter(logging.Formatter(fmt))
    logging.basicConfig(level=args.log_level, handlers=handlers, force=True)
    if args.log_level != "DEBUG":
        # pygls logs every message it sends at INFO, payload and all (megabytes for a big suite's diagnostics);
        # its traffic is for --log-level DEBUG.
        logging.getLogger("pygls").setLevel(logging.WARNING)
    server = build()
    ClientLogHandler.server = server
    log = logging.getLogger("lse_server")
    if args.tcp:
        log.info("lse-server %s listening on %s:%s", __version__, host, port)
        return serve_tcp(server, host, port)
    log.info("lse-server %s on stdio", __version__)
    return serve_stdio(server)


if __name__ == "__main__":
    sys.exit(main())
