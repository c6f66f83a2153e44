"""VisChain as a service: an HTTP ingress (FastAPI on Ray Serve) in front of the role
deployments of :mod:`tools.deployments`, in one Serve application.

Endpoints (JSON unless noted)::

    POST /execute      {"program": ..., "images": {"IMAGE": <base64>}, "form": "auto"}
                       or multipart: a "program" field and one file per image (field = name)
    POST /run          {"instruction": ..., "images": {...}, "voting": 1, "form": null}
                       or multipart: an "instruction" field and image files
    GET  /tools        every tool, its signature and whether it can run
    GET  /runs/{id}    the run's trace records (trace.jsonl as a JSON list)
    GET  /runs/{id}/index.html   the trace page (and its pictures under /runs/{id}/...)

Everything sent here is untrusted: with ``serve.auth_token`` set every request needs
``Authorization: Bearer <token>`` (401 otherwise); request bodies over
``serve.max_request_mb`` are refused with 413 before they are read whole; images are
accepted only as bytes (never as server paths or sample names) and pass the same admission
checks as any image; programs run in the sandbox under the configured limits. Runs are kept
under ``serve.runs_dir`` by id (random, 32 hex digits), and only files inside a run's folder
are ever served.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import math
import mimetypes
import re
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ray import serve

from tools.settings import ServeSettings

from .api import Orchestrator, RunResult
from .config import Config
from .render import summarize
from .trace import TRACE_FILE
from .writer import HTML_FILE as INDEX_FILE

RUN_ID = re.compile(r"[0-9a-f]{32}")
FILE_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
IMAGE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
log = logging.getLogger("vischain.service")


class Reply(JSONResponse):
    """JSON every client parses, whatever a run computed: a non-finite number (an Eval's
    ``1e308 * 10``) is the text ``"inf"``, ``"-inf"`` or ``"nan"`` (JSON has none), and text
    is escaped to ASCII, so a lone surrogate in a value (``'\\ud800'`` in a program's string,
    which UTF-8 cannot carry) reaches the client as the escape JSON allows."""

    def render(self, content: Any) -> bytes:
        return json.dumps(_finite(content), allow_nan=False, separators=(",", ":")).encode()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


app = FastAPI(
    title="VisChain",
    description="Visual programs over vision models, as a service.",
    default_response_class=Reply,
)


class ExecuteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    program: str
    images: dict[str, str] = Field(default_factory=dict)  # name -> base64 image bytes
    form: Literal["auto", "lines", "python"] = "auto"


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instruction: str
    images: dict[str, str] = Field(default_factory=dict)
    voting: int | None = Field(None, ge=1, le=9)
    form: Literal["lines", "python", "auto"] | None = None


def client_config(config: Config) -> Config:
    """``config`` with its models served by the Serve application (``models.serve`` set)."""
    if config.models.serve is not None:
        return config
    models = config.models.model_copy(update={"serve": ServeSettings()})
    return config.model_copy(update={"models": models})


def _result_json(run_id: str, result: RunResult) -> dict[str, Any]:
    output = None
    if result.ok:
        try:
            output = summarize(result.output)
        except Exception:  # a summary is a convenience; the answer says it all
            output = None
    return {
        "run_id": run_id,
        "ok": result.ok,
        "answer": result.answer if result.ok else None,
        "output": json.loads(json.dumps(output, default=str)),
        "error": result.error.to_dict() if result.error is not None else None,
        "program": result.trace.program,
        "trace": f"/runs/{run_id}",
        "page": f"/runs/{run_id}/{INDEX_FILE}",
    }


# Serve captures what the class uses when it is decorated: define helpers above it.
@serve.deployment
@serve.ingress(app)
class Service:
    """The HTTP ingress: one orchestrator whose models are the application's deployments."""

    def __init__(self, config: Config, roles: dict[str, Any] | None = None) -> None:
        self.config = client_config(config)
        self.options = self.config.serve
        self.roles = roles or {}  # bound so they deploy with the app; reached through the pool
        self.orchestrator = Orchestrator(self.config)
        runs = self.options.runs_dir or Path(tempfile.mkdtemp(prefix="vischain-runs-"))
        self.runs = Path(runs)
        self.runs.mkdir(parents=True, exist_ok=True)

    # --- endpoints -------------------------------------------------------------------------

    @app.post("/execute")
    async def execute(self, request: Request) -> Reply:
        fields, images = await self._admit(request, ExecuteRequest, text_field="program")
        return await self._answer(
            self.orchestrator.execute, fields.program, images=images, form=fields.form
        )

    @app.post("/run")
    async def run(self, request: Request) -> Reply:
        fields, images = await self._admit(request, RunRequest, text_field="instruction")
        return await self._answer(
            self.orchestrator.run,
            fields.instruction,
            images=images,
            voting=fields.voting,
            form=fields.form,
        )

    @app.get("/tools")
    async def tools(self, request: Request) -> Reply:
        self._authorize(request)
        status = await asyncio.to_thread(self.orchestrator.tool_status)
        return Reply(
            [
                {
                    "name": t.spec.name,
                    "usage": t.spec.usage(),
                    "description": t.spec.description,
                    "requires": list(t.spec.requires),
                    "available": status.get(t.spec.name) is None,
                    "reason": status.get(t.spec.name),
                }
                for t in self.orchestrator.registry
            ]
        )

    @app.get("/runs/{run_id}")
    async def trace(self, run_id: str, request: Request) -> Reply:
        self._authorize(request)
        path = self._run_dir(run_id) / TRACE_FILE
        if not path.is_file():
            raise HTTPException(404, f"run {run_id} has no trace")
        text = await asyncio.to_thread(path.read_text, encoding="utf-8")
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
        return Reply({"run_id": run_id, "records": records})

    @app.get("/runs/{run_id}/{name:path}")
    async def run_file(self, run_id: str, name: str, request: Request) -> Any:
        self._authorize(request)
        folder = self._run_dir(run_id)
        parts = name.split("/")
        if not all(FILE_PART.fullmatch(p) for p in parts):
            raise HTTPException(404, "no such file")
        path = folder.joinpath(*parts)
        if not path.is_file() or not path.resolve().is_relative_to(folder.resolve()):
            raise HTTPException(404, "no such file")
        if name == INDEX_FILE:
            return HTMLResponse(path.read_text(encoding="utf-8"))
        media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return FileResponse(path, media_type=media)

    async def _answer(self, method: Any, text: str, **kwargs: Any) -> Reply:
        """Run ``method(text, ...)`` (execute or run) off the event loop, tracing into a new
        run folder, and answer with its result."""
        run_id = uuid.uuid4().hex
        result = await asyncio.to_thread(method, text, trace_dir=self.runs / run_id, **kwargs)
        return Reply(_result_json(run_id, result))

    # --- admission -------------------------------------------------------------------------

    def _authorize(self, request: Request) -> None:
        token = self.options.auth_token
        if not token:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip(), token):
            raise HTTPException(
                401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
            )

    async def _admit(
        self, request: Request, model: type[BaseModel], *, text_field: str
    ) -> tuple[Any, dict[str, bytes]]:
        """Authorize, read the body within the size limit, and parse JSON or multipart."""
        self._authorize(request)
        body = await self._body(request)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "multipart/form-data":
            fields, images = await self._multipart(request, body)
            data: dict[str, Any] = fields
        else:
            try:
                data = json.loads(body or b"{}")
            except ValueError as exc:
                raise HTTPException(400, f"the body is not JSON: {exc}") from None
            except RecursionError:  # '[[[[…' past the decoder's depth
                raise HTTPException(400, "the body is JSON nested too deeply") from None
            if not isinstance(data, dict):
                raise HTTPException(400, "the body must be a JSON object")
            images = {}
        try:
            parsed = model.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(x) for x in e['loc']) or text_field}: {e['msg']}"
                for e in exc.errors()
            )
            raise HTTPException(422, problems) from None
        for name, encoded in getattr(parsed, "images", {}).items():
            try:
                images[name] = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise HTTPException(400, f"image {name} is not valid base64") from None
        self._check_images(images)
        return parsed, images

    async def _body(self, request: Request) -> bytes:
        limit = int(self.options.max_request_mb * 2**20)
        too_big = (
            f"request body too large: the limit is {self.options.max_request_mb:g} MB "
            "(serve.max_request_mb)"
        )
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                if int(declared) > limit:
                    raise HTTPException(413, too_big)
            except ValueError:
                raise HTTPException(400, "bad Content-Length") from None
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPException(413, too_big)
            chunks.append(chunk)
        return b"".join(chunks)

    async def _multipart(
        self, request: Request, body: bytes
    ) -> tuple[dict[str, Any], dict[str, bytes]]:
        async def replay() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        form_request = Request(request.scope, replay)
        try:
            form = await form_request.form(max_files=self.options.max_images, max_fields=16)
        except HTTPException:
            raise
        except Exception as exc:
            raise HTTPException(400, f"unreadable multipart body: {exc}") from None
        fields: dict[str, Any] = {}
        images: dict[str, bytes] = {}
        for key, value in form.multi_items():
            if isinstance(value, str):
                fields[key] = value
            else:
                images[key] = await value.read()
        return fields, images

    def _check_images(self, images: dict[str, bytes]) -> None:
        if len(images) > self.options.max_images:
            raise HTTPException(
                413, f"too many images: {len(images)} (the limit is {self.options.max_images})"
            )
        for name in images:
            if not IMAGE_NAME.fullmatch(name):
                raise HTTPException(422, f"bad image name {name[:40]!r}: use a Python identifier")

    def _run_dir(self, run_id: str) -> Path:
        if not RUN_ID.fullmatch(run_id):
            raise HTTPException(404, "no such run")
        folder = self.runs / run_id
        if not folder.is_dir():
            raise HTTPException(404, "no such run")
        return folder


