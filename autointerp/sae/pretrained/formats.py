"""What a pretrained-SAE reference (``sae = ...`` in ``[[models]]``, or ``--sae``) names, read without its
weights and without torch, so every command (``autointerp.cli_common``), the harvest and the train stage can use it:

- where its files are: a local path as given, or a hub reference downloaded (only the files under that path)
  into the Hugging Face cache. Hub references: ``"hf://<owner>/<repo>/<path in repo>[@<revision>]"`` or
  ``{repo = "<owner>/<repo>", path = "<path>", revision = "<optional>"}``. Offline (HF_HUB_OFFLINE or no route
  to the hub), a reference that is not already cached is a one-line error naming the local-path alternative;
- which library wrote it (``FORMATS``: each format's files, the module that reads its weights, the layer/site
  its config or path names; none or several formats matching is a one-line error naming the files each needs);
- which layer/site it reads (``fill_hookpoint``: the SAE decides an unset layer/site of its ``[[models]]`` entry).

A leaf of the sae package (no torch; placed low in tests/test_architecture.py LAYERS) because the commands and
the harvest, below the SAE code, need these answers. The weights are read by ``autointerp.sae.pretrained``;
whether the run already holds an SAE is the run's record (``autointerp.rundir.sae_source``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from autointerp.errors import DamagedArtifact, UserError
from autointerp.hub import hub_reachable
from autointerp.io import read_json
from autointerp.rundir.layout import (GEMMA_SCOPE_FILE, LLAMA_SCOPE_CHECKPOINT_DIR, LLAMA_SCOPE_HPARAMS_FILE,
                                      LLAMA_SCOPE_WEIGHTS_FILE, SAE_CFG_FILE, SAE_WEIGHTS_FILE, SPARSIFY_WEIGHTS_FILE,
                                      SAEFiles)

# The fix for a damaged file of a pretrained SAE: it is the user's input (--sae), not a run artifact a stage remakes.
REDOWNLOAD = "re-download the SAE"

# ------------------------------------------------------------------------------------------ where the files are
HF_PREFIX = "hf://"
_KEYS = {"repo", "path", "revision"}


def hub_reference(spec: str | dict) -> tuple[str, str, str | None] | None:
    """(repo_id, path in repo, revision) for a hub reference, None for a local path; malformed ones are errors."""
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - _KEYS)
        if unknown or not isinstance(spec.get("repo"), str) or "/" not in spec["repo"]:
            raise UserError(f"sae = {{ ... }} needs repo = \"<owner>/<name>\" and optionally path and revision "
                            f"(got keys {sorted(spec)}); or give a local path")
        return spec["repo"], str(spec.get("path", "")).strip("/"), spec.get("revision")
    if not spec.startswith(HF_PREFIX):
        return None
    rest, revision = spec[len(HF_PREFIX):], None
    if "@" in rest:  # hf://owner/repo/path@revision, as ``describe`` writes a reference with a revision
        rest, revision = rest.rsplit("@", 1)
    parts = rest.strip("/").split("/")
    if len(parts) < 2 or not all(parts[:2]) or revision == "":
        raise UserError(f"sae = {spec!r}: a hub reference is hf://<owner>/<repo>/<path in repo>[@<revision>]")
    return "/".join(parts[:2]), "/".join(parts[2:]), revision


def describe(spec: str | dict) -> str:
    """The reference as one string (recorded in metrics.json, shown in the report)."""
    ref = hub_reference(spec)
    if ref is None:
        return str(spec)
    repo, path, revision = ref
    return f"{HF_PREFIX}{repo}/{path}".rstrip("/") + (f"@{revision}" if revision else "")


def resolve(spec: str | dict) -> Path:
    """A local path for ``spec``, downloading a hub reference's files when online."""
    ref = hub_reference(spec)
    if ref is None:
        return Path(str(spec)).expanduser()
    repo, path, revision = ref
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    patterns = [path, f"{path}/*"] if path else None
    offline = not hub_reachable()
    try:
        root = snapshot_download(repo, revision=revision, allow_patterns=patterns, local_files_only=offline)
    except LocalEntryNotFoundError as e:
        if offline:
            raise UserError(f"sae = {describe(spec)} needs the Hugging Face hub, which is unreachable (offline) and the "
                            "files are not cached; download them elsewhere and set sae = \"/local/path/to/the/sae\"") from e
        raise UserError(f"sae = {describe(spec)}: could not download it ({e}); check the repo and path, or use a local path") from e
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise UserError(f"sae = {describe(spec)}: could not download it ({type(e).__name__}: {e}); check the repo id "
                        "and path, or download the SAE and set sae = \"/local/path\"") from e
    local = Path(root) / path
    if not local.exists():
        raise UserError(f"sae = {describe(spec)}: {path!r} is not in {repo}; check the path inside the repo")
    return local

