"""TriCo's NIQE and BRISQUE: the restoration toolkit's :mod:`examples.restoration.metrics.noref` (old path)."""

from examples.restoration.metrics.noref import (  # noqa: F401
    SVR,
    NoReferenceUnavailable,
    brisque,
    brisque_gray,
    brisque_model_paths,
    load_svr,
    niqe,
    niqe_gray,
    niqe_params_path,
    safe_load_pickle,
)

__all__ = ["niqe", "brisque", "niqe_params_path", "brisque_model_paths", "NoReferenceUnavailable",
           "niqe_gray", "brisque_gray", "load_svr", "safe_load_pickle"]
