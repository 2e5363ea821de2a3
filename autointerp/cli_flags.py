"""Command-line flags derived from the config dataclasses, as sparsify derives its CLI from its config.

Every TOML key of a section is a flag of the commands that read that section: its name is the key with dashes
(``null_alpha`` -> ``--null-alpha``), its type the field's, its help the comment on the field's line in the
source (the same text the configuration reference in docs/ shows). A flag left out keeps the config's value
(every flag defaults to None: see ``cli_common.set_flags``). Only scalar keys (and lists of strings) are flags;
tables such as ``[compare] domains`` are set in the TOML.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import io
import re
import textwrap
import tokenize
import types
import typing
from typing import Annotated, Optional

import typer

SCALARS = (int, float, str, bool)


@functools.cache
def field_docs(cls) -> dict[str, str]:
    """The comment at the end of each field's line in ``cls``'s source: the field's documentation."""
    source = textwrap.dedent(inspect.getsource(cls))
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    names = {f.name for f in dataclasses.fields(cls)}
    out = {}
    for number, line in enumerate(source.splitlines(), 1):
        match = re.match(r"    (\w+)\s*:", line)
        if match and match.group(1) in names and number in comments and line.lstrip()[0] != "#":
            out[match.group(1)] = comments[number]
    return out


def _flag_type(hint) -> type | None:
    """The click-level type of a field: a scalar, ``list[str]``, or None when the field is not a flag."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return _flag_type(args[0]) if len(args) == 1 else None
    if typing.get_origin(hint) is list and args == [str]:
        return list[str]
    return hint if hint in SCALARS else None


@dataclasses.dataclass(frozen=True)
class Flag:
    """One derived flag: which config key it sets and how typer shows it."""

    section: str  # config section ("" for a top-level key such as max_tokens)
    key: str
    names: tuple[str, ...]  # option names, first the derived one
    kind: type
    help: str

    @property
    def param(self) -> str:
        """The Python parameter name (unique across sections)."""
        return f"{self.section or 'run'}__{self.key}"

    def parameter(self) -> inspect.Parameter:
        kind = Optional[list[str]] if self.kind == list[str] else Optional[self.kind]
        names = self.names
        if self.kind is bool and not any("/" in n for n in names):  # --pages/--no-pages
            names = (f"{names[0]}/--no-{names[0][2:]}", *names[1:])
        option = typer.Option(*names, help=self.help or None, show_default=False)
        return inspect.Parameter(self.param, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[kind, option])


def section_flags(section: str, cls, *, prefix: str = "", names: dict[str, tuple[str, ...]] | None = None,
                  hide: tuple[str, ...] = (), keys: tuple[str, ...] | None = None) -> list[Flag]:
    """The flags of one config section. ``prefix`` goes before every derived name (``llm-`` for the LLM's
    keys, which two commands share with their own); ``names`` renames a key (extra names are aliases, kept for
    the flags users already type); ``hide`` leaves keys out; ``keys`` keeps only these (top-level keys)."""
    from autointerp.config import toml_fields

    hints, docs, names = typing.get_type_hints(cls), field_docs(cls), names or {}
    out = []
    for f in toml_fields(cls):
        if f.name in hide or (keys is not None and f.name not in keys):
            continue
        kind = _flag_type(hints[f.name])
        if kind is None:
            continue
        derived = names.get(f.name) or (f"--{prefix}{f.name.replace('_', '-')}",)
        out.append(Flag(section, f.name, tuple(derived), kind, docs.get(f.name, "")))
    return out


def check_unique(flags: list[Flag], reserved: set[str], command: str) -> None:
    """Two keys may not share a flag name (nor take a common flag's): the spec must rename one."""
    seen: dict[str, str] = {n: "a common flag" for n in reserved}
    for flag in flags:
        for name in flag.names:
            for part in name.split("/"):
                if part in seen:
                    raise RuntimeError(f"autointerp {command}: flag {part} is both {seen[part]} and {flag.section}.{flag.key}; rename one in its Stage spec")
                seen[part] = f"{flag.section}.{flag.key}"


def split_values(flags: list[Flag], values: dict) -> dict[str, dict]:
    """{section: {key: value}} of the flags given (None: not given)."""
    out: dict[str, dict] = {}
    for flag in flags:
        out.setdefault(flag.section, {})[flag.key] = values.pop(flag.param, None)
    return out
