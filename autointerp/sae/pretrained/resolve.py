"""Where a ``sae = ...`` reference lives on disk: a local path as given, or a hub reference downloaded
(only the files under that path) into the Hugging Face cache.

Hub references: ``"hf://<owner>/<repo>/<path in repo>"`` or ``{repo = "<owner>/<repo>", path = "<path>",
revision = "<optional>"}``. Offline (HF_HUB_OFFLINE or no route to the hub), a reference that is not
already cached is a one-line error that names the local-path alternative.
"""

from __future__ import annotations

from pathlib import Path

from autointerp.errors import UserError
from autointerp.hub import hub_reachable

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
    parts = spec[len(HF_PREFIX):].strip("/").split("/")
    if len(parts) < 2 or not all(parts[:2]):
        raise UserError(f"sae = {spec!r}: a hub reference is hf://<owner>/<repo>/<path in repo>")
    return "/".join(parts[:2]), "/".join(parts[2:]), None


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
