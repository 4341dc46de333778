"""Inference: a trained run answering for new images (Predictor, folders, ONNX, the web server).

``onnx_model`` and ``onnx_predict`` run with onnxruntime and numpy alone: no torch import.
"""
