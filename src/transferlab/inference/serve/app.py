"""The web page (Gradio) and the HTTP API (FastAPI) over the same loaded models.

POST /api/predict with a multipart ``file`` -> {"models": [{model, label, confidence, top}]}.
Errors are JSON with a one-line reason: 400 not an image, 413 too large.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from fastapi import FastAPI, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse

from transferlab.data.images import MAX_PIXELS, UnreadableImageError
from transferlab.inference.predictor import enlarged
from transferlab.inference.serve.body_limit import BodyLimit
from transferlab.inference.serve.models import ServedModel, decode
from transferlab.unknown import UNKNOWN

TOP_K = 5
# small uploads (a 28 px garment) fill the preview box, sharp, instead of a few dozen pixels
PAGE_CSS = (
    "#upload img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }"
)


def build_app(
    models: list[ServedModel],
    examples: list[Path],
    max_upload_bytes: int,
    max_pixels: int = MAX_PIXELS,
) -> FastAPI:
    app = FastAPI(title="transferlab", docs_url="/api/docs")

    @app.exception_handler(HTTPException)
    async def json_error(_: Request, err: HTTPException) -> JSONResponse:
        return JSONResponse({"error": err.detail}, status_code=err.status_code)

    # a plain def: FastAPI runs it in its thread pool, so inference never blocks the event loop
    @app.post("/api/predict")
    def predict(file: UploadFile) -> dict[str, Any]:
        data = file.file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise HTTPException(
                413, f"{file.filename}: larger than the {max_upload_bytes} byte upload limit"
            )
        image = _decode_bytes(data, file.filename or "upload", max_pixels)
        return {"models": [m.answer(image, TOP_K) for m in models]}

    @app.get("/api/models")
    async def list_models() -> dict[str, Any]:
        return {
            "models": [
                {"name": m.name, "classes": m.predictor.classes, "threshold": m.predictor.threshold}
                for m in models
            ]
        }

    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes, paths=["/api/predict"])
    page = build_page(models, examples, max_pixels)
    return gr.mount_gradio_app(
        app, page, path="/", max_file_size=max_upload_bytes, footer_links=["api"]
    )


def build_page(models: list[ServedModel], examples: list[Path], max_pixels: int) -> gr.Blocks:
    """One upload; per model a top-5 label, a Grad-CAM overlay and the unknown verdict."""
    with gr.Blocks(title="transferlab: compare models", css=PAGE_CSS) as page:
        gr.Markdown("## Compare models\nUpload an image (or pick an example from the test split).")
        with gr.Row():
            upload = gr.Image(type="filepath", label="image", elem_id="upload", height=320)
        outputs: list[gr.components.Component] = []
        with gr.Row():
            for i, model in enumerate(models):
                with gr.Column():
                    gr.Markdown(f"### {model.name}")
                    outputs.append(gr.Markdown(elem_id=f"verdict-{i}"))
                    outputs.append(
                        gr.Label(num_top_classes=TOP_K, label="top-5", elem_id=f"label-{i}")
                    )
                    outputs.append(gr.Image(label="Grad-CAM", elem_id=f"cam-{i}", height=240))
        if examples:
            gr.Examples([[str(p)] for p in examples], inputs=[upload], label="test images")

        def compare(path: str | None) -> list[Any]:
            if path is None:
                return [None] * len(outputs)
            try:
                image = decode(path, max_pixels)
            except UnreadableImageError as err:
                raise gr.Error(str(err).split(": ", 1)[-1]) from None
            values: list[Any] = []
            for model in models:
                answer = model.answer(image, TOP_K)
                verdict = "**unknown**" if answer["label"] == UNKNOWN else f"**{answer['label']}**"
                values += [
                    f"prediction: {verdict} (confidence {answer['confidence']:.3f}, threshold {model.predictor.threshold})",
                    {t["class"]: t["probability"] for t in answer["top"]},
                    enlarged(model.predictor.explain([image])[0]),
                ]
            return values

        upload.change(compare, inputs=upload, outputs=outputs, api_name="compare")
    return page


def _decode_bytes(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    with tempfile.NamedTemporaryFile(suffix=Path(name).suffix) as tmp:
        tmp.write(data)
        tmp.flush()
        try:
            return decode(tmp.name, max_pixels)
        except UnreadableImageError as err:
            reason = str(err).split(": ", 1)[-1]
            status = 413 if "decompression bomb" in reason else 400
            raise HTTPException(status, f"{name}: {reason}") from None