def build_app(config: Config) -> Any:
    """The Serve application: a deployment per role plus the HTTP ingress."""
    from tools import default_registry
    from tools.deployments import build_roles

    config = client_config(config)
    settings = config.model_settings()
    registry = default_registry(plugins=config.plugins)
    roles = build_roles(
        settings,
        roles=config.serve.roles,
        tools=list(registry),
        options=config.tools,
    )
    return Service.options(
        num_replicas=config.serve.replicas,
        ray_actor_options={"num_cpus": settings.serve.num_cpus if settings.serve else 0.5},
    ).bind(config, roles)


_own_cluster = threading.Event()  # set when start() had to start Ray in this process


def start(config: Config, *, address: str | None = None) -> str:
    """Join (or, for ``auto`` with none running, start) a Ray cluster, start Serve's HTTP
    proxy on ``serve.host:serve.port`` and deploy the application; returns its URL."""
    import ray

    config = client_config(config)
    settings = config.models.serve
    assert settings is not None
    target = address or settings.address
    if not ray.is_initialized():
        try:
            ray.init(address=target, logging_level="WARNING")
        except ConnectionError:
            if target != "auto":
                raise
            log.warning("no Ray cluster is running here: starting one for this process")
            ray.init(logging_level="WARNING")
            _own_cluster.set()
    serve.start(http_options={"host": config.serve.host, "port": config.serve.port})
    serve.run(build_app(config), name=settings.app, route_prefix="/")
    return f"http://{config.serve.host}:{config.serve.port}"


def serve_forever(config: Config, *, address: str | None = None, detach: bool = False) -> int:
    """``vischain serve``: deploy, print where, and keep serving until interrupted."""
    import sys
    import time

    url = start(config, address=address)
    app_name = client_config(config).models.serve.app  # type: ignore[union-attr]
    sys.stdout.write(f"VisChain is serving at {url} (Serve application '{app_name}')\n")
    sys.stdout.flush()
    if detach and not _own_cluster.is_set():
        return 0
    if detach:
        sys.stdout.write("not detaching: the Ray cluster lives in this process (ray start one)\n")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.delete(app_name)
    return 0
