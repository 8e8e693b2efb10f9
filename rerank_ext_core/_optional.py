"""Import heavy optional dependencies at first use, with an actionable install hint."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]


def require(module: str, *, feature: str, extra: str) -> ModuleType:
    """Import ``module`` or raise an ImportError that names the feature and the extra to install.

    ``extra`` must be the name of an extra declared in pyproject.toml (a test checks this).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or module
        msg = (
            f"{feature} needs the package {missing!r}, which is not installed. "
            f"Install it with: pip install 'rerank-ext[{extra}]'"
        )
        raise ImportError(msg) from None
