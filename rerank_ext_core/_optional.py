"""Import heavy optional dependencies at first use, with an error that says what is really wrong.

Three cases, three messages:

* the package is not installed: name the extra that installs it;
* it is installed but a package it needs is not: name that package and the extra;
* it is installed but fails to import (most often a release of one of its own dependencies that
  it does not work with, e.g. FlagEmbedding 1.4.2 with transformers 5.24): name the package, its
  installed version, the real error, and the versions this project supports.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType

__all__ = [
    "BrokenDependencyError",
    "MissingDependencyError",
    "first_loadable",
    "require",
    "supported_range",
]

logger = logging.getLogger(__name__)

_DISTRIBUTION = "rerank-ext"

_HIDDEN_WHILE_IMPORTING: dict[str, tuple[str, ...]] = {
    # bm25s imports jax when it is installed and runs a jax op at import: jax then takes 75% of
    # every GPU's memory, and a second such process fails to start. Our BM25 uses bm25s' numpy
    # path only (the tested one), so bm25s is imported as if jax were absent.
    "bm25s": ("jax",),
}


@contextmanager
def _hidden(modules: Sequence[str]) -> Iterator[None]:
    """``modules`` look uninstalled inside the block (unless already imported); afterwards the
    program can import them as usual."""
    hidden = [name for name in modules if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # "import name" raises ImportError
    try:
        yield
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


class MissingDependencyError(ImportError):
    """The package (or one it needs) is not installed."""


class BrokenDependencyError(ImportError):
    """The package is installed but fails to import."""


def _top_level(module: str) -> str:
    return module.partition(".")[0]


def _is_installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(_top_level(module)) is not None
    except (ImportError, ValueError):  # a None entry in sys.modules, a broken parent package
        return False


def _installed_version(module: str) -> str | None:
    top = _top_level(module)
    names = importlib.metadata.packages_distributions().get(top, [top])
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def supported_range(extra: str) -> dict[str, str]:
    """``{distribution: specifier}`` of what the installed rerank-ext declares for ``extra``."""
    try:
        requirements = importlib.metadata.requires(_DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return {}
    ranges: dict[str, str] = {}
    for line in requirements:
        requirement, _, marker = line.partition(";")
        if re.search(rf"""extra\s*==\s*["']{re.escape(extra)}["']""", marker) is None:
            continue
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*)", requirement)
        if match and not match.group(1).startswith(_DISTRIBUTION):
            ranges[_normalise(match.group(1))] = match.group(2).strip() or "any version"
    return ranges


def _broken_message(module: str, feature: str, extra: str, exc: BaseException) -> str:
    version = _installed_version(module)
    culprit = getattr(exc, "name", None) if isinstance(exc, ImportError) else None
    lines = [
        f"{feature} needs the package {_top_level(module)!r}, which is installed "
        f"(version {version or 'unknown'}) but fails to import: {type(exc).__name__}: {exc}"
    ]
    involved = {_normalise(_top_level(module))}
    if culprit and _top_level(culprit) != _top_level(module):
        culprit_version = _installed_version(culprit)
        if culprit_version is not None:
            lines.append(f"It fails inside {_top_level(culprit)!r}, version {culprit_version} installed.")
            involved.add(_normalise(_top_level(culprit)))
    ranges = supported_range(extra)
    shown = {name: spec for name, spec in ranges.items() if name in involved} or ranges
    if shown:
        supported = ", ".join(f"{name} {spec}" for name, spec in sorted(shown.items()))
        lines.append(f"rerank-ext[{extra}] supports: {supported}.")
    lines.append(
        f"Install a supported set: pip install 'rerank-ext[{extra}]' with those versions "
        "(or, in this repository, `make setup`, which installs the tested lock file)."
    )
    return " ".join(lines)


def require(module: str, *, feature: str, extra: str) -> ModuleType:
    """Import ``module`` or raise an ImportError that tells the truth about why it can't be.

    Raises :class:`MissingDependencyError` when ``module`` or a package it needs is not installed,
    and :class:`BrokenDependencyError` when it is installed but importing it fails. ``extra`` must
    be the name of an extra declared in pyproject.toml (a test checks this).
    """
    not_installed = (
        f"{feature} needs the package {module!r}, which is not installed. "
        f"Install it with: pip install 'rerank-ext[{extra}]'"
    )
    if not _is_installed(module):
        raise MissingDependencyError(not_installed) from None
    try:
        # Once the package is imported, hiding would change nothing.
        hide = () if _top_level(module) in sys.modules else _HIDDEN_WHILE_IMPORTING.get(_top_level(module), ())
        with _hidden(hide):
            return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module == missing or module.startswith(f"{missing}.")):
            raise MissingDependencyError(not_installed) from None
        if missing and not _is_installed(missing):
            msg = (
                f"{feature} needs the package {_top_level(module)!r}, which is installed "
                f"(version {_installed_version(module) or 'unknown'}), but a package it imports, "
                f"{_top_level(missing)!r}, is not. Install it with: pip install 'rerank-ext[{extra}]' "
                f"(or pip install {_top_level(missing)})"
            )
            raise MissingDependencyError(msg) from None
        raise BrokenDependencyError(_broken_message(module, feature, extra, exc)) from exc
    except Exception as exc:  # noqa: BLE001 - any failure inside a third-party import is "broken"
        raise BrokenDependencyError(_broken_message(module, feature, extra, exc)) from exc


def first_loadable(choices: Sequence[tuple[str, str, str]], *, feature: str) -> tuple[str, ModuleType]:
    """The first of ``(backend, module, extra)`` whose module imports, for ``backend="auto"``.

    A backend that is installed but broken is skipped with a warning that says why; one that is
    not installed is skipped quietly. When none loads, the error lists every reason.
    """
    reasons: list[str] = []
    broken = False
    for backend, module, extra in choices:
        try:
            return backend, require(module, feature=f"{feature}(backend={backend!r})", extra=extra)
        except BrokenDependencyError as exc:
            logger.warning("backend='auto' skips %r: %s", backend, exc)
            reasons.append(str(exc))
            broken = True
        except MissingDependencyError as exc:
            reasons.append(str(exc))
    tried = ", ".join(repr(backend) for backend, _, _ in choices)
    msg = f"{feature}(backend='auto') found no backend that loads (tried {tried}). " + " | ".join(reasons)
    raise (BrokenDependencyError if broken else MissingDependencyError)(msg)
