"""The web page (Gradio) and the HTTP API (FastAPI, under /api) over the same loaded models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
from fastapi import FastAPI

from transferlab.data.images import MAX_PIXELS, UnreadableImageError
from transferlab.inference.predictor import enlarged
from transferlab.inference.serve.api import build_api
from transferlab.inference.serve.body_limit import BodyLimit
from transferlab.inference.serve.models import TOP_K, ServedModel, decode
from transferlab.unknown import UNKNOWN

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
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)  # the API has its own
    app.mount("/api", build_api(models, max_upload_bytes, max_pixels))  # before the page's "/"
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