def same_reference(a: str | dict, b: str | dict) -> bool:
    """Two references name the same SAE: equal hub references, or local paths to the same file."""
    if hub_reference(a) is not None or hub_reference(b) is not None:
        return describe(a) == describe(b)
    return Path(str(a)).expanduser().resolve() == Path(str(b)).expanduser().resolve()


# ------------------------------------------------------------------------------------------ which layer/site it reads
# blocks.L.hook_resid_post (TransformerLens / SAELens), layers.L / model.layers.L / encoder.layer.L (HF modules:
# the block's output = the residual stream after it), with .mlp / hook_mlp_out for the MLP's output.
_HOOK_PATTERNS = [
    (re.compile(r"(?:^|\.)blocks\.(\d+)\.hook_resid_post$"), 0, "resid"),
    (re.compile(r"(?:^|\.)blocks\.(\d+)\.hook_resid_pre$"), -1, "resid"),  # input of block L = output of L - 1
    (re.compile(r"(?:^|\.)blocks\.(\d+)\.hook_mlp_out$"), 0, "mlp"),
    (re.compile(r"(?:^|\.)(?:layers|layer|h)[._](\d+)$"), 0, "resid"),
    (re.compile(r"(?:^|\.)(?:layers|layer|h)[._](\d+)\.mlp$"), 0, "mlp"),
]

Hookpoint = tuple[int | None, str | None, str | None]  # (layer, site, hook as the SAE's own config spells it)


def hookpoint(hook: str | None) -> tuple[int | None, str | None]:
    """(layer, site) a hook name reads, or (None, None) when it names no place autointerp can harvest."""
    if not hook:
        return None, None
    for pattern, offset, site in _HOOK_PATTERNS:
        if m := pattern.search(hook):
            layer = int(m.group(1)) + offset
            return (layer, site) if layer >= 0 else (None, None)
    return None, None


def named_hookpoint(hook: str | None) -> Hookpoint:
    return (*hookpoint(hook), hook)


def saelens_config(path: Path) -> dict:
    """An SAELens cfg.json as a dict (one-line error when it is not one)."""
    try:
        raw = read_json(path, fix=REDOWNLOAD)
    except OSError as e:
        raise UserError(f"{path} cannot be read ({e}); {REDOWNLOAD}") from e
    if not isinstance(raw, dict):
        raise UserError(f"{path} is not a JSON object; it is not an SAELens {SAE_CFG_FILE}")
    return raw


def saelens_hookpoint(raw: dict) -> Hookpoint:
    """SAELens >= 6 keeps hook_name under metadata; older files have it (or hook_point) at the top level."""
    meta = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
    hook = raw.get("hook_name") or raw.get("hook_point") or meta.get("hook_name")
    layer, site = hookpoint(hook)
    if layer is None and raw.get("hook_layer") is not None and hook is None:
        layer = int(raw["hook_layer"])
    return layer, site, hook


def gemma_scope_site(path: Path) -> str:
    """The release name (``gemma-scope-2b-pt-res`` / ``-mlp`` / ``-att``, also inside a hub cache path) says it."""
    releases = [part.lower() for part in path.parts if "gemma-scope" in part.lower()]
    if any(re.search(r"-att(n)?(-|$)", part) for part in releases):
        raise UserError(f"{path} is an attention-output Gemma Scope SAE; autointerp harvests the residual stream "
                        "(resid) or the MLP output (mlp): use a -res or -mlp release")
    return "mlp" if any(re.search(r"-mlp(-|$)", part) for part in releases) else "resid"


