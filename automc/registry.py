"""One plugin registry keyed by entry-point groups.

Built-ins and third-party packages register the same way, under ``[project.entry-points]``::

    [project.entry-points."automc.device_profiles"]
    my-board = "mypkg.profiles:MyBoardProfile"

Names are resolved lazily (nothing is imported until used). A name that contains ``:`` is an
explicit ``module:attribute`` reference to the user's own code and is imported directly; it is
the only way user code is reached besides entry points. Objects can also be registered in
process with :meth:`Registry.register` (handy in notebooks and tests).

Every plugin is made by :func:`create`: resolve the name, check the object against the group's
contract (a base class, or "callable" for function plugins such as rewards and models), bind
the user's settings to its signature — an unknown or missing key is one line listing the valid
keys, taken from the signature — and call it. Errors raised *inside* a constructor are bugs
of the plugin (or input it validates itself with :class:`UserError`) and pass through.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from automc.errors import UserError, user_code_error

GROUPS: dict[str, str] = {
    "automc.agents": "agent",
    "automc.search_spaces": "search space",
    "automc.device_profiles": "device profile",
    "automc.rewards": "reward",
    "automc.models": "model",
    "automc.datasets": "dataset",
}


def load_object(reference: str, *, what: str = "object") -> Any:
    """Import ``module.path:attr.path`` and return the attribute.

    Raises :class:`UserError` with the fix when the module or attribute is missing.
    """
    module_name, sep, attr_path = reference.partition(":")
    if not sep or not module_name or not attr_path:
        raise UserError(f"{what} reference {reference!r} must look like 'package.module:function'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise UserError(
                f"cannot import module {module_name!r} named in {what} {reference!r}: check the "
                "spelling and that it is installed or on PYTHONPATH"
            ) from None
        raise user_code_error(f"module {module_name!r} (named in {what} {reference!r}) imports {exc.name!r}, which is not installed", exc) from exc
    except Exception as exc:  # noqa: BLE001 - the user's module failed while importing
        raise user_code_error(f"importing module {module_name!r} (named in {what} {reference!r}) failed", exc) from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UserError(
                f"module {module_name!r} has no attribute {attr_path!r} (from {what} {reference!r}): "
                "check the name after the ':'"
            ) from None
    return obj


@functools.cache
def _group_entry_points(group: str) -> tuple[EntryPoint, ...]:
    return tuple(entry_points(group=group))


class Registry:
    """Plugins of one kind, found through the entry-point group ``group``."""

    def __init__(self, group: str, kind: str | None = None) -> None:
        self.group = group
        self.kind = kind or GROUPS.get(group, group)
        self._local: dict[str, Any] = {}
        self.contract: type | None = None  # set by the module that defines the contract

    def set_contract(self, contract: type) -> Registry:
        """Plugins of this group must be subclasses of ``contract`` (function groups set none)."""
        self.contract = contract
        return self

    def register(self, name: str, obj: Any, *, overwrite: bool = False) -> None:
        """Register ``obj`` under ``name`` for this process only."""
        if not overwrite and name in self.names():
            raise UserError(f"{self.kind} {name!r} is already registered; pass overwrite=True to replace it")
        self._local[name] = obj

    def unregister(self, name: str) -> None:
        self._local.pop(name, None)

    def _entry_points(self) -> dict[str, list[EntryPoint]]:
        found: dict[str, list[EntryPoint]] = {}
        for ep in _group_entry_points(self.group):
            found.setdefault(ep.name, [])
            if all(e.value != ep.value for e in found[ep.name]):
                found[ep.name].append(ep)
        return found

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(set(self._entry_points()) | set(self._local))

    def describe(self) -> dict[str, str]:
        """name → where it comes from (``module:attr``), without importing anything."""
        out = {name: eps[0].value for name, eps in self._entry_points().items()}
        for name, obj in self._local.items():
            out[name] = f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', repr(obj))}"
        return dict(sorted(out.items()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (":" in name or name in self.names())

    def get(self, name: str) -> Any:
        """Return the plugin object registered as ``name`` (or the ``module:attr`` it names)."""
        if not isinstance(name, str) or not name:
            raise UserError(f"{self.kind} name must be a non-empty string, got {name!r}")
        if name in self._local:
            return self._local[name]
        if ":" in name:
            return load_object(name, what=self.kind)
        eps = self._entry_points().get(name)
        if not eps:
            valid = ", ".join(self.names()) or "(none installed)"
            raise UserError(
                f"unknown {self.kind} {name!r}; valid names: {valid} "
                f"(or give your own as 'package.module:function')"
            )
        if len(eps) > 1:
            where = ", ".join(ep.value for ep in eps)
            raise UserError(
                f"{self.kind} name {name!r} is registered by several packages ({where}): "
                "uninstall one, or use the explicit 'module:function' form"
            )
        try:
            return eps[0].load()
        except (ImportError, AttributeError) as exc:
            raise UserError(
                f"{self.kind} {name!r} is registered as {eps[0].value!r} but cannot be loaded ({exc}): "
                "reinstall the package that provides it"
            ) from None


_REGISTRIES: dict[str, Registry] = {}


def registry(group: str) -> Registry:
    """The process-wide :class:`Registry` for ``group`` (one of :data:`GROUPS`)."""
    if group not in GROUPS:
        raise ValueError(f"unknown entry-point group {group!r}; valid groups: {', '.join(GROUPS)}")
    if group not in _REGISTRIES:
        _REGISTRIES[group] = Registry(group)
    return _REGISTRIES[group]


def create(
    group: str,
    name: str,
    *inputs: Any,
    config: Mapping[str, Any] | None = None,
    optional: Mapping[str, Any] | None = None,
    partial: bool = False,
    **named: Any,
) -> Any:
    """Resolve ``name`` in ``group``, check it against the contract and build it.

    ``inputs`` / ``named`` are what automc itself passes (a space's model, an agent's
    objectives and constraints, …); ``config`` is the user's settings for the plugin. An
    ``optional`` input is passed only when the signature accepts it and ``config`` does not set
    it (a model factory's ``num_classes``). With ``partial`` (function plugins called later
    with leading arguments, like a reward's metrics) the bound function is returned instead of
    being called. Key mistakes are one :class:`UserError` naming the valid keys; an exception
    raised while constructing propagates unchanged (a bug, with its traceback).
    """
    reg = registry(group)
    obj = reg.get(name)
    if reg.contract is not None:
        if not (isinstance(obj, type) and issubclass(obj, reg.contract)):
            where = f"{reg.contract.__module__}.{reg.contract.__qualname__}"
            raise UserError(f"{reg.kind} {name!r} resolves to {obj!r}, which is not a {where} subclass: point the name at one", field=reg.kind)
    elif not callable(obj):
        raise UserError(f"{reg.kind} {name!r} resolves to {type(obj).__name__}, which is not callable: point the name at a function", field=reg.kind)
    settings = dict(config or {})
    taken = sorted(set(settings) & set(named))
    if taken:
        raise UserError(f"{reg.kind} {name!r}: {', '.join(taken)} is set by automc, not in the {reg.kind}'s settings: remove it", field=taken[0])
    kwargs = {**named, **settings}
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):  # some builtins have no signature: call and let it decide
        sig = None
    if sig is not None:
        params = sig.parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        for key, value in (optional or {}).items():
            if value is not None and key not in kwargs and (takes_any or key in params):
                kwargs[key] = value
        leading = (None,) if partial else ()  # stands for the argument given at call time
        try:
            sig.bind(*leading, *inputs, **kwargs)
        except TypeError as exc:
            raise UserError(_binding_message(reg.kind, name, sig, len(leading) + len(inputs), set(named), settings, exc), field=reg.kind) from None
    if partial:
        bound = functools.partial(obj, *inputs, **kwargs)
        functools.update_wrapper(bound, obj)
        return bound
    return obj(*inputs, **kwargs)


def settings_of(sig: inspect.Signature, positional: int, automc_keys: set[str]) -> list[str]:
    """The keys a user may set: keyword parameters after the ``positional`` ones automc fills."""
    out = []
    for i, (key, p) in enumerate(sig.parameters.items()):
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or key in automc_keys or key == "self":
            continue
        if p.kind is p.POSITIONAL_ONLY or (p.kind is p.POSITIONAL_OR_KEYWORD and i < positional):
            continue
        out.append(key)
    return out


def _binding_message(kind: str, name: str, sig: inspect.Signature, positional: int, automc_keys: set[str], settings: Mapping[str, Any], exc: TypeError) -> str:
    valid = settings_of(sig, positional, automc_keys)
    listed = ", ".join(valid) or "(none)"
    unknown = [k for k in settings if k not in sig.parameters]
    if unknown:
        return f"{kind} {name!r} has no setting {unknown[0]!r}; valid settings: {listed}"
    missing = [k for k, p in sig.parameters.items() if p.default is p.empty and p.kind is p.KEYWORD_ONLY and k not in settings and k not in automc_keys]
    if missing:
        return f"{kind} {name!r} needs setting {missing[0]!r}; valid settings: {listed}"
    return f"{kind} {name!r} cannot take its settings {sorted(settings)} ({exc}); valid settings: {listed}"


def refresh() -> None:
    """Forget cached entry points (after installing a plugin package in a running process)."""
    _group_entry_points.cache_clear()
