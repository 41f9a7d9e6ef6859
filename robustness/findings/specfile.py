"""A study's spec as a file: ``spec.json`` beside the results, read back, and compared with another run's.

:func:`spec_dict` turns a :class:`~robustness.findings.spec.StudySpec` into plain JSON values, each setting once
(what the study sets from the rest, :data:`DERIVED`, and where it runs, :data:`PLACE_FIELDS`, are left out);
:func:`spec_from_dict` builds it back, with one :class:`InvalidArgument` per bad setting. A run into a folder whose
``spec.json`` differs is refused, naming the first setting that differs (:func:`claim_folder`).
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

from ..attacks import FGSM, PGD
from ..errors import InvalidArgument
from ..files import load_json, save_json
from .spec import StudySpec

# Fields of the nested objects that say where or on what a run computes: the run's Place sets them.
PLACE_FIELDS = ("models_root", "data_root", "plots_root", "device", "download", "source", "recheck_of")
SPEC_FILE = "spec.json"
# Settings of nested objects that the study sets from the rest of the spec: the model (train.arch, train.dataset),
# the checkpoints swept, the standard regime (train.adv), the retraining's scoring (the spec's), labels and epoch.
DERIVED = {"train": ("adv",), "sweep": ("arch", "dataset", "inits", "epochs"),
           "retraining": ("arch", "dataset", "kind", "score", "epoch", "attack_tag", "scoring", "test_subset")}



def spec_dict(spec: StudySpec) -> dict[str, Any]:
    """The spec as plain JSON values (nested objects as objects; the attack by its class name), each setting
    once: what the steps set from the rest (:data:`DERIVED`) is left out, and so are the sources when every regime
    is trained."""
    data = _plain(spec)
    for part, names in DERIVED.items():
        data[part] = {k: v for k, v in data[part].items() if k not in names}
    if not spec.sources.given:  # a study that trains both regimes: its file is as it was before sources existed
        del data["sources"]
    return data

def spec_from_dict(data: dict[str, Any]) -> StudySpec:
    """The spec :func:`spec_dict` gave; an unknown or missing setting is one :class:`InvalidArgument`."""
    data = dict(data)
    for part, names in DERIVED.items():
        if not isinstance(data.get(part), dict):
            raise InvalidArgument(f"the spec has no {part} settings (an object): pass a spec.json a run wrote")
        if given := set(data[part]) & set(names):
            raise InvalidArgument(f"{', '.join(f'{part}.{g}' for g in sorted(given))} follow from the rest of "
                                  f"the spec: leave them out")
    train = data["train"]
    model = {"arch": train.get("arch"), "dataset": train.get("dataset")}
    data["sweep"] = {**data["sweep"], **model}
    data["retraining"] = {**data["retraining"], **model, "kind": "highpass", "score": "adversarial",
                          "scoring": data.get("scoring")}
    return _build(StudySpec, data, "spec")



def save_spec(spec: StudySpec, folder: str | Path) -> Path:
    """Write ``spec`` as ``<folder>/spec.json`` (atomically); its path."""
    return save_json(spec_dict(spec), Path(folder) / SPEC_FILE)


def load_spec(path: str | Path) -> StudySpec:
    """The spec in a ``spec.json`` file (or a folder holding one)."""
    path = Path(path)
    path = path / SPEC_FILE if path.is_dir() else path
    if not path.is_file():
        raise InvalidArgument(f"no spec file at {path}: pass the spec.json a run wrote (beside its results)")
    return spec_from_dict(load_json(path))


def differences(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted names of the settings that differ between two :func:`spec_dict` values."""
    found = []
    for key in sorted(set(a) | set(b)):
        name = f"{prefix}{key}"
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            found += differences(x, y, f"{name}.")
        elif x != y:
            found.append(name)
    return found


def claim_folder(spec: StudySpec, folder: str | Path, what: str) -> None:
    """Record ``spec`` in ``folder`` (``what`` says which folder, for the error), or, when the folder already holds
    another spec, refuse: two studies never share a folder."""
    path = Path(folder) / SPEC_FILE
    mine = spec_dict(spec)
    if path.is_file():
        theirs = load_json(path)
        changed = [x for x in differences(theirs, mine) if x != "preset"]
        if changed:
            name = changed[0]
            raise InvalidArgument(
                f"{path.parent} holds a study with other settings ({len(changed)} differ, first {name}: "
                f"{_lookup(theirs, name)!r} there, {_lookup(mine, name)!r} in this run): give this run another "
                f"{what}, or resume that study with --spec {path}")
        if theirs == mine:
            return
    save_spec(spec, folder)


def _lookup(data: dict[str, Any], dotted: str) -> Any:
    for key in dotted.split("."):
        data = data.get(key) if isinstance(data, dict) else None
    return data


def _plain(value: Any) -> Any:
    """A value as JSON: a dataclass as an object of its fields (less :data:`PLACE_FIELDS`), an attack with its
    class name, a tuple as a list."""
    if is_dataclass(value):
        found = {f.name: _plain(getattr(value, f.name)) for f in fields(value) if f.name not in PLACE_FIELDS}
        return {"class": type(value).__name__, **found} if isinstance(value, (FGSM, PGD)) else found
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


ATTACK_CLASSES = {"FGSM": FGSM, "PGD": PGD}


def _build(kind: Any, data: Any, name: str) -> Any:
    """``data`` (from :func:`_plain`) as a value of type ``kind``; ``name`` is its dotted setting name."""
    if kind is Any:  # the sweep's attack
        if not isinstance(data, dict) or data.get("class") not in ATTACK_CLASSES:
            raise InvalidArgument(f"{name} must be an attack object with class FGSM or PGD, got {data!r}")
        return ATTACK_CLASSES[data["class"]](**{k: v for k, v in data.items() if k != "class"})
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        kind = next(a for a in args if a is not type(None))
        return _build(kind, data, name)
    if is_dataclass(kind):
        if not isinstance(data, dict):
            raise InvalidArgument(f"{name} must be an object of {kind.__name__}'s settings, got {data!r}")
        hints = typing.get_type_hints(kind)
        known = {f.name for f in fields(kind) if f.init}
        if unknown := set(data) - known:
            raise InvalidArgument(f"unknown setting(s) {', '.join(f'{name}.{u}' for u in sorted(unknown))}: "
                                  f"{kind.__name__} has {', '.join(sorted(known))}")
        try:
            return kind(**{k: _build(hints[k], v, f"{name}.{k}") for k, v in data.items()})
        except TypeError as error:  # a required setting is missing
            raise InvalidArgument(f"{name}: {error}") from None
    if origin is tuple and isinstance(data, list):
        item = args[0] if args else Any
        return tuple(data) if item is Any or not is_dataclass(item) else tuple(_build(item, v, name) for v in data)
    return data


def spec_text(spec: StudySpec) -> str:
    """The spec as its file holds it (indented JSON), for printing."""
    return json.dumps(spec_dict(spec), indent=1)
