"""Porcelain: one module per user verb, composed from plumbing functions."""
