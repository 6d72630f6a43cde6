"""Plumbing: one module per low-level verb, each a typed function that does the work and
returns data. Formats printed from these results are stable (docs/cli/)."""
