"""The server object: its state (settings, trust, documents, jobs, stores), lifecycle and logging to the client.

Features live in one module per LSP area and register themselves on the server: `diagnostics` (documents and
their diagnostics), `views` (code lens, code actions, hover, trees and runs), `runs` (commands, progress, the
winner's edit). They import this module; it imports none of them (`app.build()` puts them together). The
engine does the work; this package maps it onto the protocol (`protocol.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
from collections import deque
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcRequestCancelled
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol

from lse_engine import __version__
from lse_engine.config import load_config
from lse_engine.errors import LSEError
from lse_engine.files import Suite, parse_suite
from lse_server.analysis import Analyzer, too_large
from lse_server.documents import is_prompt_name, is_suite, names_a_suite
from lse_server.errors import REQUEST_FAILED, RequestFailed, describe, one_line
from lse_server.jobs import JobManager
from lse_server.settings import FileGlobs, check_budget_s, file_globs, to_overrides
from lse_server.store_reader import StoreReader
from lse_server.uris import uri_to_path

log = logging.getLogger("lse_server")
MAX_FILE_BYTES = 20_000_000  # a closed document read from disk (a hover, a run of a closed file)


class LseProtocol(LanguageServerProtocol):
    """pygls' protocol with one change: a failed request answers with a one-line message (RequestFailed for
    anything but a JSON-RPC error), never with a traceback in the response."""

    def _send_handler_result(self, future: Future[Any], *, msg_id: Any) -> None:  # pygls 2 hook
        self._request_futures.pop(msg_id, None)
        if future.cancelled():
            error = JsonRpcRequestCancelled(f"request {msg_id} was cancelled").to_response_error()
            self._send_response(msg_id, error=error)
            return
        exc = future.exception()
        if exc is None:
            self._send_response(msg_id, result=future.result())
            return
        if isinstance(exc, JsonRpcException):
            log.info("request %s failed: %s", msg_id, one_line(exc.message))
            error = types.ResponseError(code=exc.code, message=one_line(exc.message))
        else:
            if isinstance(exc, (LSEError, OSError, ValueError)):
                log.info("request %s failed: %s", msg_id, describe(exc))
            else:
                log.error("request %s failed", msg_id, exc_info=exc)
            error = types.ResponseError(code=REQUEST_FAILED, message=describe(exc))
        self._send_response(msg_id, error=error)

    def _check_handler_result(self, future: Future[Any]) -> None:
        if not future.cancelled() and (exc := future.exception()) is not None:
            log.error("a notification handler failed: %s", describe(exc), exc_info=exc)


class LseServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("lse-server", __version__, protocol_cls=LseProtocol,
                         text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.settings: dict[str, Any] = {}
        self.globs = FileGlobs()
        self.trusted = False  # only `initializationOptions.trusted: true` (JSON true) means trusted
        self.initialized = False
        self.analyzer = Analyzer()
        self.stores = StoreReader()
        self.jobs = JobManager()
        self.debounce: dict[str, asyncio.Task[None]] = {}
        self.stopping: asyncio.Event | None = None  # set to end the session (SIGTERM, client gone)
        self.loop: asyncio.AbstractEventLoop | None = None  # the session's loop, and its thread
        self.loop_thread: int | None = None
        self._suites: dict[str, tuple[object, Suite | None]] = {}  # uri -> (version or text hash, suite)

    # -- documents ---------------------------------------------------------------------------------------
    def path_of(self, uri: str) -> Path:
        return uri_to_path(uri)

    def version_of(self, uri: str) -> int | None:
        doc = self.workspace.text_documents.get(uri)
        return doc.version if doc is not None else None

    def text_of(self, uri: str) -> tuple[str, int | None]:
        """The text the user sees (the editor's buffer when open, else the file) and its version."""
        doc = self.workspace.text_documents.get(uri)
        if doc is not None:
            return doc.source, doc.version
        path = self.path_of(uri)
        try:
            if path.exists() and not path.is_file():  # a folder, a FIFO, /dev/zero behind a symlink
                raise RequestFailed(f"not a regular file: {path}")
            if path.stat().st_size > MAX_FILE_BYTES:
                raise RequestFailed(f"{path.name} is too large ({path.stat().st_size / 1e6:.0f} MB)")
            return path.read_text(encoding="utf-8", errors="replace"), None
        except FileNotFoundError:
            raise RequestFailed(f"no such file: {path}") from None
        except OSError as exc:
            raise RequestFailed(f"cannot read {path}: {exc.strerror or exc}") from None

    def is_prompt(self, path: str | Path, text: str) -> bool:
        """An LSE prompt file: a prompt-file name and front matter naming a suite."""
        return is_prompt_name(str(path), self.globs) and names_a_suite(text)

    def is_suite_uri(self, uri: str) -> bool:
        try:
            return is_suite(str(self.path_of(uri)), self.globs)
        except RequestFailed:
            return False

    def remember_suite(self, uri: str, text: str, version: int | None, suite: Suite | None) -> None:
        self._suites[uri] = (version if version is not None else hash(text), suite)

    def forget_suite(self, uri: str) -> None:
        self._suites.pop(uri, None)

    async def suite_of(self, uri: str, text: str, version: int | None) -> Suite | None:
        """The parsed suite of a document, cached per version (a hover must not re-parse 1,500 problems)."""
        key = version if version is not None else hash(text)
        hit = self._suites.get(uri)
        if hit is not None and hit[0] == key:
            return hit[1]
        if too_large(text):
            return None
        parsed: tuple[Suite | None, Any] = await self.analyzer.run(parse_suite, text, str(self.path_of(uri)))
        self.remember_suite(uri, text, version, parsed[0])
        return parsed[0]

    # -- settings, stores ----------------------------------------------------------------------------------
    def overrides(self) -> dict[str, Any]:
        return to_overrides(self.settings)

    def apply_settings(self, settings: Any) -> None:
        self.settings = settings if isinstance(settings, dict) else {}
        self.globs = file_globs(self.settings)

    def check_budget_s(self) -> float:
        """How long one gold query may run in the editor's diagnostics (`checks.goldBudgetS`)."""
        return check_budget_s(self.settings)

    def store_path(self, near: str | Path) -> Path | None:
        """The run store of the workspace holding `near`, or None (no lse.toml problem stops a view)."""
        try:
            return load_config(near).store_path
        except Exception:  # noqa: BLE001 - invalid settings are reported by check_settings
            return None

    def read_store(self, near: str | Path, fn: Any) -> Any:
        """`fn(store)` on the workspace's run store, time-limited; None when untrusted or there is none.
        An untrusted workspace's store is never opened: the file could be anything."""
        if not self.trusted:
            return None
        path = self.store_path(near)
        return self.stores.read(path, fn) if path is not None else None

    def root(self) -> Path:
        root = self.workspace.root_path
        return Path(root) if root else Path.cwd()

    # -- capabilities ----------------------------------------------------------------------------------------
    @property
    def caps(self) -> types.ClientCapabilities:
        return self.client_capabilities or types.ClientCapabilities()

    def supports_work_done_progress(self) -> bool:
        return bool(self.caps.window and self.caps.window.work_done_progress)

    def supports_code_lens(self) -> bool:
        """Whether the client shows code lenses (VS Code, Neovim); eglot 1.9 and Helix do not."""
        text, ws = self.caps.text_document, self.caps.workspace
        return bool((text and text.code_lens) or (ws and ws.code_lens))

    def supports_lens_refresh(self) -> bool:
        ws = self.caps.workspace
        return bool(ws and ws.code_lens and ws.code_lens.refresh_support)

    def supports_annotations(self) -> bool:
        edit = self.caps.workspace.workspace_edit if self.caps.workspace else None
        return bool(edit and edit.document_changes and edit.change_annotation_support)

    def supports_document_changes(self) -> bool:
        edit = self.caps.workspace.workspace_edit if self.caps.workspace else None
        return bool(edit and edit.document_changes)

    # -- messages ----------------------------------------------------------------------------------------------
    def show(self, message: str, kind: types.MessageType = types.MessageType.Info) -> None:
        self.window_show_message(types.ShowMessageParams(kind, message))

    def report_server_error(self, error: Exception, source: Any) -> None:
        """Never a generic "Error in server" popup: errors are logged; requests answer for themselves."""
        log.warning("%s", describe(error))


def check_settings(ls: LseServer) -> None:
    """Tell the user at once when the client's settings (or the workspace's lse.toml) are invalid."""
    try:
        load_config(ls.root(), ls.overrides())
    except LSEError as exc:
        ls.show(f"LSE settings: {one_line(exc)}", types.MessageType.Warning)
    except Exception as exc:  # noqa: BLE001 - a broken lse.toml must not break the session
        ls.show(f"LSE settings: {describe(exc)}", types.MessageType.Warning)


def _watch_client(ls: LseServer, pid: int) -> None:
    """End the session when the client process is gone (LSP: initialize's processId)."""

    async def watch() -> None:
        while True:
            await asyncio.sleep(2.0)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                log.warning("the client (pid %d) is gone; stopping", pid)
                if ls.stopping is not None:
                    ls.stopping.set()
                return
            except OSError:
                pass  # alive, owned by another user

    ls.client_watch = asyncio.get_running_loop().create_task(watch())  # type: ignore[attr-defined]


def register(ls: LseServer) -> None:
    @ls.feature(types.INITIALIZE)
    def on_initialize(ls: LseServer, params: types.InitializeParams) -> None:
        opts = params.initialization_options if isinstance(params.initialization_options, dict) else {}
        ls.trusted = opts.get("trusted") is True
        ls.apply_settings(opts)
        if isinstance(params.process_id, int) and params.process_id > 0 and params.process_id != os.getpid():
            _watch_client(ls, params.process_id)

    @ls.feature(types.INITIALIZED)
    def on_initialized(ls: LseServer, params: types.InitializedParams) -> None:
        ls.initialized = True
        ClientLogHandler.flush_to(ls)
        log.info("lse-server %s; workspace %s (%s)", __version__, ls.root(),
                 "trusted" if ls.trusted else "NOT trusted: no SQL runs, no models, no run store read")
        check_settings(ls)

    @ls.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def on_config(ls: LseServer, params: types.DidChangeConfigurationParams) -> None:
        if isinstance(params.settings, dict) and params.settings:
            ls.apply_settings(params.settings)  # trust is the client's at initialize; settings never change it
            check_settings(ls)

    @ls.feature(types.SHUTDOWN)
    async def on_shutdown(ls: LseServer, *args: Any) -> None:
        await ls.jobs.shutdown(grace_s=2.0)
        ls.analyzer.close()
        ls.stores.close()

    @ls.feature(types.EXIT)
    def on_exit(ls: LseServer, *args: Any) -> None:
        ls.jobs.terminate_all(grace_s=2.0)


# -- logging to the client -----------------------------------------------------------------------------------
_LEVELS = ((logging.ERROR, types.MessageType.Error), (logging.WARNING, types.MessageType.Warning),
           (logging.INFO, types.MessageType.Info))


class ClientLogHandler(logging.Handler):
    """Log records as `window/logMessage` at the matching level (error, warning, info, log), so a client's
    log shows info as info. Before the session is up, records wait (errors also go to stderr)."""

    server: LseServer | None = None
    pending: deque[logging.LogRecord] = deque(maxlen=200)
    _local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self._local, "busy", False):
            return  # a record logged while sending one
        server = ClientLogHandler.server
        if server is None or not server.initialized:
            ClientLogHandler.pending.append(record)
            if record.levelno >= logging.ERROR:
                sys.stderr.write(self.format(record) + "\n")
            return
        message = self.format(record)
        kind = next((t for level, t in _LEVELS if record.levelno >= level), types.MessageType.Log)
        loop = server.loop
        if loop is None or threading.get_ident() == server.loop_thread:
            self._send(server, kind, message)
        else:  # from a worker thread: the loop thread alone writes to the client
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._send, server, kind, message)

    def _send(self, server: LseServer, kind: types.MessageType, message: str) -> None:
        self._local.busy = True
        try:
            server.window_log_message(types.LogMessageParams(kind, message))
        except Exception:  # noqa: BLE001 - the client is gone: nowhere to log to
            pass
        finally:
            self._local.busy = False

    @classmethod
    def flush_to(cls, server: LseServer) -> None:
        cls.server = server
        handler = next((h for h in logging.getLogger().handlers if isinstance(h, cls)), None)
        while handler is not None and cls.pending:
            handler.emit(cls.pending.popleft())
