"""Prompt templates: plain-text files with ``{{placeholder}}`` slots, packaged under ``autointerp/prompts/``.

Why files: prompts are the part users tune most, so they live outside the code. ``[explain] prompts_dir``
points at a directory of the user's own templates; a template found there wins over the packaged one of
the same name. Every template must contain its required placeholders (a template that silently drops
``{{label}}`` would score every label the same), so a missing one is a UserError naming both.
``{{...}}`` is used instead of ``str.format`` braces because corpus text and few-shot examples contain braces.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from autointerp.errors import UserError

PACKAGED_DIR = Path(__file__).resolve().parent.parent / "prompts"
SUFFIXES = (".txt", ".md")
REQUIRED = {  # the explainer's templates; a scorer's are named on its class (autointerp.eval.scorers.base.Scorer)
    "explainer": ("examples",),
    "explainer_profile": ("examples", "profile"),  # the explainer shown the lexical profile as well
}
_SLOT = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


@dataclass(frozen=True)
class Template:
    name: str
    text: str
    path: Path
    required: tuple[str, ...] = ()  # the placeholders it must hold

    @property
    def placeholders(self) -> set[str]:
        return set(_SLOT.findall(self.text))

    def render(self, **values: str) -> str:
        """Fill every placeholder; values are inserted verbatim (never re-scanned for placeholders)."""
        missing = self.placeholders - set(values)
        if missing:
            raise UserError(f"template {self.name} ({self.path}) uses placeholder(s) {', '.join(sorted(missing))} that autointerp does not provide; remove them or use only {', '.join(self.required)}")
        return _SLOT.sub(lambda m: str(values[m.group(1)]), self.text)


def _find(name: str, prompts_dir: Path | str | None) -> Path:
    folders = ([Path(prompts_dir).expanduser()] if prompts_dir else []) + [PACKAGED_DIR]
    if prompts_dir and not Path(prompts_dir).expanduser().is_dir():
        raise UserError(f"[explain] prompts_dir {prompts_dir} is not a directory; create it or remove the setting")
    for folder in folders:
        for suffix in SUFFIXES:
            if (folder / f"{name}{suffix}").is_file():
                return folder / f"{name}{suffix}"
    raise UserError(f"no prompt template named {name!r} in {' or '.join(str(f) for f in folders)}; add {name}.txt")


def load_template(name: str, prompts_dir: Path | str | None = None, required: tuple[str, ...] | None = None) -> Template:
    """The template ``name`` checked for its ``required`` placeholders (default: ``REQUIRED``, the explainer's)."""
    path = _find(name, prompts_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read prompt template {path}: {exc}") from exc
    template = Template(name, text, path, tuple(REQUIRED.get(name, ()) if required is None else required))
    for placeholder in template.required:
        if placeholder not in template.placeholders:
            raise UserError(f"prompt template {name} ({path}) is missing the required placeholder {{{{{placeholder}}}}}; add it where the {placeholder} should go")
    return template


def prompt_sha(text: str) -> str:
    """A prompt's identity in the stage records: labels or scores made from other prompt text are redone."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def explainer_templates(cfg) -> list[Template]:
    """The prompt variants of the LLM candidates (``cfg``: ``[explain]``): the plain explainer, then the one
    shown the lexical profile."""
    return [load_template("explainer", cfg.prompts_dir), load_template("explainer_profile", cfg.prompts_dir)]
