"""``fgvc serve``: the prediction rule of ``fgvc predict`` behind an HTTP API (FastAPI on uvicorn), and a page.

- ``POST /v1/predict``: multipart field ``image``; optional form fields ``lat``, ``lon``, ``date``
  (they win over the photo's EXIF, and are reported as source ``cli``: given by the caller),
  ``ignore_location``, ``ignore_date``, ``topk`` and ``compare`` (also give the top-k without any
  metadata, to show what place and date changed). The answer has the fields of a ``fgvc predict``
  JSON row, plus ``exif``: what the photo itself carried.
- ``GET /v1/model``: classes, taxonomy, the metadata the model (and prior) read, the input size.
- ``GET /healthz``; ``GET /`` the page (``static/``, no external resource); OpenAPI at ``/docs``.

The model is loaded once. Requests that arrive while a forward pass runs are batched into the next
one (``Batcher``), so concurrent clients share the CPU instead of fighting over it. Limits: the
request body (``max_upload_bytes``, 413 beyond it, counted as it streams in), the pixel count
(``PIL.Image.MAX_IMAGE_PIXELS``, 413: decompression bombs are refused before decoding), content that
no decoder recognises (415), a damaged image or invalid field (422). No response carries a file path
or a stack trace; unexpected errors are logged here and answered with a plain 500.
"""

from __future__ import annotations

import asyncio
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path, PurePath

import torch
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image

from fgvc.version import __version__
from fgvc.data.metadata import date_fraction
from fgvc.deploy.exif import NotAnImage, TooManyPixels, read_photo
from fgvc.deploy.predictor import Given, Metadata, Predictor, resolve_metadata
from fgvc.errors import DataError

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
MAX_UPLOAD_BYTES = 20 * 2**20


class Batcher:
    """One forward pass at a time, over every request waiting for it (up to ``max_batch`` images)."""

    def __init__(self, predictor: Predictor, max_batch: int = 16):
        self.predictor, self.max_batch = predictor, max_batch
        self.queue: asyncio.Queue | None = None
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="fgvc-forward")

    async def run(self) -> None:
        self.queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            while len(items) < self.max_batch and not self.queue.empty():
                items.append(self.queue.get_nowait())
            try:
                results = await loop.run_in_executor(self.executor, self.forward, items)
            except Exception as exc:  # noqa: BLE001 - every waiting request gets the error
                results = [exc] * len(items)
            for (*_, future), result in zip(items, results):
                if not future.done():
                    (future.set_exception if isinstance(result, Exception) else future.set_result)(result)

    def forward(self, items: list[tuple]) -> list[tuple]:
        """``(raw, final, final without metadata or None)`` per item."""
        images = torch.stack([image for image, *_ in items])
        raw, final = self.predictor.scores(images, [meta for _, meta, *_ in items])
        without = [None] * len(items)
        if any(compare for *_, compare, _ in items):
            without = self.predictor.scores(images, [Metadata()] * len(items))[1]
        return list(zip(raw, final, without))

    async def __call__(self, image: torch.Tensor, meta: Metadata, compare: bool) -> tuple:
        if self.queue is None:
            raise RuntimeError("the batcher is not running (the app's lifespan starts it)")
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((image, meta, compare, future))
        return await future


class UploadLimit:
    """ASGI middleware: 413 once a request body passes ``max_bytes`` (declared or as it streams in)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await JSONResponse(self._message(), 413)(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise HTTPException(413, self._message()["detail"])
            return message

        return await self.app(scope, counted, send)

    def _message(self) -> dict:
        return {"detail": f"request body over the limit of {self.max_bytes} bytes"}


def _float(name: str, text: str | None, limit: float) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        raise HTTPException(422, f"{name} {text!r} is not a number") from None
    if not (math.isfinite(value) and abs(value) <= limit):
        raise HTTPException(422, f"{name} {text!r}: expected a number in -{limit:g}..{limit:g}")
    return value


def _given(lat: str | None, lon: str | None, date: str | None) -> Given | None:
    lat_value, lon_value = _float("lat", lat, 90), _float("lon", lon, 180)
    if (lat_value is None) != (lon_value is None):
        raise HTTPException(422, "lat and lon go together: give both or neither")
    date = date.strip() if date and date.strip() else None
    if date is not None:
        try:
            date_fraction(date)
        except ValueError as exc:
            raise HTTPException(422, f"{exc} (expected YYYY-MM-DD)") from None
    return Given(lat_value, lon_value, date) if lat_value is not None or date else None


def _client_name(filename: str | None) -> str:
    """The upload's own file name, without any folder the client sent."""
    name = PurePath((filename or "").replace("\\", "/")).name
    return name[:200] or "upload"


