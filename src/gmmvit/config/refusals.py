"""One line for a config Hydra refuses: the key, the value and what the key takes, or the key's
closest spelling, or the group option that has it."""

from __future__ import annotations

import re
from dataclasses import fields, is_dataclass
from typing import Optional, Sequence

from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf

from gmmvit.catalog import CONF
from gmmvit.config.schema import SCHEMAS, Choice
from gmmvit.errors import cause_of


# the groups every run needs one option of (conf/config.yaml's defaults list)
GROUPS = ("model", "mask", "dataset", "recipe", "logger")


def group_options(group: str) -> list[str]:
    """The options of a config group, as a command line names them (``ablation/pooling``)."""
    folder = CONF / group
    return sorted(p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.yaml"))


def _unknown_option(exc) -> Optional[str]:
    """``model=resnet: model takes one of cait, pit, swin, t2t, vit`` for an option no file holds.
    The group is the shortest folder of conf/ with options of its own (``experiment`` for
    ``experiment/ablation/size``, ``hydra/launcher`` for ``hydra/launcher/sge``)."""
    parts = str(exc.missing_cfg_file or "").split("/")
    for i in range(1, len(parts)):
        group, name = "/".join(parts[:i]), "/".join(parts[i:])
        if any((CONF / group).glob("*.yaml")):
            break
    else:
        return None
    choices = set(group_options(group))
    if "/".join(parts[:-1]) == group:  # Hydra's own options of the group too (hydra/launcher=basic)
        choices |= set(exc.options or [])
    return f"{group}={name}: {group} takes one of {', '.join(sorted(choices))}"


def describe_type(annotation) -> str:
    """What a key takes, in words (for the one-line refusal)."""
    text = str(annotation)
    optional = text.startswith("Optional[")
    inner = text[len("Optional["):-1] if optional else text
    enum = next((c for c in Choice.__subclasses__() if c.__name__ == inner), None)
    if enum is not None:
        words = "one of " + ", ".join(m.value for m in enum)
    else:
        words = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "a string",
                 "List[float]": "a list of numbers"}.get(inner, inner)
    return words + (" or null" if optional else "")


def keys_by_option() -> dict[str, list[str]]:
    """Every key a config can have, with the group options that have it (``mask.num_kernels``:
    ``["mask=gmm"]``; ``[]`` for keys of every config): the schema's, and the model files' in conf/model/."""
    owners: dict[str, list[str]] = {}
    for (group, name), node in SCHEMAS.items():
        prefix = group.partition("/")[2]
        option = f"{prefix}={name}" if prefix in ("mask", "logger") else None
        for key in _leaf_keys(OmegaConf.structured(node)):
            owners.setdefault(f"{prefix}.{key}" if prefix else key, []).extend([option] if option else [])
    for path in sorted(CONF.glob("model/*.yaml")):
        for key in _leaf_keys(OmegaConf.load(path)):
            if not key.startswith("defaults"):
                owners.setdefault(f"model.{key}", []).append(f"model={path.stem}")
    for path in sorted(CONF.glob("recipe/*.yaml")):  # the optimizer's keys
        for key in _leaf_keys(OmegaConf.load(path)):
            if key.startswith("optimizer."):
                owners.setdefault(f"recipe.{key}", [])
    return owners


def _leaf_keys(node, prefix: str = "") -> list[str]:
    out = []
    for key in node.keys():
        value = node._get_node(key)
        if isinstance(value, DictConfig) and key not in ("source",):
            out += _leaf_keys(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}")
    return out


def suggest(key: str) -> str:
    """`` (did you mean recipe.epochs?)`` for a mistyped key, `` (mask=gmm has it)`` for a key of
    another option of its group, or nothing."""
    import difflib

    owners = keys_by_option()
    if owners.get(key):
        return f" ({', '.join(owners[key])} {'has' if len(owners[key]) == 1 else 'have'} it)"
    keys = sorted(set(owners) | set(GROUPS) | {"experiment"})  # a group's name mistyped: datset=cifar10
    last = key.split(".")[-1]
    same_name = [k for k in keys if k.split(".")[-1] == last and k != key]
    close = same_name or difflib.get_close_matches(key, keys, n=1, cutoff=0.75)
    if not close:
        group = key.rpartition(".")[0]
        siblings = {k.split(".")[-1]: k for k in keys if k.rpartition(".")[0] == group}
        close = [siblings[m] for m in difflib.get_close_matches(last, list(siblings), n=2, cutoff=0.6)]
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def _typed_value(key: str, argv) -> str | None:
    """The value of ``key`` as the command line gave it (OmegaConf's message shows none for null)."""
    for arg in argv or ():
        name, eq, value = str(arg).lstrip("+~").partition("=")
        if eq and name == key:
            return value
    return None


def _field_type(object_type, key) -> Optional[str]:
    if is_dataclass(object_type):
        for f in fields(object_type):
            if f.name == key:
                return f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return None


def _unparsable(exc: OverrideParseException) -> str:
    """``model=vit,: Hydra cannot parse this override (mismatched input '<EOF>'); ...``: Hydra's reason
    without its grammar's token list and link."""
    reasons = [line for line in exc.message.splitlines()
               if line.strip() and not line.startswith(("Error parsing override", "See https://"))]
    reason = re.sub(r" expecting (\{.*\}|\S+)$", "", reasons[0]) if reasons else "not KEY=VALUE"
    return (f"{exc.override}: Hydra cannot parse this override ({reason}); write KEY=VALUE, KEY=A,B for a "
            "sweep, and quote a value holding spaces, brackets or a trailing comma")


