"""The TriCo network (Sec. 3.1 of the paper) as ordinary ``nn.Module``s; see ``docs/trico_model.md``."""

from .network import DEFAULT_WIDTHS, TriCo, TriCoOutput, build_model

__all__ = ["DEFAULT_WIDTHS", "TriCo", "TriCoOutput", "build_model"]