def gemma_scope_hookpoint(file: Path) -> Hookpoint:
    """From the path alone: ``layer_L`` and the release name."""
    site = gemma_scope_site(file)
    match = re.search(r"layer_(\d+)", str(file))
    if match is None:
        return None, None, None
    layer = int(match.group(1))
    return layer, site, f"blocks.{layer}.hook_{'mlp_out' if site == 'mlp' else 'resid_post'}"


def llama_scope_hyperparams(hp_path: Path) -> tuple[dict, int, int, str | None]:
    """(hyperparameters, d_model, d_sae, hook) from hyperparams.json; a transcoder is refused."""
    try:
        hp = read_json(hp_path, fix=REDOWNLOAD)
        d_model, d_sae = int(hp["d_model"]), int(hp["d_sae"])
    except DamagedArtifact:
        raise
    except (OSError, KeyError, TypeError, ValueError) as e:
        raise UserError(f"{hp_path} is not a Llama Scope {LLAMA_SCOPE_HPARAMS_FILE} ({e!r}); re-download the SAE") from e
    hook_in, hook_out = hp.get("hook_point_in"), hp.get("hook_point_out", hp.get("hook_point_in"))
    if hook_in != hook_out:
        raise UserError(f"{hp_path}: hook_point_in {hook_in!r} != hook_point_out {hook_out!r} (a transcoder); "
                        "autointerp compares SAEs that reconstruct their own input")
    return hp, d_model, d_sae, hook_in


def _llama_weights(d: Path) -> bool:
    return (d / LLAMA_SCOPE_CHECKPOINT_DIR / LLAMA_SCOPE_WEIGHTS_FILE).is_file() or (d / LLAMA_SCOPE_WEIGHTS_FILE).is_file()


# ------------------------------------------------------------------------------------------ which format
@dataclass(frozen=True)
class Format:
    """One library's layout: its name and files (error messages), how a directory is recognised (``match``: what
    its reader takes, or None) and where its SAE reads (``hookpoint``). Its weights are read by the ``load`` of the
    module of autointerp.sae.pretrained named like the format."""
    title: str
    needs: str
    match: Callable[[Path], Path | None]
    hookpoint: Callable[[Path], Hookpoint]


# Adding a format: its reader module (autointerp/sae/pretrained/<name>.py), and its entry here (file names in autointerp.rundir.layout). Order is
# the order an ambiguous directory's formats are named in.
FORMATS: dict[str, Format] = {
    "saelens": Format("SAELens", f"a directory with {SAE_CFG_FILE} + {SAE_WEIGHTS_FILE}",
                      lambda d: d if (d / SAE_CFG_FILE).is_file() and (d / SAE_WEIGHTS_FILE).is_file() else None,
                      lambda d: saelens_hookpoint(saelens_config(SAEFiles(d).cfg))),
    # the hookpoint is the directory's name (layers.6, layers.6.mlp)
    "sparsify": Format("sparsify", f"a hookpoint directory (e.g. layers.6) with {SAE_CFG_FILE} + {SPARSIFY_WEIGHTS_FILE}",
                       lambda d: d if (d / SAE_CFG_FILE).is_file() and (d / SPARSIFY_WEIGHTS_FILE).is_file() else None,
                       lambda d: named_hookpoint(d.name)),
    "gemma_scope": Format("Gemma Scope", f"{GEMMA_SCOPE_FILE} (or its directory, layer_L/width_W/average_l0_N)",
                          lambda d: d / GEMMA_SCOPE_FILE if (d / GEMMA_SCOPE_FILE).is_file() else None,
                          gemma_scope_hookpoint),
    "llama_scope": Format("Llama Scope", f"a directory with {LLAMA_SCOPE_HPARAMS_FILE} + {LLAMA_SCOPE_CHECKPOINT_DIR}/{LLAMA_SCOPE_WEIGHTS_FILE}",
                          lambda d: d if (d / LLAMA_SCOPE_HPARAMS_FILE).is_file() and _llama_weights(d) else None,
                          lambda d: named_hookpoint(llama_scope_hyperparams(d / LLAMA_SCOPE_HPARAMS_FILE)[3])),
}
EXPECTED = "; ".join(f"{fmt.title}: {fmt.needs}" for fmt in FORMATS.values())