def _composition(exc: ConfigCompositionException, argv: Sequence[str] = ()) -> str:
    """Hydra's refusal of how the overrides combine, as one line naming the group and the fix."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    package = re.match(r"In '([^']+)': ConfigKeyError raised while composing config: Key '([^']+)' not in", text)
    if package:  # group@PACKAGE=option with a package that is no key: +experiment@global=protocol/clean
        typed = next((a for a in argv if f"@{package.group(2)}=" in a), None)
        group, _, option = package.group(1).partition("/")
        fix = (f"a preset stacks at the top as +{group}@_global_={option or 'NAME'}" if group == "experiment"
               else f"choose the option with {group}={option or 'NAME'}")
        return (f"{typed or package.group(1)}: @{package.group(2)} puts the option's keys under "
                f"'{package.group(2)}', which the config lacks; {fix}")
    twice = re.match(r"Multiple values for (\S+?)\.", text)
    if twice:
        group = twice.group(1)
        return (f"{group} is chosen twice: choose its option with {group}=NAME, without '+' (a '+{group}=NAME' "
                "adds a second one where the defaults already choose it)")
    again = re.match(r"(\S+) appears more than once in the final defaults list", text)
    if again:
        group = again.group(1)
        stack = f" (a second preset stacks as +{group}@_global_=NAME)" if group == "experiment" else ""
        return f"{group} is given more than once: give {group}=NAME once{stack}"
    cause = exc.__cause__
    why = str(getattr(cause, "msg", cause)).splitlines()[0] if cause is not None else ""
    return f"{text}: {why}" if why else text


def _default_option(group: str) -> Optional[str]:
    for entry in OmegaConf.load(CONF / "config.yaml").defaults:
        if isinstance(entry, DictConfig) and group in entry:
            return str(entry[group])
    return None


def _swept_away(key: str, argv: list[str]) -> Optional[str]:
    """The line for ``-m model=swin,pit model.depths=[1,1,1]``: before its jobs, Hydra composes a
    sweep's config with the group's default option (``model=vit``) and checks the other overrides
    against it (hydra#2888), so a key only the swept options have is refused there. None where the
    key's group is not swept over options that have it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not {"-m", "--multirun"} & set(argv):
        return None
    group = key.partition(".")[0]
    owners = set(keys_by_option().get(key) or [])
    parser, swept, value = OverridesParser.create(), [], "VALUE"
    for text in argv:
        try:
            [override] = parser.parse_overrides([text])
        except Exception:  # a flag (-m), or an override Hydra refused already
            continue
        if override.key_or_group == group and override.is_sweep_override():
            swept += [f"{group}={option}" for option in override.sweep_string_iterator()]
        elif override.key_or_group == key and not override.is_sweep_override():
            value = text.partition("=")[2]
    having = [option for option in swept if option in owners]
    if not having:
        return None
    before = (f"{key} is not a key of {group}={_default_option(group)}, the option Hydra checks a sweep's "
              f"other overrides against before its jobs")
    if len(having) == len(swept):
        return f"{before}: write ++{key}={value} to set it on every job of the sweep"
    return (f"{before}, and of the swept options only {', '.join(having)} "
            f"{'has' if len(having) == 1 else 'have'} it: sweep {'it' if len(having) == 1 else 'them'} on "
            f"{'its' if len(having) == 1 else 'their'} own ({group}={','.join(o.partition('=')[2] for o in having)} "
            f"{key}={value})")


# what Hydra raises for the command line itself: an override it cannot parse, an option no file
# holds, overrides that cannot combine (``explain`` has a line for each)
COMMAND_LINE_ERRORS = (OverrideParseException, MissingConfigException, ConfigCompositionException)


def explain(exc: BaseException, argv: Sequence[str] = ()) -> Optional[str]:
    """One line for a command line Hydra refuses (``exc`` from its parsing or composition): a value
    the schema refuses, a key no config has, an override it cannot parse, overrides that cannot
    combine; None for other errors. ``argv``: the ``src/train.py`` command line, where a sweep's
    options tell why a key was refused."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    unparsable = cause_of(exc, OverrideParseException)
    if unparsable is not None:
        return _unparsable(unparsable)
    missing = cause_of(exc, MissingConfigException)
    if missing is not None:
        return _unknown_option(missing)
    cause = cause_of(exc, (ValidationError, ConfigKeyError, ConfigAttributeError))
    if cause is None:
        composition = cause_of(exc, ConfigCompositionException)
        return None if composition is None else _composition(composition, argv)
    full_key = re.sub(r"\[\d+\]$", "", str(getattr(cause, "full_key", "") or ""))
    first_line = str(getattr(cause, "msg", cause)).splitlines()[0]
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)):
        if not full_key:
            return None
        group = full_key.rpartition(".")[0]
        where = f"a key of {group}" if group else "a config key"
        return _swept_away(full_key, list(argv)) or f"{full_key} is not {where}{suggest(full_key)}"
    value = _typed_value(full_key, argv) or re.search(r"[Vv]alue '(.*?)'", first_line)
    value = value if isinstance(value, str) else value.group(1) if value else "?"
    annotation = _field_type(getattr(cause, "object_type", None), getattr(cause, "key", None))
    if annotation is None and getattr(cause, "ref_type", None) is not None:
        annotation = re.sub(r"typing\.", "", str(cause.ref_type))
    takes = describe_type(annotation) if annotation else first_line
    return f"{full_key}={value}: {full_key} takes {takes}"
