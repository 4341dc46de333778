"""Evaluation of a trained run: metrics breakdowns, figures, Grad-CAM, the eval report."""
