"""The JSON-RPC transport: framing that survives a broken or hostile client, and a session that ends cleanly.

pygls' own reader waits for ever on a bad header or a short body and drops malformed requests unanswered.
Here every request gets an answer (ParseError, InvalidRequest, InvalidParams, ServerNotInitialized), a bad
frame is skipped until the next `Content-Length` header, and a body that stops short of its announced length
is cut where the next message starts. When the client goes away (stdin EOF, the TCP connection closed), on
SIGTERM/SIGHUP/SIGINT, or when the client process dies, every run is cancelled before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException

from lse_server.errors import one_line

log = logging.getLogger("lse_server.transport")
HEADER_MAX = 8192  # bytes of one header line
BODY_MAX = 256 * 1024 * 1024  # bytes of one message
STALL_S = 1.0  # a body that stops arriving this long, with a new header inside it, was short
_MARK = b"content-length:"
_REQUESTS_BEFORE_INIT = {types.INITIALIZE, types.SHUTDOWN, types.EXIT}


class Reader:
    """Chunks from a byte stream, pushed by a thread (stdin) or a task (TCP); b"" marks the end."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.buf = bytearray()
        self.eof = False

    async def fill(self, timeout: float | None = None) -> bool:
        """Append the next chunk; False at the end of the stream or after `timeout` seconds without data."""
        if self.eof:
            return False
        try:
            chunk = await (asyncio.wait_for(self.queue.get(), timeout) if timeout else self.queue.get())
        except asyncio.TimeoutError:
            return False
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True


async def frames(reader: Reader, on_bad: Callable[[str, bytes | None], None]) -> Any:
    """Yield message bodies; `on_bad(why, body_or_None)` for every frame that cannot be one."""
    length: int | None = None
    buf = reader.buf
    while True:
        idx = buf.find(b"\n")
        while idx < 0:
            if len(buf) > HEADER_MAX:
                pos = bytes(buf).lower().find(_MARK, 1)
                if pos > 0:
                    del buf[:pos]
                else:
                    del buf[: len(buf) - len(_MARK)]
                on_bad("junk in place of a header", None)
                length = None
            if not await reader.fill():
                return
            idx = buf.find(b"\n")
        line = bytes(buf[: idx + 1]).rstrip(b"\r\n")
        del buf[: idx + 1]
        if not line.strip():
            if length is None:
                continue  # a stray blank line
            n, length = length, None
            if n > BODY_MAX:  # refused, not read: its bytes are skipped as junk up to the next header
                on_bad(f"a message of {n} bytes is too large", None)
                continue
            body = await _body(reader, n)
            if body is None:
                return
            yield body
            continue
        pos = line.lower().find(_MARK)
        if pos < 0:
            if b":" not in line:
                on_bad("not a header line", None)
                length = None
            continue  # another header (Content-Type), ignored
        if pos > 0:
            on_bad("junk before a header", None)
        value = line[pos + len(_MARK):].strip()
        length = int(value) if value.isdigit() and len(value) <= 12 else None
        if length is None:
            on_bad(f"bad Content-Length {value[:40]!r}", None)


async def _body(reader: Reader, n: int) -> bytes | None:
    """The next `n` bytes. A body that stalls with another message's header inside it was announced too long:
    it ends there, and the rest is read as the next message."""
    buf = reader.buf
    while len(buf) < n:
        if await reader.fill(STALL_S):
            continue
        if reader.eof:
            return None
        pos = bytes(buf).lower().find(_MARK)
        if pos >= 0:
            body = bytes(buf[:pos])
            del buf[:pos]
            return body
    body = bytes(buf[:n])
    del buf[:n]
    return body


def _split_misframed(body: bytes) -> tuple[bytes, bytes] | None:
    pos = body.lower().find(_MARK)
    return (body[:pos], body[pos:]) if pos > 0 else None


