"""Command lines from config dataclasses: the one way every ``python -m`` command here builds its flags.

A command's settings are a dataclass; each field is a flag (``run_dir`` -> ``--run-dir``) whose help is the
field's ``help`` and whose type, default and choices are the field's. Choices are checked by argparse at
parse time (a bad ``--model-type`` is a one-line usage error, not a dataset error), from a ``Literal[...]``
annotation or an explicit ``choices`` tuple::

    @dataclass
    class EvaluateArgs:
        checkpoint: str = opt(help="checkpoint directory")       # no default: a required flag
        episodes: int = opt(10, "episodes per target")
        gym_version: GymVersion = opt("v4", "gymnasium env version")   # Literal["v4", "v5"]: choices

    add_arguments(parser, EvaluateArgs)
    args = from_args(EvaluateArgs, parser.parse_args(argv))

Flags that are not given stay out of the parsed namespace (argparse's ``SUPPRESS``), so :func:`from_args` can lay
them over a base config, as ``train --preset quick --lr 3e-4`` does. No heavy imports: ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from dt.errors import ConfigError

T = TypeVar("T")


def opt(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    choices: Sequence[Any] | None = None,
    nargs: int | str | None = None,
    positional: bool = False,
    rule: Callable[[Any], str | None] | None = None,
) -> Any:
    """A config field that is also a command-line flag.

    Args:
        default: The field's default; omitted, the flag is required. A list or tuple default is copied per
            instance.
        help: Its ``--help`` line (``%`` written as ``%%``, as argparse formats help with ``%``).
        choices: Accepted values, checked at parse time (a ``Literal`` annotation gives them too).
        nargs: For list and tuple fields: argparse's ``nargs`` (default ``+`` for a list, the length for a
            fixed-size tuple).
        positional: A positional argument (``dataset``) rather than a flag (``--dataset``).
        rule: The accepted range (a ``dt.validate`` rule: ``integer(1, MAX_LAYERS)``), declared with the field and
            checked by ``dt.validate.check_fields`` before any work.
    """
    meta: dict[str, Any] = {"help": help}
    if choices is not None:
        meta["choices"] = tuple(choices)
    if nargs is not None:
        meta["nargs"] = nargs
    if positional:
        meta["positional"] = True
    if rule is not None:
        meta["rule"] = rule
    if isinstance(default, (list, tuple, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def flag(name: str) -> str:
    """``max_steps`` -> ``--max-steps``."""
    return "--" + name.replace("_", "-")


def field_rules(cls: type) -> dict[str, Callable[[Any], str | None]]:
    """The rules declared with a dataclass's fields (``opt(..., rule=...)``), by field name."""
    return {f.name: f.metadata["rule"] for f in dataclasses.fields(cls) if "rule" in f.metadata}


def field_default(f: dataclasses.Field) -> Any:
    """A field's default value (``MISSING`` for a required one)."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _strip_none(typ: Any) -> Any:
    """``X | None`` -> ``X`` (None is a default, never typed in); anything else unchanged."""
    if get_origin(typ) in (Union, types.UnionType):
        args = [a for a in get_args(typ) if a is not type(None)]
        if len(args) == 1 and len(get_args(typ)) == 2:
            return args[0]
    return typ


def _argument(f: dataclasses.Field, typ: Any) -> tuple[list[str], dict[str, Any]]:
    """The ``add_argument`` call (names, keywords) for one field."""
    meta = f.metadata
    typ = _strip_none(typ)
    default = field_default(f)
    kw: dict[str, Any] = {"default": argparse.SUPPRESS}
    help_ = meta.get("help", "")
    if default not in (dataclasses.MISSING, None, "") and "(default" not in help_:  # "": the help says what it means
        help_ += f" (default: {str(default).replace('%', '%%')})"
    kw["help"] = help_
    if meta.get("positional"):
        names = [f.name]
        del kw["default"]  # a positional is always given
    else:
        names = [flag(f.name)]
        if default is dataclasses.MISSING:
            kw["required"] = True
    origin = get_origin(typ)
    if typ is bool:
        kw["action"] = argparse.BooleanOptionalAction
        return names, kw
    if origin in (list, tuple):
        args = get_args(typ)
        item = args[0]
        fixed = origin is tuple and (len(args) != 2 or args[1] is not Ellipsis)
        kw["nargs"] = meta.get("nargs", len(args) if fixed else "+")
        typ = item
    if get_origin(typ) is Literal:
        kw["choices"] = get_args(typ)
        typ = type(get_args(typ)[0])
    if "choices" in meta:
        kw["choices"] = meta["choices"]
    kw["type"] = typ
    return names, kw


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one argument per field of the dataclass ``cls`` to ``parser`` (see the module docstring)."""
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        names, kw = _argument(f, hints[f.name])
        parser.add_argument(*names, **kw)


def from_args(cls: type[T], args: argparse.Namespace, base: T | None = None) -> T:
    """The dataclass ``cls`` from parsed arguments: the flags given, over ``base`` (default: the defaults)."""
    hints = get_type_hints(cls)
    given: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]  # cls is a dataclass type
        if hasattr(args, f.name):
            value = getattr(args, f.name)
            _check_not_blank(f, value)
            if get_origin(_strip_none(hints[f.name])) is tuple:
                value = tuple(value)
            given[f.name] = value
    if base is None:
        return cls(**given)
    return dataclasses.replace(base, **given)  # type: ignore[type-var]


def _check_not_blank(f: dataclasses.Field, value: Any) -> None:
    """An empty or blank string typed for a flag whose default is not ``""`` (a path, a name) is refused: it
    used to fall back to the default, or to the current folder, without a word."""
    default = field_default(f)
    if not (isinstance(value, str) and not value.strip()) or default == "":  # "" there means "none"
        return
    fix = "leave the flag out" + (f" (default: {default})" if default not in (dataclasses.MISSING, None) else "")
    name = f.name if f.metadata.get("positional") else flag(f.name)
    raise ConfigError(f"{name}: empty; give a value" + ("" if default is dataclasses.MISSING else f", or {fix}"))


def parser_for(cls: type, prog: str, description: str = "") -> argparse.ArgumentParser:
    """A parser for a one-command program whose flags are the fields of ``cls``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_arguments(parser, cls)
    return parser


def add_command(
    subparsers: Any, name: str, help: str, func: Callable[[argparse.Namespace], int], *configs: type
) -> argparse.ArgumentParser:
    """A subcommand ``name`` whose flags are the fields of ``configs``; ``func`` runs it (``args.func``)."""
    parser = subparsers.add_parser(name, help=help, description=help)
    for cls in configs:
        add_arguments(parser, cls)
    parser.set_defaults(func=func)
    return parser
