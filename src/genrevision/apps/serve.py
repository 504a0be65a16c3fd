"""A web page and a JSON API: drop a song, see what the network sees, get its genre.

:func:`create_app` builds a FastAPI application around one loaded
:class:`~genrevision.model.GenreModel`:

* ``GET /`` — one page (plain HTML/CSS/JS shipped in ``genrevision/web``, no
  CDN, no external font: it works offline). Drop or pick audio files; each is
  uploaded in turn and the page shows the three spectrogram images (original,
  harmonic, percussive), the fused probabilities as bars, each view's own
  guess and, for long files, a clickable timeline of 30 s segments.
* ``POST /api/predict`` — multipart upload (field ``file``) → the fields of
  ``genrevision predict --format json`` (timeline included) plus the
  spectrogram PNGs of every segment, as URLs (default) or inline data URLs
  (``?inline_images=true``).
* ``GET /api/model`` — labels, recipe, backbone, training summary, limits.
* ``GET /docs`` — OpenAPI docs, with Swagger UI served from a local package.

Requests are bounded: at most ``workers`` predictions run at once and at most
``max_queue`` more wait (uploading or queued); one more is answered 503 with a
reason. An upload is streamed to a private folder (``mkdtemp``, mode 0700)
under a generated name, cut off with 413 as soon as it passes
``max_upload_mb``, and removed once answered. Bad input gets a 4xx with one
line naming the file, never a stack trace.

Run it with ``genrevision serve --model genres.model`` or::

    import uvicorn
    from genrevision.apps.serve import create_app
    uvicorn.run(create_app("genres.model"), host="127.0.0.1", port=8000)
"""
from __future__ import annotations

import asyncio
import base64
import io
import logging
import os
import re
import secrets
import shutil
import tempfile
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect

from .._utils.validation import Interval, check_scalar, validate_params
from ..signal.audio import AUDIO_EXTENSIONS, AudioError, audio_info, load_audio
from ..model.genre_model import GenreModel, load_model

__all__ = [
    "create_app",
    "run_server",
    "spectrogram_pngs",
    "PredictResponse",
    "ModelInfo",
    "DEFAULT_MAX_UPLOAD_MB",
    "DEFAULT_MAX_DURATION_S",
]

log = logging.getLogger("genrevision.apps.serve")

#: Largest upload accepted (MiB); more is answered 413 while streaming.
DEFAULT_MAX_UPLOAD_MB = 100.0
#: Longest audio accepted: every 30 s segment is classified and drawn, so this bounds the time per call.
DEFAULT_MAX_DURATION_S = 20 * 60.0
#: Predictions at once: the CNN already uses every core, more threads only share them.
DEFAULT_WORKERS = 1
#: Requests allowed to wait (uploading or queued) beside the running ones.
DEFAULT_MAX_QUEUE = 8
#: Memory for the spectrogram PNGs the page fetches by URL (oldest results go first).
DEFAULT_IMAGE_STORE_MB = 128.0
#: Spectrogram PNGs are drawn at most this wide/high (a 30 s segment is 1292 frames).
IMAGE_MAX_SIZE = (256, 640)

#: An upload's body must arrive within this many seconds, plus one second per
#: :data:`MIN_UPLOAD_RATE` bytes received: a client trickling a byte now and then (slowloris)
#: loses its place instead of holding it for as long as it likes.
DEFAULT_UPLOAD_TIMEOUT_S = 20.0
#: Bytes per second an upload must average after :data:`DEFAULT_UPLOAD_TIMEOUT_S` (32 KiB/s: 100 MB in 53 min).
MIN_UPLOAD_RATE = 32 * 1024

#: Multipart framing and small form fields allowed beside the file itself.
_FORM_OVERHEAD = 64 * 1024
_MIB = 1024 * 1024
_WEB = "apps/web"
_DOCS_STATIC = "/docs-static"
# The page may load from and talk to its own origin only.
_PAGE_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
             "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'")


# ----------------------------------------------------------------------------- response models


