"""The open keys of ``model/`` checked before any data is read: each value against the type its
model class declares (sizes and counts are whole numbers >= 1, stochastic-depth rates lie in [0, 1),
other numbers are > 0), then the network built once on the ``meta`` device (no memory, no data, a
fraction of a second). A builder that refuses ends in one line naming the keys its failure depends
on: those that, put back to their option's own value (``conf/model/vit.yaml``, ``conf/mask/gmm.yaml``,
the dataset's file), let the network build."""

from __future__ import annotations

import functools
import inspect
import json
import typing
from typing import Optional

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from gmmvit.catalog import CONF
from gmmvit.errors import ConfigError, cause_of

# the model class's arguments that come from the dataset and the mask, not from model/
FROM_ELSEWHERE = ("img_size", "in_chans", "num_classes", "mask")
# the keys of model/ that name the model rather than set one of its arguments
NOT_ARGUMENTS = ("_target_", "name")
# the dataset facts a network is built for
DATASET_FACTS = ("img_size", "channels", "num_classes")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _rule(name: str, hint) -> Optional[tuple[str, typing.Callable]]:
    """(what the key takes, in words; whether a value is one) for a model argument's annotation."""
    optional = type(None) in typing.get_args(hint)
    inner = next((a for a in typing.get_args(hint) if a is not type(None)), hint) if optional else hint
    null = " or null" if optional else ""
    if inner is int:
        return f"a whole number >= 1{null}", lambda v: (v is None and optional) or (_is_int(v) and v >= 1)
    if typing.get_origin(inner) in (list, tuple, typing.get_origin(typing.Sequence)):
        return (f"a list of whole numbers >= 1{null}",
                lambda v: (v is None and optional) or (isinstance(v, (list, tuple)) and len(v) > 0
                                                       and all(_is_int(x) and x >= 1 for x in v)))
    if inner is float and "drop" in name:
        return f"a rate in [0, 1){null}", lambda v: (v is None and optional) or (_is_number(v) and 0 <= v < 1)
    if inner is float:
        return f"a number > 0{null}", lambda v: (v is None and optional) or (_is_number(v) and v > 0)
    if inner is bool:
        return "true or false", lambda v: isinstance(v, bool)
    if inner is str:
        return "a string", lambda v: isinstance(v, str)
    return None


def _model_class(model: DictConfig):
    from hydra.utils import get_class

    return get_class(model._target_)


def key_problem(cfg: DictConfig) -> Optional[str]:
    """The first key of ``model/`` whose value its model class cannot take, as one line."""
    try:
        cls = _model_class(cfg.model)
    except Exception:
        return f"model._target_={cfg.model.get('_target_')}: not a model class gmmvit can import; pick model=NAME"
    hints = typing.get_type_hints(cls.__init__)
    arguments = inspect.signature(cls.__init__).parameters
    takes_any = any(a.kind is inspect.Parameter.VAR_KEYWORD for a in arguments.values())
    values = OmegaConf.to_container(cfg.model, resolve=True)
    for key, value in values.items():
        if key in NOT_ARGUMENTS or key in FROM_ELSEWHERE:
            continue
        if key not in arguments and not takes_any:
            return _not_an_argument(f"model.{key}", value, cfg.model.name)
        if key not in hints:
            continue
        rule = _rule(key, hints[key])
        if rule is None:
            continue
        takes, holds = rule
        if not holds(value):
            shown = _shown(value)
            return f"model.{key}={shown}: model.{key} takes {takes} (model={cfg.model.name})"
    return None


