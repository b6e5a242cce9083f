"""Old import paths of modules that moved when the package was split into layers, kept importable.

``import fastgru.functional`` and ``fastgru.reference`` / ``fastgru.checkpoint`` / ``fastgru.export`` stay
public names without a warning. The other old paths (``fastgru.tasks.forecast``, ``fastgru.models``,
``fastgru.data``, ...) import the module at its new place and warn once with ``DeprecationWarning``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings

PUBLIC = {
    "fastgru.functional": "fastgru.core.functional",
    "fastgru.reference": "fastgru.core.reference",
    "fastgru.checkpoint": "fastgru.io.checkpoint",
    "fastgru.export": "fastgru.io.export",
}
DEPRECATED = {
    "fastgru.validation": "fastgru.core.validation",
    "fastgru.errors": "fastgru.core.errors",
    "fastgru.atomic": "fastgru.io.atomic",
    "fastgru.settings": "fastgru.io.settings",
    "fastgru.report": "fastgru.io.markdown",
    "fastgru.scan": "fastgru.mingru.scan",
    "fastgru.mingru_ops": "fastgru.mingru.ops",
    "fastgru.backends.triton_scan": "fastgru.mingru.triton_scan",
    "fastgru.nn.mingru": "fastgru.mingru.module",
    "fastgru.train.checkpoints": "fastgru.train.resume",
    "fastgru.models": "fastgru.train.models",
    "fastgru.tasks._common": "fastgru.apps.common",
    "fastgru.tasks": "fastgru.apps",
    "fastgru.viz": "fastgru.apps.plots",
    "fastgru.forecasting": "fastgru.apps.forecasting",
    "fastgru.charlm": "fastgru.apps.charlm",
    "fastgru.seq2seq": "fastgru.apps.seq2seq",
    "fastgru.speech": "fastgru.apps.speech",
    "fastgru.data": "fastgru.apps.data",
    "fastgru.text_classifier": "fastgru.apps.text_classifier",
    "fastgru.classify_model": "fastgru.apps.classify_model",
    "fastgru.bench": "fastgru.apps.bench",
    "fastgru.cli": "fastgru.apps.cli",
}


def new_name(old: str) -> str | None:
    """The module's current name for an old one (a package's submodules follow it), else None."""
    for table in (PUBLIC, DEPRECATED):
        if old in table:
            return table[old]
    for prefix, target in sorted(DEPRECATED.items(), key=lambda kv: -len(kv[0])):
        if old.startswith(prefix + "."):
            return target + old[len(prefix):]
    return None


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)

    def exec_module(self, module) -> None:
        pass


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith("fastgru."):
            return None
        new = new_name(fullname)
        if new is None:
            return None
        if fullname not in PUBLIC:
            warnings.warn(f"{fullname} moved to {new}; the old path will be removed in a later release",
                          DeprecationWarning, stacklevel=3)
        return importlib.machinery.ModuleSpec(fullname, _Alias(new))


def install() -> None:
    """Put the finder on sys.meta_path once."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())  # before the path finder, which would load a second copy
