"""docvlm: batch field extraction from document images with vision-language models."""

__version__ = "0.1.0"