class ErrorOut(BaseModel):
    """Every error: one line, naming the uploaded file where there is one."""

    detail: str = Field(examples=["song.mp3: silent (peak below -80 dBFS)"])


class SegmentOut(BaseModel):
    start: float = Field(description="seconds")
    end: float = Field(description="seconds")
    genre: str
    probabilities: dict[str, float]
    images: dict[str, str] = Field(
        description="view → PNG of what the network saw in this segment (URL, or data URL with inline_images)")
    images_span: list[float] | None = Field(
        default=None, description="[start, end] seconds drawn: the part of the segment the model reads")


class PredictionOut(BaseModel):
    path: str = Field(description="the uploaded file's name (the server's copy is gone)")
    genre: str
    probabilities: dict[str, float] = Field(description="fused over the views, sums to 1")
    views: dict[str, str] = Field(description="each view's own top guess")
    duration: float = Field(description="seconds")
    segments: list[SegmentOut] = Field(description="one per 30 s segment (one for a short file)")
    images: dict[str, str] = Field(description="view → PNG of the first segment")


class FailureOut(BaseModel):
    path: str
    reason: str


class PredictResponse(BaseModel):
    """The fields of ``genrevision predict --format json --timeline``, plus images."""

    model: str = Field(description="model file name")
    labels: list[str]
    predictions: list[PredictionOut]
    failures: list[FailureOut] = Field(
        default_factory=list, description="always empty here: a bad upload is answered with a 4xx")


class RecipeOut(BaseModel):
    name: str
    description: str = ""
    details: dict = Field(default_factory=dict, description="how the classifiers are built")


class LimitsOut(BaseModel):
    max_upload_mb: float
    max_duration_s: float
    workers: int
    max_queue: int
    audio_extensions: list[str]


class ModelInfo(BaseModel):
    model: str = Field(description="model file name")
    labels: list[str]
    recipe: RecipeOut
    backbone: str
    n_train: int = Field(description="tracks the model was trained on")
    views: list[str] = Field(description="views whose own guesses are reported")
    fusion_weights: dict[str, float] | None = None
    settings: dict = Field(description="feature settings the model predicts with")
    limits: LimitsOut


# ----------------------------------------------------------------------------- images


def spectrogram_pngs(y: np.ndarray, settings, *, max_size: tuple[int, int] | None = IMAGE_MAX_SIZE) -> dict[str, bytes]:
    """PNG bytes of the original, harmonic and percussive spectrograms of a signal.

    Parameters
    ----------
    y : np.ndarray
        Mono float32 signal at ``settings.sr`` (see :func:`genrevision.signal.audio.load_audio`).
    settings : FeatureSettings
        The model's settings: the same HPSS and frequency axis its CNN saw.
    max_size : (height, width) or None
        Larger images are scaled down to fit (for display); None keeps them.

    Returns
    -------
    dict view → PNG bytes (magma colour map, low frequencies at the bottom).
    """
    from ..features.extraction import view_images
    from ..signal.spectrogram import resize, to_png

    if max_size is not None and (len(max_size) != 2 or min(max_size) < 16):
        raise ValueError(f"max_size must be (height, width) of at least 16 pixels each, got {max_size}")
    out = {}
    for view, img in view_images(y, settings).items():
        if max_size is not None and (img.shape[0] > max_size[0] or img.shape[1] > max_size[1]):
            img = resize(img, (min(img.shape[0], max_size[0]), min(img.shape[1], max_size[1])))
        buf = io.BytesIO()
        to_png(img, buf)
        out[view] = buf.getvalue()
    return out


