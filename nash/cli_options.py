"""Click options generated from a config dataclass, so that a default lives in one place.

    @config_options(ClimbConfig, exclude=("start", "new_head"))
    def climb(**kw): ...          # kw: every field by its name, parsed, default = the field's

An option's name is the field's (`n_neigh`: `--n-neigh`), its default the field's (shown in
--help), its type the annotation's: int, float, str; `X | None` (None: not given); bool (a flag
`--x`; one whose default is True or None is `--x/--no-x`, None meaning "let the searcher
decide"); a tuple, written comma-separated (`--widths 64,128,256`). The rest comes from the
field's metadata, all of it optional:

    help     the option's help text (every searcher config field has one; a test checks)
    option   another name for the option (`--select` for `selector`)
    cli      False: no option (the field is for the Python API and `nash compare --set` only)
    choices  the registry the value comes from (a dict's keys or a sequence of values)
    noun     what a value is called in the error for one that is not a choice (default: the
             field's name; `data`: "data set", as the loader says it)
    parse    text -> value, for a field whose text form is not its type (`--budget 12h` is
             seconds); raises ValueError (NashError included) for bad text
    metavar  the placeholder in --help

A command may pass the same keys per field (`overrides`) for a class it does not own, or for a
meaning of its own (`nash compare --budget` is required).
"""
from __future__ import annotations

import dataclasses
import types
import typing

import click

from .errors import NashError

SPEC_KEYS = {"help", "option", "cli", "choices", "noun", "parse", "metavar", "default", "required"}


class Known(click.Choice):
    """One of a registry's names, refused in the words the library uses for it ("unknown data
    set 'x' (known: ...)"), whichever of the two sees it first."""

    def __init__(self, choices, noun: str):
        super().__init__(list(choices))
        self.noun = noun

    def convert(self, value, param, ctx):
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            self.fail(f"unknown {self.noun} {value!r} (known: {', '.join(map(str, self.choices))})", param, ctx)


class Parsed(click.ParamType):
    """A value whose text is read by `parse`; bad text fails as click's own usage errors do."""

    def __init__(self, parse, name: str):
        self.parse, self.name = parse, name

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value  # a default, already a value
        try:
            return self.parse(value)
        except (NashError, ValueError) as e:
            self.fail(str(e), param, ctx)


class CommaTuple(click.ParamType):
    """A tuple written comma-separated: 64,128,256."""

    def __init__(self, item: type):
        self.item = item
        self.name = f"{item.__name__},..."

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            return tuple(self.item(v) for v in str(value).split(","))
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of {self.item.__name__}s (like 64,128,256)",
                      param, ctx)


def field_type(cls, name: str) -> tuple[type, bool, type | None]:
    """(the field's base type, whether None is allowed, a tuple's item type)."""
    hint = typing.get_type_hints(cls)[name]
    args = typing.get_args(hint)
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args
    if optional:
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"{cls.__name__}.{name}: {hint} has no option type (give it `parse` or `cli: False`)")
        hint = rest[0]
    base = typing.get_origin(hint) or hint
    item = None
    if base is tuple:
        items = [a for a in typing.get_args(hint) if a is not Ellipsis]
        item = items[0] if items else int
    return base, optional, item


def field_default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise TypeError(f"field {f.name} has no default, so no option")


def option_name(f: dataclasses.Field, spec: dict) -> str:
    return spec.get("option") or "--" + f.name.replace("_", "-")


def field_spec(f: dataclasses.Field, overrides: dict | None = None) -> dict:
    """The field's metadata with a command's overrides for it on top."""
    given = (overrides or {}).get(f.name, {})
    if set(given) - SPEC_KEYS:  # a typo would silently do nothing
        raise TypeError(f"{f.name}: unknown option keys {sorted(set(given) - SPEC_KEYS)} (known: {sorted(SPEC_KEYS)})")
    return {**f.metadata, **given}


def field_option(cls, f: dataclasses.Field, spec: dict):
    """The click.option decorator for field `f` of `cls`."""
    name = option_name(f, spec)
    default = spec.get("default", field_default(f))
    base, optional, item = field_type(cls, f.name)
    kw = dict(default=default, help=spec.get("help"), required=spec.get("required", False))
    if spec.get("metavar"):
        kw["metavar"] = spec["metavar"]
    if base is bool and "parse" not in spec:
        if default is False and not optional:
            return click.option(name, f.name, is_flag=True, **kw)
        return click.option(f"{name}/--no-{name[2:]}", f.name, show_default=default is not None, **kw)
    if "choices" in spec:
        kw["type"] = Known(spec["choices"], spec.get("noun", f.name.replace("_", " ")))
    elif "parse" in spec:
        kw["type"] = Parsed(spec["parse"], spec.get("metavar", "TEXT"))
    elif base is tuple:
        kw["type"] = CommaTuple(item)
        if isinstance(default, tuple):  # shown and parsed as it is written
            kw["default"] = ",".join(str(v) for v in default)
    elif base in (int, float, str):
        kw["type"] = base
    else:
        raise TypeError(f"{cls.__name__}.{f.name}: {base} has no option type (give it `parse` or `cli: False`)")
    return click.option(name, f.name, show_default=default is not None, **kw)


def own_first(cls) -> list[str]:
    """The field names of `cls`, its own before those it inherits (a command's --help shows the
    searcher's knobs before the data options every searcher shares)."""
    names = []
    for klass in cls.__mro__:
        names += [n for n in vars(klass).get("__annotations__", {}) if n not in names]
    fields = {f.name for f in dataclasses.fields(cls)}
    return [n for n in names if n in fields]


def cli_fields(cls, only=None, exclude=(), overrides: dict | None = None) -> list[tuple[dataclasses.Field, dict]]:
    """(field, spec) of each field of `cls` that is an option, its own first (or in `only`'s order)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    names = list(only) if only is not None else own_first(cls)
    for n in [*names, *exclude, *(overrides or {})]:
        if n not in fields:
            raise TypeError(f"{cls.__name__} has no field {n!r}")
    out = []
    for n in names:
        spec = field_spec(fields[n], overrides)
        if n not in exclude and spec.get("cli", True):
            out.append((fields[n], spec))
    return out


def config_options(cls, only=None, exclude=(), overrides: dict | None = None):
    """A decorator adding an option for each field of config dataclass `cls` (those of `only`,
    else all but `exclude`); `overrides`: field -> metadata keys that replace the field's."""
    options = [field_option(cls, f, spec) for f, spec in cli_fields(cls, only, exclude, overrides)]

    def decorate(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn
    return decorate
