"""sipf: self-iterative process feedback for small language models."""

__version__ = "0.1.0"
