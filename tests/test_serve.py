"""`fgvc serve`'s API in-process (FastAPI's test client): answers equal `fgvc predict`'s rows, every
status code, limits, batching of concurrent requests, and no path or stack trace in any response."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from test_predict import save_with_exif

from fgvc.deploy.model import load_inference_model
from fgvc.deploy.predict import predict_files
from fgvc.deploy.predictor import Predictor, load_prior
from fgvc.deploy.serve import create_app


@pytest.fixture(scope="module")
def predictor(deploy_models):
    model = load_inference_model(deploy_models.dynamic_mlp)
    return Predictor(model, load_prior(deploy_models.prior_run, model), topk=3)


@pytest.fixture(scope="module")
def client(predictor):
    with TestClient(create_app(predictor, max_upload_bytes=200_000)) as c:
        yield c


@pytest.fixture(scope="module")
def photo(deploy_models, tmp_path_factory) -> Path:
    info = json.loads((deploy_models.data / "val.json").read_text())["images"][0]
    path = tmp_path_factory.mktemp("serve") / "field photo.jpg"
    save_with_exif(deploy_models.data / info["file_name"], path, info["latitude"], info["longitude"], info["date"])
    return path


def post(client, data: bytes, name: str = "photo.jpg", **fields):
    return client.post("/v1/predict", files={"image": (name, data, "image/jpeg")},
                       data={k: str(v) for k, v in fields.items()})


def test_health_model_page_and_docs(client, predictor, deploy_models):
    assert client.get("/healthz").json() == {"status": "ok"}
    info = client.get("/v1/model").json()
    assert info["classes"] == predictor.model.classes and info["metadata"] == ["geo", "temporal"]
    assert info["taxonomy"]["genus"] == predictor.model.taxonomy["genus"] and info["input_size"] == 32
    assert info["prior"] == {"metadata": ["geo", "temporal"]}
    assert str(deploy_models.data.parent) not in json.dumps(info)  # no path of this machine
    page = client.get("/")
    assert page.status_code == 200 and "<title>fgvc" in page.text
    for asset in ("/static/app.js", "/static/style.css", "/static/world.json"):
        assert client.get(asset).status_code == 200
    assert "http" not in page.text.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing from elsewhere
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in docs.text
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    assert "/v1/predict" in client.get("/openapi.json").json()["paths"]


def test_answer_equals_the_predict_row(client, predictor, photo, tmp_path):
    answer = post(client, photo.read_bytes(), "../../etc/field photo.jpg", compare="true", topk=3)
    assert answer.status_code == 200
    row = answer.json()
    predict_files(predictor, [str(photo)], out=str(tmp_path / "r.jsonl"), workers=0, progress=False)
    expected = json.loads((tmp_path / "r.jsonl").read_text())
    assert row["image"] == "field photo.jpg"  # the client's name, without its folders
    for key in ("top", "raw_top", "lat", "lon", "date", "metadata_source", "taxonomy"):
        assert row[key] == expected[key], key
    assert row["metadata_source"] == "exif" and row["exif"]["lat"] == row["lat"] and row["exif"]["problems"] == []
    assert len(row["without_metadata"]) == 3 and row["without_metadata"] != row["top"]


def test_form_fields_win_over_exif_and_switches_drop_them(client, photo):
    row = post(client, photo.read_bytes(), lat="-10.5", lon="20", date="2020-03-01", topk=2).json()
    assert (row["lat"], row["lon"], row["date"], row["metadata_source"]) == (-10.5, 20.0, "2020-03-01", "cli")
    assert len(row["top"]) == 2 and "without_metadata" not in row
    row = post(client, photo.read_bytes(), ignore_location="true", date="2020-03-01").json()
    assert row["lat"] is None and row["metadata_source"] == "none"  # geo+temporal readers need both
    assert row["exif"]["lat"] is not None  # still shown: the page offers it back
    assert post(client, photo.read_bytes(), topk=99).json()["top"].__len__() == 4  # all the classes


def _png(size) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 120, 10)).save(buffer, "PNG")
    return buffer.getvalue()


def test_status_codes(client, photo, monkeypatch, deploy_models):
    data = photo.read_bytes()
    assert post(client, b"%PDF-1.4 not a photo", "doc.pdf").status_code == 415
    assert "not an image" in post(client, b"hello", "x.txt").json()["detail"]
    truncated = post(client, data[: len(data) // 2], "cut.jpg")
    assert truncated.status_code == 422 and "cut.jpg" in truncated.json()["detail"]
    for fields, message in (({"lat": "200", "lon": "0"}, "expected a number in -90..90"),
                            ({"lat": "nan", "lon": "0"}, "expected a number"),
                            ({"lat": "north", "lon": "0"}, "is not a number"),
                            ({"lat": "10"}, "lat and lon go together"),
                            ({"date": "2021-13-01"}, "not a calendar date"),
                            ({"topk": "0"}, "topk 0")):
        answer = post(client, data, **fields)
        assert answer.status_code == 422 and message in answer.json()["detail"], fields
    assert client.post("/v1/predict", data={"lat": "1"}).status_code == 422  # no image field
    big = post(client, data + b"\0" * 300_000)
    assert big.status_code == 413 and "200000 bytes" in big.json()["detail"]
    chunks = (b"x" * 50_000 for _ in range(10))  # streamed without a declared length
    streamed = client.post("/v1/predict", content=chunks,
                           headers={"content-type": "multipart/form-data; boundary=abc"})
    assert streamed.status_code == 413
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64)
    bomb = post(client, _png((80, 80)), "bomb.png")  # over the limit: refused before decoding
    assert bomb.status_code == 413 and "80x80 pixels is over the limit of 4096" in bomb.json()["detail"]
    bomb = post(client, _png((300, 300)), "bomb.png")  # over twice the limit: PIL itself refuses to open it
    assert bomb.status_code == 413 and "bomb.png: Image size (90000 pixels) exceeds" in bomb.json()["detail"]
    assert client.get("/v1/nothing").status_code == 404


def test_unexpected_errors_say_nothing_of_the_server(predictor, photo, monkeypatch, deploy_models):
    def broken(*args, **kwargs):
        raise RuntimeError(f"failure in {deploy_models.data}/secret.py")

    with TestClient(create_app(predictor), raise_server_exceptions=False) as c:
        monkeypatch.setattr(predictor, "scores", broken)
        answer = post(c, photo.read_bytes())
    assert answer.status_code == 500 and answer.json() == {"detail": "internal error"}
    assert "secret" not in answer.text and "Traceback" not in answer.text


def test_concurrent_requests_share_forward_passes(predictor, photo):
    app = create_app(predictor)
    batcher, sizes, hold = app.state.batcher, [], threading.Event()
    forward = batcher.forward

    def held(items):
        sizes.append(len(items))
        if len(sizes) == 1:
            hold.wait(30)  # the first pass holds the model while the other requests queue up
        return forward(items)

    batcher.forward = held
    data, answers = photo.read_bytes(), [None] * 6
    with TestClient(app) as c:
        def one(i):
            answers[i] = post(c, data, lat=str(10 * i), lon="5")

        threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
        threads[0].start()
        while not sizes:
            threading.Event().wait(0.01)
        for t in threads[1:]:
            t.start()
        while batcher.queue.qsize() < 5:
            threading.Event().wait(0.01)
        hold.set()
        for t in threads:
            t.join(60)
        alone = [post(c, data, lat=str(10 * i), lon="5").json() for i in range(6)]
    assert sizes[:2] == [1, 5]  # the five waiting requests went through as one batch
    for answer, single in zip(answers, alone):
        assert answer.status_code == 200 and answer.json()["lat"] == single["lat"]
        assert [t["class"] for t in answer.json()["top"]] == [t["class"] for t in single["top"]]
        assert [t["probability"] for t in answer.json()["top"]] == pytest.approx(
            [t["probability"] for t in single["top"]], rel=1e-4)
