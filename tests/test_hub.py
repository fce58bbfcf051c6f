"""Hub folders (safetensors + config.json + model card): round trip, the card's figures, the hub cache, push."""

from __future__ import annotations

import base64
import json
import shutil

import huggingface_hub
import pytest
import torch
import yaml

from fgvc.deploy.hub import CARD, CONFIG, WEIGHTS, export_hub, load_model, push, read_folder
from fgvc.checkpoint import load_checkpoint
from fgvc.engine.inference import model_from_checkpoint
from fgvc.errors import FgvcError
from fgvc.deploy.export import example_inputs

httpx = pytest.importorskip("httpx2")  # the HTTP client huggingface_hub 2.x runs on


@pytest.fixture
def transport():
    """huggingface_hub's HTTP client on a mocked transport: ``handler(request) -> response`` per test;
    every request is recorded. Restores the real client afterwards."""
    state = {"handler": None, "requests": []}

    def dispatch(request):
        state["requests"].append(request)
        return state["handler"](request)

    huggingface_hub.set_client_factory(lambda: httpx.Client(transport=httpx.MockTransport(dispatch)))
    yield state
    huggingface_hub.set_client_factory(huggingface_hub.utils._http.default_client_factory)


def offline(request):
    raise httpx.ConnectError("no network in this test")


def logits_of(model, cfg, seed: int = 5) -> torch.Tensor:
    with torch.no_grad():
        return model(*example_inputs(cfg, 4, cfg.data.image_size, seed=seed))


@pytest.mark.parametrize("kind", ["image_only", "fusion"])
def test_folder_round_trip_gives_bit_identical_logits(kind, trained_runs, tmp_path):
    cfg, checkpoint = trained_runs[kind]
    out = export_hub(checkpoint, tmp_path / "model")
    located = ["occurrences.safetensors"] if kind == "fusion" else []  # the manifest data has locations
    assert sorted(p.name for p in out.iterdir()) == sorted([CARD, CONFIG, WEIGHTS, *located])
    ckpt = load_checkpoint(checkpoint)
    _, original = model_from_checkpoint(ckpt, len(ckpt["classes"]))
    loaded_ckpt, loaded_cfg, loaded = load_model(out)
    assert torch.equal(logits_of(original.eval(), cfg), logits_of(loaded, loaded_cfg))
    assert loaded_ckpt["classes"] == ckpt["classes"] and loaded_cfg.model_dump() == cfg.model_dump()
    config = json.loads((out / CONFIG).read_text())
    assert config["architecture"]["fusion"] == ("dynamic_mlp" if kind == "fusion" else "none")
    if kind == "fusion":
        assert config["inputs"]["meta"]["use"] == ["geo", "temporal"] and config["inputs"]["meta"]["shape"][1] == 6


def test_model_card_carries_the_runs_figures(trained_runs, tmp_path):
    cfg, checkpoint = trained_runs["image_only"]
    report = json.loads((cfg.run_dir / "report.json").read_text())
    out = export_hub(checkpoint, tmp_path / "model")
    card = (out / CARD).read_text()
    test, val = report["test"], report["best_val_top1"]
    assert f"| test | {test['top1']:.2f} | {test['top5']:.2f} | {test['mean_per_class']:.2f} | " \
           f"{test['num_samples']} |" in card
    assert f"| validation (best epoch {report['best_epoch']}) | {val:.2f} |" in card
    for role, count in report["protocol"]["counts"].items():
        assert f"— {count} images" in card and role in card
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["library_name"] == "fgvc" and front["pipeline_tag"] == "image-classification"
    metric = front["model-index"][0]["results"][0]["metrics"][0]
    assert metric["name"] == "test top-1" and metric["value"] == round(test["top1"], 2)
    assert yaml.safe_load(card.split("```yaml\n")[1].split("```")[0]) == json.loads(cfg.model_dump_json())
    config = json.loads((out / CONFIG).read_text())
    assert config["results"]["test"]["top1"] == test["top1"] and config["results"]["val"]["top1"] == val


def test_without_a_report_the_card_says_so(trained_runs, tmp_path, caplog):
    _, checkpoint = trained_runs["image_only"]
    alone = tmp_path / "alone.pt"
    shutil.copy(checkpoint, alone)
    card = (export_hub(alone, tmp_path / "model") / CARD).read_text()
    assert "states no accuracy" in card and "model-index" not in card and "| test |" not in card
    assert "no report.json" in caplog.text


def hub_cache(tmp_path, folder, repo_id="alice/birds", commit="c0ffee" + "0" * 34):
    """A Hugging Face cache as huggingface_hub lays it out: blobs, a snapshot per commit, refs/main."""
    repo = tmp_path / "hf-cache" / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for name in (WEIGHTS, CONFIG, CARD):
        blob = repo / "blobs" / f"blob-{name}"
        shutil.copy(folder / name, blob)
        (snapshot / name).symlink_to(blob)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return tmp_path / "hf-cache"


def test_hf_id_loads_from_the_cache_offline(trained_runs, tmp_path, transport):
    cfg, checkpoint = trained_runs["image_only"]
    cache = hub_cache(tmp_path, export_hub(checkpoint, tmp_path / "model"))
    transport["handler"] = offline
    _, loaded_cfg, model = load_model("hf://alice/birds", cache_dir=cache)
    ckpt = load_checkpoint(checkpoint)
    _, original = model_from_checkpoint(ckpt, len(ckpt["classes"]))
    assert torch.equal(logits_of(model, loaded_cfg), logits_of(original.eval(), cfg))
    assert transport["requests"], "the hub client was not asked first (the cache fallback was not exercised)"
    with pytest.raises(FgvcError, match="not in the local Hugging Face cache"):
        read_folder("hf://alice/unknown", cache_dir=cache)
    with pytest.raises(FgvcError, match="expected hf://owner/name"):
        read_folder("hf://just-a-name", cache_dir=cache)


