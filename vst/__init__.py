"""vst: versioned, deduplicated, encrypted storage with git's interface."""

__version__ = "0.1.0"
