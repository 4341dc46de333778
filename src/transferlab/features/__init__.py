"""Frozen features: extracted once per backbone, cached on disk, scored before any training."""