def test_push_uploads_the_three_files(trained_runs, tmp_path, transport):
    """Up to the HTTP transport: the requests huggingface_hub makes are answered by a mock, which
    receives the commit with each file's bytes; nothing leaves the machine."""
    _, checkpoint = trained_runs["image_only"]
    folder = export_hub(checkpoint, tmp_path / "model")
    commits = []

    def hub(request):
        path = request.url.path
        if path == "/api/repos/create":
            assert json.loads(request.content)["name"] == "birds"
            return httpx.Response(200, json={"url": "https://huggingface.co/alice/birds"})
        if path == "/api/validate-yaml":
            return httpx.Response(200, json={})
        if path == "/api/models/alice/birds/preupload/main":
            files = json.loads(request.content)["files"]
            return httpx.Response(200, json={"files": [{"path": f["path"], "uploadMode": "regular",
                                                        "shouldIgnore": False} for f in files]})
        if path == "/api/models/alice/birds/commit/main":
            commits.append([json.loads(line) for line in request.content.decode().splitlines()])
            return httpx.Response(200, json={"commitUrl": "https://huggingface.co/alice/birds/commit/1",
                                             "commitOid": "1" * 40})
        return httpx.Response(404, json={"error": f"not mocked: {path}"})

    transport["handler"] = hub
    url = push(folder, "alice/birds", token="hf_test_token")
    assert url == "https://huggingface.co/alice/birds/commit/1"
    [commit] = commits
    files = {op["value"]["path"]: base64.b64decode(op["value"]["content"]) for op in commit if op["key"] == "file"}
    assert set(files) == {WEIGHTS, CONFIG, CARD}
    assert all(files[name] == (folder / name).read_bytes() for name in files)
    assert 'fgvc.load("hf://alice/birds")' in files[CARD].decode()  # the card names its repository
    auth = {r.headers.get("authorization") for r in transport["requests"] if "/api/" in r.url.path}
    assert "Bearer hf_test_token" in auth


def test_push_without_a_token_is_one_clear_error(trained_runs, tmp_path, transport, monkeypatch):
    _, checkpoint = trained_runs["image_only"]
    folder = export_hub(checkpoint, tmp_path / "model")
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    transport["handler"] = offline
    with pytest.raises(FgvcError, match="no Hugging Face token"):
        push(folder, "alice/birds")
    assert not transport["requests"]


def test_damaged_folders_are_one_line_errors(trained_runs, tmp_path):
    _, checkpoint = trained_runs["image_only"]
    folder = export_hub(checkpoint, tmp_path / "model")
    (folder / WEIGHTS).write_bytes(b"not safetensors")
    with pytest.raises(FgvcError, match="not a readable safetensors file"):
        read_folder(folder)
    (folder / CONFIG).write_text("{")
    with pytest.raises(FgvcError, match="config.json: not readable JSON"):
        read_folder(folder)
    with pytest.raises(FgvcError, match="not an fgvc model folder"):
        read_folder(tmp_path)


def test_cli_export_hub_then_push(trained_runs, tmp_path, transport, capsys):
    """``fgvc export --format hub`` and ``fgvc push``, up to the HTTP transport (mocked: nothing leaves the
    machine); the upload's requests carry the token and the commit carries the three files."""
    from fgvc.cli import main

    _, checkpoint = trained_runs["image_only"]
    folder = tmp_path / "birds"
    assert main(["-q", "export", "--checkpoint", str(checkpoint), "--format", "hub",
                 "--out", str(folder)]) == 0
    assert f"fgvc push {folder} OWNER/NAME" in capsys.readouterr().out

    def hub(request):
        if request.url.path == "/api/repos/create":
            return httpx.Response(200, json={"url": "https://huggingface.co/alice/birds"})
        if request.url.path.endswith("/preupload/main"):
            files = json.loads(request.content)["files"]
            return httpx.Response(200, json={"files": [{"path": f["path"], "uploadMode": "regular",
                                                        "shouldIgnore": False} for f in files]})
        if request.url.path.endswith("/commit/main"):
            return httpx.Response(200, json={"commitUrl": "https://huggingface.co/alice/birds/commit/2",
                                             "commitOid": "2" * 40})
        return httpx.Response(200, json={})

    transport["handler"] = hub
    assert main(["-q", "push", str(folder), "hf://alice/birds", "--token", "hf_cli_token"]) == 0
    assert "https://huggingface.co/alice/birds/commit/2" in capsys.readouterr().out
    [commit] = [r for r in transport["requests"] if r.url.path == "/api/models/alice/birds/commit/main"]
    assert commit.headers.get("authorization") == "Bearer hf_cli_token"
    assert {json.loads(line)["value"]["path"] for line in commit.content.decode().splitlines()[1:]} == {
        WEIGHTS, CONFIG, CARD}


def test_cli_export_hub_refuses_onnx_options(trained_runs, tmp_path, capsys):
    from fgvc.cli import main

    _, checkpoint = trained_runs["image_only"]
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "hub", "--quantize", "int8"]) == 2
    assert "--quantize, --image-size, --set and --keep-fp32 are for --format onnx" in capsys.readouterr().err
