"""The configuration reference's listing (docs/configuration.md, the first toml block after its title),
generated from the config dataclasses: every TOML key with its default and the comment on its line in the
source, so the documented defaults cannot drift from the code. Fields marked ``metadata={"toml": False}``
(set by the code, e.g. ``SAEConfig.d_in``) are not keys and are left out. (The script keeps its name from
when the listing lived in README.md.)

    .venv/bin/python scripts/readme_config.py           # print the listing
    .venv/bin/python scripts/readme_config.py --write   # replace the listing in docs/configuration.md
    .venv/bin/python scripts/readme_config.py --check   # exit 1 if docs/configuration.md's listing is stale (tests/test_config.py)
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Document this checkout's dataclasses, not whichever autointerp the environment has installed (run as a
# script, sys.path[0] is scripts/, so an editable install of another checkout would win).
sys.path.insert(0, str(ROOT))

from autointerp.cli_flags import field_docs  # noqa: E402
from autointerp.config import SECTIONS, RunConfig, default_models, section_settings, toml_value  # noqa: E402

CONFIG_DOC = ROOT / "docs" / "configuration.md"
TITLE = "\n# Configuration\n"
HEADER = 'name = "default"            # run directory: runs/<name> unless run_dir = "..." is set'
MODELS_COMMENT = "# two or more; per-model layer/site override [harvest]"


def _line(key: str, value, comment: str | None) -> str:
    if value is None:
        text = f"# {key} ="
    else:
        text = f"{key} = {'{ ... }' if isinstance(value, dict) and value else toml_value(value)}"
    return text + (f"  # {comment}" if comment else "")


def listing() -> str:
    """The TOML block: exactly what `autointerp run` uses with no arguments."""
    cfg = RunConfig()
    lines = [HEADER]
    for name, cls in SECTIONS.items():
        lines += ["", f"[{name}]"]
        if name == "corpus":
            lines.append(_line("max_tokens", cfg.max_tokens, field_docs(RunConfig).get("max_tokens")))
        comments = field_docs(cls)
        lines += [_line(key, value, comments.get(key)) for key, value in section_settings(getattr(cfg, name)).items()]
    for i, entry in enumerate(default_models()):
        lines += ["", "[[models]]" + (" " * 18 + MODELS_COMMENT if i == 0 else "")]
        lines += [f"{key} = {toml_value(value)}" for key, value in section_settings(entry).items() if value is not None]
    return "\n".join(lines) + "\n"


def _span(text: str) -> tuple[int, int]:
    """Start and end offsets of the listing's body (the first toml block after the page's title)."""
    section = text.index(TITLE)
    start = text.index("```toml\n", section) + len("```toml\n")
    return start, text.index("```", start)


def main(argv: list[str]) -> int:
    text = CONFIG_DOC.read_text(encoding="utf-8")
    start, end = _span(text)
    if "--check" in argv:
        if text[start:end] != listing():
            print("docs/configuration.md's config listing is stale: run .venv/bin/python scripts/readme_config.py --write")
            return 1
        return 0
    if "--write" in argv:
        CONFIG_DOC.write_text(text[:start] + listing() + text[end:], encoding="utf-8")
        return 0
    sys.stdout.write(listing())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
