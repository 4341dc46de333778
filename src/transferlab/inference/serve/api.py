"""The JSON HTTP API: its own FastAPI app, mounted at /api beside the web page.

POST /api/predict with a multipart ``file`` -> {"models": [{model, label, confidence, top}]};
GET /api/models -> names, classes, thresholds. Every error is JSON ``{"error": "<one line>"}``:
400 not an image, 413 too large, 422 no ``file`` part, 404/405 unknown path or method.
Its own app, not routes on the page's app, so that an unknown path or method under /api gets
the API's JSON answer instead of falling through to the page's 404, and its OpenAPI schema
(/api/openapi.json, docs at /api/docs) lists exactly what it answers, for clients and fuzzers.
"""

from __future__ import annotations

import tempfile
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from transferlab.data.images import UnreadableImageError
from transferlab.inference.serve.models import TOP_K, ServedModel, decode


class Error(BaseModel):
    error: str = Field(description="what was wrong with the request, in one line")


class Probability(BaseModel):
    class_: str = Field(alias="class")
    probability: float


class Answer(BaseModel):
    model: str
    label: str = Field(description="the top class, or 'unknown' at or under the threshold")
    confidence: float
    top: list[Probability]


class Prediction(BaseModel):
    models: list[Answer]


class ModelInfo(BaseModel):
    name: str
    classes: list[str]
    threshold: float


class Models(BaseModel):
    models: list[ModelInfo]


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Error, "description": "not an image, or not a multipart body"},
    413: {"model": Error, "description": "over the upload limit, or a decompression bomb"},
    422: {"model": Error, "description": "no `file` part in the form"},
}


def build_api(models: list[ServedModel], max_upload_bytes: int, max_pixels: int) -> FastAPI:
    api = FastAPI(title="transferlab", docs_url="/docs", redoc_url=None)

    @api.exception_handler(StarletteHTTPException)
    async def json_error(_: Request, err: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": err.detail}, err.status_code, headers=err.headers)

    @api.exception_handler(RequestValidationError)
    async def invalid_form(_: Request, err: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in err.errors()
        )
        return JSONResponse({"error": problems}, 422)

    # a plain def: FastAPI runs it in its thread pool, so inference never blocks the event loop
    @api.post("/predict", response_model=Prediction, responses=ERRORS)
    def predict(file: UploadFile) -> dict[str, Any]:
        data = file.file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise HTTPException(
                413, f"{file.filename}: larger than the {max_upload_bytes} byte upload limit"
            )
        image = _decode_bytes(data, file.filename or "upload", max_pixels)
        return {"models": [m.answer(image, TOP_K) for m in models]}

    @api.get("/models", response_model=Models)
    async def list_models() -> dict[str, Any]:
        return {
            "models": [
                {"name": m.name, "classes": m.predictor.classes, "threshold": m.predictor.threshold}
                for m in models
            ]
        }

    return api


def _decode_bytes(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    # no suffix from the client's file name: Pillow reads the format from the bytes, and a long
    # or odd name would make the temp file's name invalid (a 500 instead of an answer)
    with tempfile.NamedTemporaryFile() as tmp:
        tmp.write(data)
        tmp.flush()
        try:
            return decode(tmp.name, max_pixels)
        except UnreadableImageError as err:
            reason = str(err).split(": ", 1)[-1]
            status = 413 if "decompression bomb" in reason else 400
            raise HTTPException(status, f"{name}: {reason}") from None
