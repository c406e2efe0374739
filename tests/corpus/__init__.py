"""Image corpus for `stylecore.images.load_image`: see `corpus.generate` for the API."""

from .generate import ACCEPTED, REJECTED, Case, write_corpus

__all__ = ["ACCEPTED", "REJECTED", "Case", "write_corpus"]
