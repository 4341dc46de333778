"""Sweeps: one GPU per parallel job, and the report that compares a sweep's runs from their files."""
