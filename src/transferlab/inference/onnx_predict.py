"""Torch-free prediction for deployment: onnxruntime + the exported model.onnx.

python -m transferlab.inference.onnx_predict model.onnx photos/ --output preds.csv [--threshold 0.6]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from transferlab.data.images import UnreadableImageError, find_images, read_image
from transferlab.errors import ConfigError
from transferlab.inference.onnx_model import OnnxClassifier
from transferlab.tables import write_csv
from transferlab.unknown import decide


def predict_folder(
    model: OnnxClassifier, source: Path, threshold: float = 0.0, top_k: int = 3
) -> list[dict]:
    """One row per image file (a folder recursively, or a single file); broken files get an error."""
    paths = find_images(source) if source.is_dir() else [source]
    rows = []
    for path in paths:
        try:
            probs = model.predict(read_image(path))
        except UnreadableImageError as err:
            rows.append(
                {
                    "path": str(path),
                    "prediction": "",
                    "confidence": "",
                    "top3": "",
                    "error": str(err).split(": ", 1)[-1],
                }
            )
            continue
        order = np.argsort(-probs)[:top_k]
        best = float(probs[order[0]])
        rows.append(
            {
                "path": str(path),
                "prediction": decide([model.classes[order[0]]], np.array([best]), threshold)[0],
                "confidence": round(best, 6),
                "top3": ";".join(f"{model.classes[i]}:{probs[i]:.4f}" for i in order),
                "error": "",
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", type=Path, help="model.onnx written by export.py")
    parser.add_argument("input", type=Path, help="an image file or a folder (searched recursively)")
    parser.add_argument("--output", type=Path, default=Path("predictions.csv"))
    parser.add_argument(
        "--threshold", type=float, default=0.0, help="below this top probability: 'unknown'"
    )
    args = parser.parse_args(argv)
    if not args.input.exists():
        parser.error(f"{args.input}: no such file or folder")
    try:
        rows = predict_folder(OnnxClassifier(args.model), args.input, args.threshold)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    write_csv(rows, args.output, columns=["path", "prediction", "confidence", "top3", "error"])
    broken = [r for r in rows if r["error"]]
    for row in broken:
        print(f"skipped {row['path']}: {row['error']}", file=sys.stderr)
    print(f"{len(rows) - len(broken)} images classified, {len(broken)} unreadable -> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