class ImageStore:
    """Spectrogram PNGs of recent answers, by random token, within a byte budget.

    The page fetches a segment's images when it is shown; the upload itself
    is long gone by then. The oldest answers are dropped first.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[str, dict] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def put(self, images: dict) -> str:
        """Store {(segment, view): png} and return its token."""
        token = secrets.token_urlsafe(12)
        size = sum(len(b) for b in images.values())
        with self._lock:
            self._items[token] = images
            self._bytes += size
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= sum(len(b) for b in old.values())
        return token

    def get(self, token: str, segment: int, view: str) -> bytes | None:
        with self._lock:
            item = self._items.get(token)
            return None if item is None else item.get((segment, view))


# ----------------------------------------------------------------------------- the service


class _Busy(Exception):
    pass


class GenreService:
    """The loaded model plus the machinery around it: admission, worker pool, images.

    One instance lives in ``app.state.service``; endpoints get it through
    :func:`get_service` (a FastAPI dependency).
    """

    def __init__(self, model: GenreModel, *, max_upload_bytes: int, max_duration_s: float, workers: int,
                 max_queue: int, image_store_bytes: int, upload_dir: str | None):
        self.model = model
        self.max_upload_bytes = int(max_upload_bytes)
        self.max_duration_s = float(max_duration_s)
        self.workers = int(workers)
        self.max_queue = int(max_queue)
        self.upload_dir = upload_dir
        self.images = ImageStore(image_store_bytes)
        self.model_name = os.path.basename(getattr(model, "source", None) or "") or "model"
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._in_flight = 0
        # The first prediction loads the CNN and opens its ONNX session: done by one thread only.
        self._warm = threading.Event()
        self._warm_lock = threading.Lock()

    # -- admission -------------------------------------------------------------

    def admit(self) -> None:
        """Take a place (running or waiting), or raise _Busy when all are taken."""
        with self._lock:
            if self._in_flight >= self.workers + self.max_queue:
                raise _Busy()
            self._in_flight += 1

    def release(self) -> None:
        with self._lock:
            self._in_flight -= 1

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="genrevision-predict")
            return self._executor

    def shutdown(self) -> None:
        with self._lock:
            ex, self._executor = self._executor, None
        if ex is not None:
            ex.shutdown(wait=True, cancel_futures=True)

    # -- predicting ------------------------------------------------------------

    def analyse(self, path: str, name: str, *, inline_images: bool) -> dict:
        """Prediction, timeline and images of one uploaded file (runs in a worker thread).

        Raises HTTPException with a 4xx and one line for unusable audio.
        """
        try:
            info = audio_info(path)
        except AudioError as err:
            raise _audio_http_error(name, err) from None
        if info.duration > self.max_duration_s:
            raise HTTPException(413, f"{name}: too long ({_mmss(info.duration)}; this server takes at most "
                                     f"{_mmss(self.max_duration_s)})")
        try:
            if self._warm.is_set():
                pred = self.model.predict(path, timeline=True)
            else:
                with self._warm_lock:
                    pred = self.model.predict(path, timeline=True)
                    self._warm.set()
            segments = list(pred.segments) or [(0.0, pred.duration, pred.genre, pred.probabilities)]
            pngs, spans = self._segment_images(path, segments)
        except AudioError as err:
            raise _audio_http_error(name, err) from None
        except HTTPException:
            raise
        except Exception as err:  # noqa: BLE001 - answered as one line; the trace goes to the server log
            log.exception("prediction failed for %s", name)
            msg = (str(err).splitlines() or [""])[0].replace(path, name)
            raise HTTPException(500, f"{name}: prediction failed ({type(err).__name__}{': ' + msg if msg else ''})")
        if inline_images:
            urls = {k: "data:image/png;base64," + base64.b64encode(b).decode("ascii") for k, b in pngs.items()}
        else:
            token = self.images.put(pngs)
            urls = {k: f"/api/images/{token}/{k[0]}/{k[1]}.png" for k in pngs}
        segs = [{"start": float(s), "end": float(e), "genre": str(g), "probabilities": dict(p),
                 "images": {v: u for (j, v), u in urls.items() if j == i}, "images_span": spans.get(i)}
                for i, (s, e, g, p) in enumerate(segments)]
        d = pred.to_dict()
        d.update(path=name, segments=segs, images=segs[0]["images"])
        return {"model": self.model_name, "labels": list(self.model.labels), "predictions": [d], "failures": []}

    def _segment_images(self, path: str, segments) -> tuple[dict, dict]:
        """({(segment, view): png}, {segment: (start, end) drawn})."""
        settings = self.model.settings
        out, spans = {}, {}
        for i, (start, end, _, _) in enumerate(segments):
            span = float(end) - float(start)  # the segment the model read
            # The model read this segment (it skips silent ones), so it decodes again.
            y = load_audio(path, sr=settings.sr, normalisation=settings.normalisation, offset=float(start),
                           duration=span, min_duration=min(1.0, span))
            for view, png in spectrogram_pngs(y, settings).items():
                out[(i, view)] = png
            spans[i] = [float(start), round(float(start) + y.size / settings.sr, 3)]
        return out, spans

    def model_info(self) -> dict:
        m = self.model
        recipe = m.recipe
        details = {}
        for key in ("pooling", "layers", "head", "views", "fusion_weights", "hybrid_mfcc", "C", "tune"):
            v = getattr(recipe, key, None)
            details[key] = list(v) if isinstance(v, tuple) else v
        weights = getattr(m, "weights", None)
        return {
            "model": self.model_name,
            "labels": list(m.labels),
            "recipe": {"name": recipe.name, "description": getattr(recipe, "description", ""), "details": details},
            "backbone": m.backbone_name,
            "n_train": int(m.n_train),
            "views": list(getattr(m, "report_views", ())),
            "fusion_weights": dict(weights) if weights else None,
            "settings": m.settings.to_dict(),
            "limits": {"max_upload_mb": self.max_upload_bytes / _MIB, "max_duration_s": self.max_duration_s,
                       "workers": self.workers, "max_queue": self.max_queue,
                       "audio_extensions": list(AUDIO_EXTENSIONS)},
        }


def get_service(request: Request) -> GenreService:
    """FastAPI dependency: the app's one :class:`GenreService` (model loaded once)."""
    return request.app.state.service


