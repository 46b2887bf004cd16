"""TriCo example: low-light, low-resolution image enhancement trained as a tri-level problem."""

from .model import build_model

__all__ = ["build_model"]
