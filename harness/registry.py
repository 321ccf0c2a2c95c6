"""Names used in YAML and on the command line -> the objects they stand for.

One mechanism serves every such vocabulary (stages, inference engines, parsers, template
tasks, CLI commands): entries are added by name with either the object itself or a lazy
``"module:attribute"`` target that is imported on first use, so listing names costs no heavy
import. A miss raises a :class:`~harness.errors.HarnessError` that names what was asked for,
what is known and the closest match.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator
from importlib import metadata
from typing import Any, Generic, TypeVar

from harness.errors import HarnessError

T = TypeVar("T")


def did_you_mean(word: str, options: list[str] | tuple[str, ...]) -> str:
    """`` (did you mean `x`?)`` for the closest option, or an empty string."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean `{close[0]}`?)" if close else ""


def import_target(target: str) -> Any:
    """The object a ``"module:attribute"`` (or plain ``"module"``) target names."""
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    return obj


class Registry(Generic[T]):
    """Named entries of one kind, imported lazily.

    Args:
        kind: What the entries are, for messages (``"stage"``, ``"engine"``, ...).
        entry_points: An entry-point group whose entries are added as lazy targets when the
            registry is first listed (plugins installed as distributions).
        error: The error raised for an unknown name (a :class:`HarnessError` subclass).
    """

    def __init__(
        self,
        kind: str,
        *,
        entry_points: str | None = None,
        error: type[HarnessError] = HarnessError,
    ) -> None:
        self.kind = kind
        self._error = error
        self._entry_points = entry_points
        self._targets: dict[str, str] = {}
        self._objects: dict[str, T] = {}
        self._plugins_loaded = entry_points is None

    def add(self, name: str, target: str | T) -> None:
        """Register ``name``: an object, or a ``"module:attribute"`` string imported on use."""
        if isinstance(target, str):
            self._targets[name] = target
            self._objects.pop(name, None)
        else:
            self._objects[name] = target

    def remove(self, name: str) -> None:
        """Forget ``name`` (no error when it is not registered)."""
        self._targets.pop(name, None)
        self._objects.pop(name, None)

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in metadata.entry_points(group=self._entry_points or ""):
            if ep.name not in self._targets and ep.name not in self._objects:
                self._targets[ep.name] = ep.value

    def names(self) -> list[str]:
        """Every registered name, in registration order (plugins last)."""
        self._load_plugins()
        return list(dict.fromkeys([*self._objects, *self._targets]))

    def __contains__(self, name: object) -> bool:
        return name in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def get(self, name: str, *, where: str = "") -> T:
        """The entry called ``name``, imported on first use.

        Args:
            name: The name.
            where: Where the name came from (a config key or ``file:line``), for the message.

        Raises:
            HarnessError: Unknown name (the message lists the known ones and a suggestion).
        """
        self._load_plugins()
        if name not in self._objects:
            if name not in self._targets:
                known = self.names()
                at = f"{where}: " if where else ""
                raise self._error(
                    f"{at}unknown {self.kind} `{name}`{did_you_mean(name, known)}; "
                    f"known: {', '.join(known) or '(none)'}"
                )
            self._objects[name] = import_target(self._targets[name])
        return self._objects[name]