def create_app(predictor: Predictor, max_upload_bytes: int = MAX_UPLOAD_BYTES, max_batch: int = 16) -> FastAPI:
    """The app around one loaded model (and its prior and allow-list)."""
    batcher = Batcher(predictor, max_batch)
    model = predictor.model

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        task = asyncio.create_task(batcher.run())
        yield
        task.cancel()

    app = FastAPI(title="fgvc", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Fine-grained species identification from a photo and, when the model "
                  "reads them, its place and date.")
    app.state.batcher = batcher  # (tests hold the forward pass to see requests batched)
    app.add_middleware(UploadLimit, max_bytes=max_upload_bytes)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _add_docs(app)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):  # never a stack trace in a response
        log.exception("error answering %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error"}, 500)

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html")

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/v1/model")
    def model_info() -> dict:
        """What the model predicts and what it reads."""
        return {"name": model.config.name, "classes": model.classes, "taxonomy": model.taxonomy,
                "metadata": list(model.metadata), "input_size": model.image_size,
                "prior": {"metadata": list(predictor.prior_use)} if predictor.prior is not None else None,
                "allowed_classes": None if predictor.allowed is None else int(predictor.allowed.sum()),
                "max_upload_bytes": max_upload_bytes, "max_pixels": Image.MAX_IMAGE_PIXELS}

    @app.post("/v1/predict")
    async def predict(image: UploadFile = File(..., description="a photo (JPEG, PNG, WebP...)"),
                      lat: str | None = Form(None, description="latitude, -90..90 (wins over EXIF)"),
                      lon: str | None = Form(None, description="longitude, -180..180 (wins over EXIF)"),
                      date: str | None = Form(None, description="observation date YYYY-MM-DD (wins over EXIF)"),
                      ignore_location: bool = Form(False, description="use no location at all"),
                      ignore_date: bool = Form(False, description="use no date at all"),
                      topk: int = Form(5, description="classes in the answer"),
                      compare: bool = Form(False, description="also rank without any metadata")) -> dict:
        """Top-k classes of one photo; the metadata used and where it came from."""
        if topk < 1:
            raise HTTPException(422, f"topk {topk}: must be at least 1")
        given = _given(lat, lon, date)
        name = _client_name(image.filename)
        data = await image.read()
        try:
            pixels, exif = await asyncio.to_thread(read_photo, data, name)
        except TooManyPixels as exc:
            raise HTTPException(413, str(exc)) from None
        except NotAnImage as exc:
            raise HTTPException(415, str(exc)) from None
        except DataError as exc:
            raise HTTPException(422, str(exc)) from None
        tensor = await asyncio.to_thread(model.preprocess, pixels)
        meta, _ = resolve_metadata({"cli": given, "exif": exif}, ignore_location, ignore_date)
        raw, final, without = await batcher(tensor, meta, compare)
        row = predictor.row(name, raw, final, predictor.used(meta), topk)
        row["exif"] = {"lat": exif.lat, "lon": exif.lon, "date": exif.date, "problems": list(exif.problems)}
        if without is not None:
            row["without_metadata"] = predictor.top(without, allowed_only=True, k=topk)
        return row

    return app


def _add_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI 5 (it reads the OpenAPI 3.1 that FastAPI writes; 4.x refuses it) from the
    fastapi-swagger package's files, served from here (no CDN)."""
    from importlib.resources import files

    from fastapi.openapi.docs import get_swagger_ui_html

    app.mount("/docs-assets", StaticFiles(directory=str(files("fastapi_swagger") / "resources")), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs():
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="fgvc API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon-32x32.png")


def serve(predictor: Predictor, host: str = "127.0.0.1", port: int = 8000,
          max_upload_bytes: int = MAX_UPLOAD_BYTES, max_batch: int = 16) -> None:
    """Run the app with uvicorn until interrupted."""
    import uvicorn

    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: anyone who can reach this machine can use the model", host)
    uvicorn.run(create_app(predictor, max_upload_bytes, max_batch), host=host, port=port, log_level="info")