def detect(path: Path) -> tuple[str, Path]:
    """(format, what its reader takes: a directory, or Gemma Scope's npz file) for a local path."""
    if not path.exists():
        raise UserError(f"SAE path {path} does not exist; give a local directory/file or a hub reference "
                        "(hf://<repo_id>/<path in repo>)")
    if path.is_file():
        if path.suffix == ".npz":
            return "gemma_scope", path
        if path.name == LLAMA_SCOPE_WEIGHTS_FILE:  # .../<sae>/checkpoints/final.safetensors
            for d in (path.parent, path.parent.parent):
                if (d / LLAMA_SCOPE_HPARAMS_FILE).is_file():
                    return "llama_scope", d
        if path.parent != path and path.name in (SAE_WEIGHTS_FILE, SPARSIFY_WEIGHTS_FILE, SAE_CFG_FILE):
            return detect(path.parent)
        raise UserError(f"SAE file {path} is of no known format; expected {EXPECTED}")
    found = [(name, target) for name, fmt in FORMATS.items() if (target := fmt.match(path)) is not None]
    if len(found) > 1:
        raise UserError(f"SAE directory {path} is ambiguous: it holds the files of {' and '.join(f for f, _ in found)}; "
                        f"point at a directory with one format's files ({EXPECTED})")
    if found:
        return found[0]
    hookpoints = sorted(d.name for d in path.iterdir() if d.is_dir() and (d / SPARSIFY_WEIGHTS_FILE).is_file())
    if hookpoints:
        raise UserError(f"{path} holds sparsify SAEs for several hookpoints ({', '.join(hookpoints[:8])}); "
                        f"point at one of them, e.g. {path / hookpoints[0]}")
    present = sorted(p.name for p in path.iterdir())[:8]
    raise UserError(f"SAE directory {path} is of no known format (it holds {', '.join(present) or 'nothing'}); "
                    f"expected {EXPECTED}")


def read_hookpoint(spec: str | dict) -> tuple[int | None, str | None, str | None, Path]:
    """(layer, site, hook, file) the SAE ``spec`` reads, from its config or path alone (no weights read)."""
    fmt, target = detect(resolve(spec))
    return (*FORMATS[fmt].hookpoint(target), target)


def fill_hookpoint(entry, *, check: bool = False) -> None:
    """Let a ``[[models]]`` entry's pretrained SAE decide its unset layer/site. Every command calls it on the
    config it loaded (``autointerp.cli_common.apply_overrides``), so a standalone ``autointerp harvest``
    harvests where ``autointerp run`` would. With ``check`` (harvest, run), a layer/site set explicitly that
    disagrees with the SAE's is a one-line error naming both; otherwise nothing is read once both are set (the
    install at ``autointerp train`` still compares the SAE with the harvest)."""
    if entry.sae is None or entry.random:
        return
    if not check and entry.layer is not None and entry.site is not None:
        return
    layer, site, hook, path = read_hookpoint(entry.sae)
    if check and hook is not None and layer is None:
        raise UserError(f"the SAE {path} reads hook {hook!r}, which autointerp cannot harvest; "
                        "use an SAE of the residual stream or of an MLP output")
    if check and entry.layer is not None and entry.layer >= 0 and layer is not None and entry.layer != layer:
        raise UserError(f"the SAE {path} reads layer {layer} ({hook}) but {entry.slug} is set to layer = {entry.layer} "
                        f"([[models]] layer or --layer); drop that setting (the SAE decides the layer) or set layer = {layer}")
    if check and entry.site is not None and site is not None and entry.site != site:
        raise UserError(f"the SAE {path} reads site {site!r} ({hook}) but {entry.slug} is set to site = \"{entry.site}\" "
                        f"([[models]] site or --site); drop that setting (the SAE decides the site) or set site = \"{site}\"")
    if entry.layer is None and layer is not None:
        entry.layer = layer
    if entry.site is None and site is not None:
        entry.site = site