def _mmss(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 60}:{s % 60:02d}"


def _audio_http_error(name: str, err: AudioError) -> HTTPException:
    # Not decodable at all → 415; decodable but unusable (silent, short, empty, NaN) → 422.
    status = 415 if err.reason.startswith(("not a readable audio file", "decoding failed")) else 422
    return HTTPException(status, f"{name}: {err.reason}")


# ----------------------------------------------------------------------------- uploads


def _display_name(filename: str | None) -> str:
    """A harmless name to show: last path component, printable, at most 120 characters."""
    name = re.split(r"[\\/]", filename or "")[-1]
    name = "".join(c for c in name if c.isprintable()).strip()
    if len(name) > 120:
        stem, ext = os.path.splitext(name)
        name = stem[: 120 - len(ext[:10]) - 1] + "…" + ext[:10]
    return name or "upload"


async def _receive_upload(request: Request, folder: str, limit: int,
                          timeout_s: float = DEFAULT_UPLOAD_TIMEOUT_S) -> tuple[str, str]:
    """Stream the multipart field ``file`` to ``folder`` under a generated name.

    Returns (path, display name). Raises HTTPException 415 (not multipart),
    413 (more than ``limit`` bytes, raised while streaming), 422 (no file,
    empty file), 408 (the body took longer than ``timeout_s`` plus a second
    per :data:`MIN_UPLOAD_RATE` bytes received) or 400 (malformed or
    interrupted upload).
    """
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header

    ctype, params = parse_options_header(request.headers.get("content-type"))
    if ctype != b"multipart/form-data" or not params.get(b"boundary"):
        raise HTTPException(415, "send the audio file as multipart/form-data in a field named 'file'")
    too_large = HTTPException(413, f"upload too large: more than {limit / _MIB:g} MB (this server's limit)")
    try:
        declared = int(request.headers.get("content-length", "0"))
    except ValueError:
        raise HTTPException(400, "malformed Content-Length header") from None
    if declared > limit + _FORM_OVERHEAD:
        raise too_large  # said so up front: refuse before reading a byte

    st = {"headers": {}, "field": b"", "value": b"", "is_file": False, "done": False, "size": 0,
          "name": None, "path": None, "fh": None}

    def on_part_begin():
        st["headers"] = {}

    def on_header_field(data, start, end):
        st["field"] += data[start:end]

    def on_header_value(data, start, end):
        st["value"] += data[start:end]

    def on_header_end():
        st["headers"][st["field"].lower()] = st["value"]
        st["field"] = st["value"] = b""

    def on_headers_finished():
        _, disp = parse_options_header(st["headers"].get(b"content-disposition"))
        st["is_file"] = not st["done"] and disp.get(b"name") == b"file"
        if st["is_file"]:
            st["name"] = _display_name(disp.get(b"filename", b"").decode("utf-8", "replace"))
            ext = os.path.splitext(st["name"])[1].lower()
            # Generated name; the extension only if it is a known audio one.
            path = os.path.join(folder, "upload" + (ext if ext in AUDIO_EXTENSIONS else ".bin"))
            st["path"] = path
            st["fh"] = open(path, "xb")

    def on_part_data(data, start, end):
        if st["is_file"]:
            st["size"] += end - start
            if st["size"] > limit:
                raise _TooLarge()
            st["fh"].write(data[start:end])

    def on_part_end():
        if st["is_file"]:
            st["fh"].close()
            st["is_file"], st["done"] = False, True

    parser = MultipartParser(params[b"boundary"], {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field,
        "on_header_value": on_header_value, "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished, "on_part_data": on_part_data, "on_part_end": on_part_end,
    })
    received = 0
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    chunks = request.stream().__aiter__()
    try:
        while True:
            left = t0 + timeout_s + received / MIN_UPLOAD_RATE - loop.time()
            try:
                if left <= 0:
                    raise asyncio.TimeoutError
                chunk = await asyncio.wait_for(chunks.__anext__(), left)
            except StopAsyncIteration:
                break
            except asyncio.TimeoutError:
                raise HTTPException(408, f"upload too slow: {received} bytes in {loop.time() - t0:.0f} s (this "
                                         f"server needs {MIN_UPLOAD_RATE // 1024} KiB/s after the first "
                                         f"{timeout_s:g} s)") from None
            received += len(chunk)
            if received > limit + _FORM_OVERHEAD:
                raise _TooLarge()
            parser.write(chunk)
        parser.finalize()
    except _TooLarge:
        raise too_large from None
    except ClientDisconnect:
        raise HTTPException(400, "upload interrupted (the connection closed)") from None
    except FormParserError as err:
        raise HTTPException(400, f"malformed multipart upload ({(str(err).splitlines() or [''])[0]})") from None
    finally:
        if st["fh"] is not None and not st["fh"].closed:
            st["fh"].close()
    if not st["done"]:
        if st["path"]:
            raise HTTPException(400, f"{st['name']}: upload incomplete (the multipart body ended early)")
        raise HTTPException(422, "no file in the upload: send multipart/form-data with a field named 'file'")
    if st["size"] == 0:
        raise HTTPException(422, f"{st['name']}: empty file (0 bytes)")
    return st["path"], st["name"]


