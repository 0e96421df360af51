"""One exception hierarchy: every error Stopper defines is a `StopperError`, defined in
`stopper.errors` (or, for the domain, `stopper.domain.errors`) and drawn in its docstring."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import stopper
import stopper.errors
from stopper.errors import StopperError

_HOMES = {"stopper.errors", "stopper.domain.errors"}


def _stopper_exceptions() -> set[type[BaseException]]:
    found: set[type[BaseException]] = set()
    for module_info in pkgutil.walk_packages(stopper.__path__, "stopper."):
        module = importlib.import_module(module_info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__.startswith("stopper."):
                found.add(value)
    return found


def test_every_error_stopper_defines_is_in_the_drawn_hierarchy() -> None:
    drawing = stopper.errors.__doc__ or ""
    exceptions = _stopper_exceptions()
    assert len(exceptions) > 20  # the walk did find them
    for error in exceptions:
        assert issubclass(error, StopperError), error
        assert error.__module__ in _HOMES, f"{error.__qualname__} defined in {error.__module__}"
        assert f" {error.__name__} " in drawing, f"{error.__name__} is not drawn"
        assert error.__name__ in stopper.errors.__all__, error
