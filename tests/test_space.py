"""The repo runs as a Hugging Face Space: its front matter, its entry file in a Space's environment, ZeroGPU."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from app import cli
from app.engine import gpu
from tests.browser_support import free_port

REPO = Path(__file__).resolve().parents[1]


def front_matter() -> dict:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def test_the_readme_opens_with_the_front_matter_a_space_needs() -> None:
    meta = front_matter()
    needed = {"title", "emoji", "colorFrom", "colorTo", "sdk", "sdk_version", "app_file", "python_version"}
    assert needed | {"short_description", "suggested_hardware", "license"} <= set(meta)
    assert meta["sdk"] == "gradio" and meta["suggested_hardware"] == "cpu-basic"
    assert (REPO / meta["app_file"]).is_file() and meta["app_file"] != "app.py"  # app/ is the package
    assert len(meta["short_description"]) <= 60
    gradio = next(
        Requirement(line)
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if line.strip().startswith("gradio")
    )
    assert gradio.specifier.contains(str(meta["sdk_version"]))  # the Gradio a Space installs is one we allow


def test_a_space_is_recognised_and_gives_each_visitor_a_workspace_unless_a_project_is_shared() -> None:
    assert cli.on_space({"SYSTEM": "spaces"}) and cli.on_space({"SPACE_ID": "ann/labeler"})
    assert not cli.on_space({})
    args = cli._serve_parser().parse_args([])
    args.space = True
    cli._as_space(args, {"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "7861", "ALABEL_AUTH": "a:1, b:2"})
    assert (args.host, args.port, args.demo, args.share) == ("0.0.0.0", 7861, True, False)
    assert cli._auth_pairs(args.auth, args.auth_file) == [("a", "1"), ("b", "2")]
    hosting = cli._hosting(args, {"ALABEL_MAX_WORKSPACES": "3", "ALABEL_WORKSPACE_IDLE_HOURS": "0.5"})
    assert hosting.private and not hosting.crowd
    assert (hosting.limits.max_workspaces, hosting.limits.idle_hours) == (3, 0.5)
    shared = cli._serve_parser().parse_args(["--shared-project", "birds"])
    shared.space = True
    env = {"SPACE_AUTHOR_NAME": "owner", "ALABEL_HOST_PASSWORD": "pw"}
    hosting = cli._hosting(shared, env)
    assert hosting.crowd and not hosting.private and hosting.shared_project == "birds"
    assert hosting.is_host("owner") and hosting.is_host(None, "pw")
    assert not hosting.is_host("visitor") and not hosting.is_host(None, "wrong")
    with pytest.raises(ValueError, match="ALABEL_WORKSPACE_IDLE_HOURS"):
        cli._hosting(args, {"ALABEL_WORKSPACE_IDLE_HOURS": "soon"})


def _space_env(tmp_path: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALABEL_", "GRADIO_"))}
    return env | {
        "SYSTEM": "spaces",
        "SPACE_ID": "someone/labeler",
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "ALABEL_PROJECTS_DIR": str(tmp_path / "projects"),
        **extra,
    }


def _get(url: str, host: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""


@pytest.mark.slow
def test_the_entry_file_serves_the_demo_where_the_space_says(tmp_path: Path) -> None:
    port = free_port()
    env = _space_env(tmp_path, port)
    proc = subprocess.Popen([sys.executable, "space.py"], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    try:
        deadline, status = time.monotonic() + 300, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status, _ = _get(f"http://127.0.0.1:{port}/")
                break
            except OSError:
                time.sleep(1)
        assert status == 200, proc.poll()
        # the Space's proxy forwards its own host name: served, and no server path in what the page gets
        status, config = _get(f"http://127.0.0.1:{port}/config", host="someone-labeler.hf.space")
        assert status == 200
        assert str(tmp_path) not in config and "on this computer" not in config
        assert (tmp_path / "projects" / "templates" / "digits-demo" / "project.db").is_file()
    finally:
        proc.terminate()
        proc.wait(30)


class StandInSpaces:
    """Records what a `spaces` package would be asked to do."""

    def __init__(self) -> None:
        self.durations: list[int] = []
        self.calls: list[str] = []

    def GPU(self, duration: int):  # noqa: N802 - the name the real package uses
        self.durations.append(duration)

        def decorate(fn):
            def on_gpu(*args, **kwargs):
                self.calls.append(args[0].__name__)
                return fn(*args, **kwargs)

            return on_gpu

        return decorate


def test_zero_gpu_runs_the_work_inside_one_spaces_gpu_function() -> None:
    stand_in = StandInSpaces()
    run = gpu.make_runner({"SPACES_ZERO_GPU": "true", "ALABEL_GPU_SECONDS": "90"}, load=lambda _name: stand_in)
    assert run(divmod, 7, 2) == (3, 1)
    assert stand_in.durations == [90] and stand_in.calls == ["divmod"]
    assert gpu.make_runner({}, load=lambda _name: stand_in)(divmod, 7, 2) == (3, 1)
    assert stand_in.calls == ["divmod"]  # off a ZeroGPU Space: a plain call

    def missing(_name: str):
        raise ImportError("no spaces package")

    assert gpu.make_runner({"SPACES_ZERO_GPU": "1"}, load=missing)(divmod, 9, 4) == (2, 1)


@pytest.mark.slow
def test_embedding_goes_through_the_gpu_runner(tmp_path: Path, monkeypatch) -> None:
    from app.engine.demo import write_digits
    from app.engine.embedding_cache import EmbeddingCache
    from app.engine.learners import embed_missing
    from lit_models.backbones import BackboneSpec, load_backbone

    stand_in = StandInSpaces()
    monkeypatch.setattr(gpu, "run_on_gpu", gpu.make_runner({"SPACES_ZERO_GPU": "1"}, load=lambda _n: stand_in))
    files = write_digits(tmp_path / "imgs", size=32, limit=4)
    backbone = load_backbone(BackboneSpec(arch="test_efficientnet", source="random", image_size=32))
    cache = EmbeddingCache(tmp_path / "emb")
    embed_missing(backbone, cache, [1, 2, 3, 4], dict(zip([1, 2, 3, 4], files, strict=True)))
    assert stand_in.calls == ["embed_paths"] and cache.missing([1, 2, 3, 4]) == []