class _TooLarge(Exception):
    pass


# ----------------------------------------------------------------------------- the app


#: create_app's limits, checked by one validate_params call.
_APP_CONSTRAINTS = {
    "max_upload_mb": Interval(float, 0, None, closed="neither"),
    "max_duration_s": Interval(float, 1, None),
    "workers": Interval(int, 1, 32),
    "max_queue": Interval(int, 0, 10_000),
    "image_store_mb": Interval(float, 0, None, closed="neither"),
    "upload_timeout_s": Interval(float, 0, None, closed="neither"),
}


def create_app(model, *, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, max_duration_s: float = DEFAULT_MAX_DURATION_S,
               workers: int = DEFAULT_WORKERS, max_queue: int = DEFAULT_MAX_QUEUE,
               image_store_mb: float = DEFAULT_IMAGE_STORE_MB, upload_dir: str | None = None,
               upload_timeout_s: float = DEFAULT_UPLOAD_TIMEOUT_S, allowed_hosts=None) -> FastAPI:
    """The web page and JSON API around one genre model.

    Parameters
    ----------
    model : path or GenreModel
        A model file (loaded once, here: a bad file raises
        :class:`~genrevision.model.ModelError` at once) or a loaded model.
    max_upload_mb : float
        Largest upload in MiB; a bigger one is cut off while streaming (413).
    max_duration_s : float
        Longest audio accepted (413): bounds the time one request takes.
    workers : int
        Predictions running at once (threads sharing the one model), 1 to 32.
    max_queue : int
        Requests that may wait beside the running ones; one more gets 503.
    image_store_mb : float
        Memory kept for the spectrogram PNGs that answers point to.
    upload_dir : str, optional
        Where each upload's private folder is made (default: the system's temp folder).
    upload_timeout_s : float
        Seconds an upload's body may take, plus one per :data:`MIN_UPLOAD_RATE` bytes (408 after).
    allowed_hosts : list of str, optional
        Host names (with or without port) the ``Host`` header may carry; others get 400
        (DNS rebinding: a foreign page's name pointed at this machine). None: any.
        :func:`run_server` passes the loopback names when it listens on loopback. A POST whose
        ``Origin`` names another host than its ``Host`` (another site's page) gets 403.

    Returns
    -------
    fastapi.FastAPI; its ``state.service`` holds the model.
    """
    validate_params(dict(max_upload_mb=max_upload_mb, max_duration_s=max_duration_s, workers=workers,
                         max_queue=max_queue, image_store_mb=image_store_mb, upload_timeout_s=upload_timeout_s),
                    _APP_CONSTRAINTS)
    if upload_dir is not None and not os.path.isdir(upload_dir):
        raise ValueError(f"upload_dir {upload_dir!r} is not a folder")
    if not isinstance(model, GenreModel):
        model = load_model(model)

    service = GenreService(model, max_upload_bytes=int(max_upload_mb * _MIB), max_duration_s=max_duration_s,
                           workers=workers, max_queue=max_queue, image_store_bytes=int(image_store_mb * _MIB),
                           upload_dir=upload_dir)

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        yield
        service.shutdown()

    app = FastAPI(
        title="genrevision",
        version=_version(),
        description="Music genre from spectrogram images seen by an ImageNet CNN. Upload audio to "
                    "`/api/predict`; the page at `/` does it for you.",
        docs_url=None, redoc_url=None, lifespan=lifespan,
    )
    app.state.service = service
    _guard_origin(app, allowed_hosts)

    @app.exception_handler(RequestValidationError)
    async def _validation(request, exc):
        first = (exc.errors() or [{}])[0]
        where = ".".join(str(x) for x in first.get("loc", ()) if x not in ("query", "path", "body"))
        return JSONResponse({"detail": f"invalid request: {where + ': ' if where else ''}{first.get('msg', 'bad value')}"},
                            status_code=422)

    errors = {code: {"model": ErrorOut} for code in (400, 403, 408, 413, 415, 422, 500, 503)}

    @app.post("/api/predict", response_model=PredictResponse, responses=errors, summary="Genre of an uploaded file",
              openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                  "type": "object", "required": ["file"],
                  "properties": {"file": {"type": "string", "format": "binary",
                                          "description": "audio: " + ", ".join(AUDIO_EXTENSIONS)}}}}}}})
    async def predict(request: Request, inline_images: bool = False, svc: GenreService = Depends(get_service)):
        """Upload one audio file (multipart field ``file``); get its genre, each view's guess, the
        timeline of 30 s segments and the spectrogram images the network saw."""
        try:
            svc.admit()
        except _Busy:
            raise HTTPException(503, f"busy: {svc.workers} prediction(s) running and {svc.max_queue} waiting "
                                     "(the server's limit); try again in a moment",
                                headers={"Retry-After": "5"}) from None
        folder = tempfile.mkdtemp(prefix="genrevision-upload-", dir=svc.upload_dir)  # mode 0700
        handed_over = False

        def cleanup(_future=None):
            shutil.rmtree(folder, ignore_errors=True)
            svc.release()

        try:
            path, name = await _receive_upload(request, folder, svc.max_upload_bytes, upload_timeout_s)
            future = svc.executor().submit(svc.analyse, path, name, inline_images=inline_images)
            # From here the worker owns the folder and the place: freed when it is done, even if
            # the client has gone away meanwhile.
            future.add_done_callback(cleanup)
            handed_over = True
            return await asyncio.wrap_future(future)
        finally:
            if not handed_over:
                cleanup()

    @app.get("/api/model", response_model=ModelInfo, summary="What the loaded model is")
    async def model_info(svc: GenreService = Depends(get_service)):
        return svc.model_info()

    @app.get("/api/images/{token}/{segment}/{view}.png", response_class=Response, include_in_schema=True,
             responses={200: {"content": {"image/png": {}}}, 404: {"model": ErrorOut}},
             summary="A spectrogram PNG an answer pointed to")
    async def image(token: str, segment: int, view: str, svc: GenreService = Depends(get_service)):
        png = svc.images.get(token, segment, view)
        if png is None:
            raise HTTPException(404, "no such image (answers keep their images for a while only: upload again)")
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    web = resources.files("genrevision") / _WEB

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(web.joinpath("index.html").read_text(encoding="utf-8"),
                            headers={"Content-Security-Policy": _PAGE_CSP, "X-Content-Type-Options": "nosniff"})

    app.mount("/static", StaticFiles(packages=[("genrevision", _WEB)]), name="static")
    _offline_docs(app)
    return app


