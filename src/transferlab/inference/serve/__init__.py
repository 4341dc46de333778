"""Serving: a web page comparing up to two checkpoints side by side, and a JSON HTTP API."""