class Dispatcher:
    """Checks each message's shape, answers bad requests with the right JSON-RPC error, hands the rest to
    pygls' protocol."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.protocol = server.protocol

    def error(self, msg_id: Any, code: int, message: str) -> None:
        self.protocol._send_data({"jsonrpc": "2.0", "id": msg_id,
                                  "error": {"code": int(code), "message": one_line(message)}})

    def bad_frame(self, why: str, body: bytes | None) -> None:
        log.warning("bad message from the client: %s", why)

    def handle(self, body: bytes, reader: Reader) -> None:
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:
            split = _split_misframed(body)
            if split is not None:  # the Content-Length was too long: the next message starts inside
                reader.buf[:0] = split[1]
                body = split[0]
            self.error(None, types.ErrorCodes.ParseError, f"invalid JSON: {one_line(exc, 120)}")
            return
        if not isinstance(data, dict):
            self.error(None, types.ErrorCodes.InvalidRequest, "a message must be a JSON object (no batches)")
            return
        refusal = self._refusal(data)
        if refusal is not None:
            if refusal[2]:  # only a request (one with an id) gets an answer
                self.error(refusal[0], refusal[1], refusal[2])
            return
        # a response to one of our requests is passed without an id to answer
        self._pass(data, data.get("id") if "method" in data else None)

    def _refusal(self, data: dict[str, Any]) -> tuple[Any, int, str] | None:
        """Why a message is not passed on: (the id to answer, the error code, the message; "" to answer nothing),
        or None to pass it."""
        has_id = "id" in data
        msg_id = data.get("id")
        id_ok = isinstance(msg_id, str) or (isinstance(msg_id, int) and not isinstance(msg_id, bool))
        reply_to = msg_id if id_ok else None
        invalid = types.ErrorCodes.InvalidRequest
        if data.get("jsonrpc") != "2.0":
            return reply_to, invalid, 'a message needs "jsonrpc": "2.0"' if has_id or "method" in data else ""
        if "method" not in data:  # a response to one of our requests
            if id_ok and ("result" in data or isinstance(data.get("error"), dict)):
                return None
            log.warning("ignored a malformed response from the client")
            return None, invalid, ""
        method = data.get("method")
        if not isinstance(method, str) or not method:
            return reply_to, invalid, "the method must be a non-empty string" if has_id else ""
        if has_id and not id_ok:
            return None, invalid, "a request id must be a string or an integer"
        params = data.get("params")
        if params is not None and not isinstance(params, (dict, list)):
            return msg_id, types.ErrorCodes.InvalidParams, "params must be an object or an array" if has_id else ""
        return self._refusal_by_state(method, msg_id) if has_id else None

    def _refusal_by_state(self, method: str, msg_id: Any) -> tuple[Any, int, str] | None:
        """A request the server cannot take in its present state (before initialize, twice, shutting down)."""
        if method == types.INITIALIZE and self.server.initialized:
            return msg_id, types.ErrorCodes.InvalidRequest, "the server is initialized already"
        if not self.server.initialized and getattr(self.protocol, "client_capabilities", None) is None \
                and method not in _REQUESTS_BEFORE_INIT:
            return msg_id, types.ErrorCodes.ServerNotInitialized, "the server is not initialized yet"
        if self.protocol._shutdown and method != types.EXIT:
            return msg_id, types.ErrorCodes.InvalidRequest, "the server is shutting down"
        return None

    def _pass(self, data: dict[str, Any], msg_id: Any) -> None:
        try:
            message = self.protocol.structure_message(data)
        except JsonRpcException as exc:
            if msg_id is not None:
                code = exc.code if exc.code != types.ErrorCodes.InternalError else types.ErrorCodes.InvalidParams
                self.error(msg_id, code, f"invalid params for {data.get('method')}")
            else:
                log.warning("ignored %s: its params do not fit", data.get("method") or "a response")
            return
        except Exception as exc:  # noqa: BLE001 - cattrs may raise anything on odd input
            if msg_id is not None:
                self.error(msg_id, types.ErrorCodes.InvalidParams, f"invalid params: {one_line(exc, 120)}")
            return
        try:
            self.protocol.handle_message(message)
        except (SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - one message must not end the session
            log.error("handling %s failed", data.get("method"), exc_info=exc)
            if msg_id is not None:
                self.error(msg_id, types.ErrorCodes.InternalError, f"internal error: {type(exc).__name__}")


class _StdoutWriter:
    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, data: bytes) -> None:
        self.stream.write(data)
        self.stream.flush()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stream.flush()


class _StreamWriter:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    def close(self) -> None:
        self.writer.close()


async def _session(server: Any, reader: Reader) -> None:
    """Read and dispatch messages until the client leaves or the server is asked to stop; then cancel runs."""
    dispatcher = Dispatcher(server)
    server.stopping = asyncio.Event()

    async def read_all() -> None:
        async for body in frames(reader, dispatcher.bad_frame):
            try:
                dispatcher.handle(body, reader)
            except (SystemExit, KeyboardInterrupt):
                raise
            except Exception:  # a bug here must not end the session
                log.exception("dispatching a message failed")

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError, AttributeError):
            loop.add_signal_handler(sig, server.stopping.set)
    reading = loop.create_task(read_all())
    stopping = loop.create_task(server.stopping.wait())
    try:
        await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        log.info("the session ends: cancelling %d run(s)", len(server.jobs.running()))
        await server.jobs.shutdown(grace_s=2.0)
        for task in (reading, stopping):
            task.cancel()


def _prepare(server: Any) -> None:
    server.loop = asyncio.get_running_loop()
    server.loop_thread = threading.get_ident()


def serve_stdio(server: Any) -> int:
    """Serve one client over stdin/stdout; returns the process exit code."""
    server.protocol.set_writer(_StdoutWriter(sys.stdout.buffer))
    stdin = sys.stdin.buffer.fileno()

    async def main() -> None:
        _prepare(server)
        reader = Reader()
        loop = asyncio.get_running_loop()

        def pump() -> None:
            while True:
                try:
                    chunk = os.read(stdin, 65536)
                except OSError:
                    chunk = b""
                with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens any more
                    loop.call_soon_threadsafe(reader.queue.put_nowait, chunk)
                if not chunk:
                    return

        threading.Thread(target=pump, name="lse-stdin", daemon=True).start()
        await _session(server, reader)

    return _run(server, main)


def serve_tcp(server: Any, host: str, port: int) -> int:
    """Serve one client on a TCP address (the first connection); returns the process exit code."""

    async def main() -> None:
        _prepare(server)
        connected: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = \
            asyncio.get_running_loop().create_future()

        async def accept(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            if connected.done():
                w.close()
                return
            connected.set_result((r, w))

        listener = await asyncio.start_server(accept, host, port)
        stream, writer = await connected
        listener.close()
        server.protocol.set_writer(_StreamWriter(writer))
        reader = Reader()

        async def pump() -> None:
            while chunk := await stream.read(65536):
                reader.queue.put_nowait(chunk)
            reader.queue.put_nowait(b"")

        pumping = asyncio.get_running_loop().create_task(pump())
        try:
            await _session(server, reader)
        finally:
            pumping.cancel()
            writer.close()

    return _run(server, main)


def _run(server: Any, main: Callable[[], Any]) -> int:
    code = 0
    try:
        asyncio.run(main())
    except SystemExit as exc:  # pygls' `exit` handler
        code = exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:
        code = 130
    finally:
        server.jobs.terminate_all(grace_s=2.0)  # anything the loop did not get to
        with contextlib.suppress(Exception):
            server.analyzer.close()
    return code