def _host_of(value: str) -> str:
    """The host name of a ``Host`` header or an origin's netloc, without the port, lower-case."""
    value = value.strip().lower()
    if value.startswith("["):  # [::1]:8000
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _guard_origin(app: FastAPI, allowed_hosts) -> None:
    """400 for a ``Host`` not allowed, 403 for a cross-origin POST (see :func:`create_app`)."""
    from urllib.parse import urlsplit

    allowed = None if allowed_hosts is None else {_host_of(h) for h in allowed_hosts}

    @app.middleware("http")
    async def guard(request: Request, call_next):
        host = _host_of(request.headers.get("host", ""))
        if allowed is not None and host not in allowed:
            return JSONResponse({"detail": f"this server does not answer for host {host[:100]!r}"}, status_code=400)
        origin = request.headers.get("origin")
        if request.method not in ("GET", "HEAD", "OPTIONS") and origin is not None:
            if urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower():  # "null" too
                return JSONResponse({"detail": "cross-origin request refused: upload from this server's own page"},
                                    status_code=403)
        return await call_next(request)


def _loopback_names(host: str):
    """The names a browser on this machine uses for a loopback ``host`` (None: not loopback, any)."""
    import ipaddress

    try:
        loop = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loop = host.lower() == "localhost"
    return ["localhost", "127.0.0.1", "::1", host] if loop else None


