"""twinrun: make deep-learning training reproducible, prove it, and measure what is left."""

__version__ = "0.1.0"