def _shown(value) -> str:
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def _not_an_argument(key: str, value, model: str) -> str:
    """``-m model=vit,swin ++model.depths=[1,1,1]``: the key reaches every job, and ViT takes none.
    The line names the options that have the key, since a sweep sets a key on all its jobs or none."""
    from gmmvit.config.refusals import keys_by_option, suggest

    owners = keys_by_option().get(key) or []
    if not owners:
        return f"{key}={_shown(value)}: model={model} takes no {key}{suggest(key)}; drop it"
    names = ",".join(o.partition("=")[2] for o in owners)
    typed = json.dumps(value, separators=(",", ":")) if isinstance(value, (list, dict)) else value
    return (f"{key}={_shown(value)}: model={model} takes no {key} ({', '.join(owners)} "
            f"{'has' if len(owners) == 1 else 'have'} it); give it only to jobs of those "
            f"(-m model={names} ++{key}={typed}), or drop it")


def _option_defaults(group: str, name: str) -> dict:
    """The values an option's own file (and for a mask, its schema) gives each key of the group."""
    from gmmvit.config.schema import SCHEMAS

    path = CONF / group / f"{name}.yaml"
    own = OmegaConf.load(path) if path.is_file() else OmegaConf.create()
    schema = SCHEMAS.get((f"schema/{group}", name)) or SCHEMAS.get((f"schema/{group}", group))
    base = OmegaConf.structured(schema) if schema is not None else OmegaConf.create()
    with open_dict(own):
        own.pop("defaults", None)
    merged = OmegaConf.merge(OmegaConf.to_container(base), own)
    return OmegaConf.to_container(merged, resolve=False, enum_to_str=True)


def _changed(cfg: DictConfig) -> list[tuple[str, object, object]]:
    """(key, value, the option's own value) for each key of model/, mask/ and the dataset's facts that
    the command line or a preset changed."""
    out = []
    for group, keys in (("model", None), ("mask", None), ("dataset", DATASET_FACTS)):
        node = OmegaConf.to_container(cfg[group], resolve=True, enum_to_str=True)
        own = _option_defaults(group, str(node.get("name")))
        for key in keys or node:
            if key in own and key in node and node[key] != own[key]:
                out.append((f"{group}.{key}", node[key], own[key]))
    return out


def _build(cfg: DictConfig) -> None:
    from gmmvit.run.train import build_model

    with torch.device("meta"):
        build_model(cfg)


def _with(cfg: DictConfig, key: str, value) -> DictConfig:
    copy = cfg.copy()
    with open_dict(copy):
        OmegaConf.update(copy, key, value, merge=False)
    return copy


def _builds(cfg: DictConfig) -> bool:
    try:
        _build(cfg)
    except Exception:
        return False
    return True


def _reason(exc: BaseException) -> str:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = " ".join(str(exc).split())[:160]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def build_problem(cfg: DictConfig) -> Optional[str]:
    """Why the network ``cfg`` describes cannot be built, as one line naming the keys, or None."""
    return _build_problem(json.dumps({
        "model": OmegaConf.to_container(cfg.model, resolve=True, enum_to_str=True),
        "mask": OmegaConf.to_container(cfg.mask, resolve=True, enum_to_str=True),
        "dataset": {k: cfg.dataset[k] for k in ("name", *DATASET_FACTS)},
        "attention": str(cfg.get("attention", "auto"))}, sort_keys=True))


@functools.lru_cache(maxsize=256)  # the jobs of a sweep share networks: one dry build each
def _build_problem(described: str) -> Optional[str]:
    cfg = OmegaConf.create(json.loads(described))
    try:
        _build(cfg)
        return None
    except Exception as exc:
        own = cause_of(exc, ConfigError)
        if own is not None:
            return str(own)
        changed = _changed(cfg)
        blamed = [c for c in changed if _builds(_with(cfg, c[0], c[2]))] or changed
        if not blamed:
            raise
        shown = ", ".join(f"{key}={json.dumps(value) if isinstance(value, (list, dict)) else value}"
                          for key, value, _ in blamed)
        defaults = ", ".join(f"{key}={json.dumps(default) if isinstance(default, (list, dict)) else default}"
                             for key, _, default in blamed)
        return (f"{shown}: model={cfg.model.name} cannot be built with {'it' if len(blamed) == 1 else 'them'} "
                f"({_reason(exc)}); use values that fit (the option's own: {defaults})")