def _offline_docs(app: FastAPI) -> None:
    """/docs with Swagger UI from the ``fastapi-offline`` package instead of a CDN."""
    import fastapi_offline

    static = os.path.join(os.path.dirname(fastapi_offline.__file__), "static")
    app.mount(_DOCS_STATIC, StaticFiles(directory=static), name="docs-static")

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(
            openapi_url=app.openapi_url, title="genrevision API",
            swagger_js_url=f"{_DOCS_STATIC}/swagger-ui-bundle.js", swagger_css_url=f"{_DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg",
            # no validator badge: it would ask an outside server
            swagger_ui_parameters={"validatorUrl": None, "defaultModelsExpandDepth": 0},
        )


def _version() -> str:
    from .. import __version__

    return __version__


def run_server(model, *, host: str = "127.0.0.1", port: int = 8000, **options) -> None:
    """Load the model and serve the page and API with uvicorn until interrupted.

    ``options`` go to :func:`create_app` (``max_upload_mb``, ``workers``, ...).
    """
    import uvicorn

    check_scalar(port, "port", kind=int, min=0, max=65535, whole_floats=True)
    options.setdefault("allowed_hosts", _loopback_names(host))
    app = create_app(model, **options)
    uvicorn.run(app, host=host, port=int(port), log_level="info")
