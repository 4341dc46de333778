"""Deployment-side code: runs with onnxruntime, numpy and OpenCV only — no torch import."""
