"""A base for dataclass settings that are saved as JSON with a model and read back strictly."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, TypeVar

S = TypeVar("S", bound="JsonSettings")


class JsonSettings:
    """to_dict / from_dict for a @dataclass subclass; from_dict refuses keys the class does not know, so a
    file written by another version or another model type fails with a message instead of loading wrongly.

    Subclasses set `settings_label`, the words naming their keys in that message ("model config keys").
    """

    settings_label = "settings"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls: type[S], d: dict[str, Any]) -> S:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown {cls.settings_label} {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)
