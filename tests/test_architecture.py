"""The package's shape, checked from its source: layers follow the data flow, no import cycle, every
run-directory file name is spelled in one module, compare reads data without the SAE-training code,
and no module grows past the size a reader can hold in their head."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "autointerp"

# Lowest first. A module may import modules of its own layer or of lower layers, never of higher ones.
# The stage packages follow the data flow; each stage's config.py is a leaf (no heavy imports) that the
# run config (autointerp.config) composes, so configs sit below every stage implementation. Likewise the
# torch-free pretrained-SAE formats (what a reference names) sit with the run directory, which records them.
LAYERS = [
    ["autointerp", "autointerp.errors", "autointerp.io", "autointerp.progress", "autointerp.hub", "autointerp.distributed", "autointerp.fmt"],
    ["autointerp.rundir", "autointerp.models", "autointerp.data", "autointerp.sae.pretrained.formats"],
    ["autointerp.*.config", "autointerp.llm.config"],
    ["autointerp.config"],
    ["autointerp.provenance", "autointerp.cli_common", "autointerp.cli_flags", "autointerp.stages"],
    ["autointerp.llm"],  # the LLM clients explain, eval and crosscode's latent labels share
    ["autointerp.harvest"],
    ["autointerp.sae"],
    ["autointerp.exemplars"],
    ["autointerp.explain"],
    ["autointerp.eval"],
    ["autointerp.compare"],
    ["autointerp.controls"],
    ["autointerp.crosscode"],
    ["autointerp.sweep"],
    ["autointerp.report"],
    ["autointerp.cli", "autointerp.__main__"],
]
ARTIFACTS = ("sae_weights.safetensors", "cfg.json", "exemplars.parquet", "labels.parquet", "matches.parquet",
             "harvest.json", "documents.parquet", "feature_stats.parquet", "labels.json", "stats.json",
             "metrics.json", "train.json", "compare.json", "report.json", "config.toml", "llm_cache.sqlite",
             "checkpoint.safetensors", "selection.json", "corpus.json", "exemplars_stage.json", "sweep.json", "controls.json",
             "cost.json", "label_priority.json")
MAX_LINES = 420


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _layer(module: str) -> int:
    best, depth = None, -1
    for i, names in enumerate(LAYERS):
        for name in names:
            pattern = re.escape(name).replace(r"\*", r"[a-z_]+")
            if re.fullmatch(pattern + r"(\..+)?", module) and name.count(".") > depth:
                best, depth = i, name.count(".")
    assert best is not None, f"{module} is in no layer of tests/test_architecture.py: place it"
    return best


def _imports(path: Path, module: str) -> set[str]:
    """Every autointerp module ``module`` imports, at module level or inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "autointerp"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] != "autointerp":
                continue
            for alias in node.names:  # `from autointerp import distributed` imports a module
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {m for m in found if m in MODULES}


MODULES = _modules()
GRAPH = {m: _imports(p, m) for m, p in MODULES.items()}


def test_no_import_runs_upward():
    upward = [f"{m} (layer {_layer(m)}) imports {d} (layer {_layer(d)})"
              for m, deps in GRAPH.items() for d in deps if _layer(d) > _layer(m)]
    assert upward == []


def test_no_import_cycle_between_files():
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in sorted(GRAPH[m]):
            if d == m or (d == "autointerp" and m.startswith("autointerp.")):
                continue
            if state.get(d) == 1:
                cycles.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m, [m])
    assert cycles == []


@pytest.mark.parametrize("name", ARTIFACTS)
def test_each_artifact_name_is_spelled_in_one_module(name):
    spelled = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                     if re.search(r"[\"'/]" + re.escape(name) + r"[\"']", p.read_text(encoding="utf-8")))
    assert spelled == ["rundir/layout.py"]


def test_compare_reads_activations_without_the_sae_training_code():
    training = {"autointerp.sae.trainer", "autointerp.sae.metrics", "autointerp.sae.splice", "autointerp.sae.sparse_ops",
                "autointerp.sae.stage", "autointerp.harvest.harvester", "autointerp.harvest.stage", "autointerp.exemplars.mine"}
    offenders = {m: sorted(GRAPH[m] & training) for m in GRAPH if m.startswith("autointerp.compare") and GRAPH[m] & training}
    assert offenders == {}


def test_every_stage_has_the_same_shape():
    """Every stage of `autointerp run` is one Stage whose package has commands/stage/config modules, whose
    `run` takes (cfg, *, overwrite, models) and whose reads come before it; its command is derived from it."""
    import inspect

    from autointerp.cli import STAGES, app, run_order
    from autointerp.config import RunConfig

    assert [s.name for s in STAGES] == ["harvest", "train", "exemplars", "explain", "score", "compare", "controls", "crosscode", "sweep", "report"]
    order = [s.name for s in run_order(RunConfig())]
    commands = {c.name: c.callback for c in app.registered_commands}
    for stage in STAGES:
        package = stage.module.rsplit(".", 1)[0]
        for part in ("commands", "stage", "config"):
            assert f"{package}.{part}" in MODULES, f"{package.replace('.', '/')}/{part}.py is missing"
        params = inspect.signature(stage.load()).parameters
        assert list(params)[:3] == ["cfg", "overwrite", "models"], stage.name
        assert params["overwrite"].kind is params["models"].kind is inspect.Parameter.KEYWORD_ONLY, stage.name
        assert all(order.index(r) < order.index(stage.name) for r in stage.reads), f"{stage.name} reads {stage.reads}, run in order {order}"
        assert stage.name in commands, f"autointerp {stage.name} is not a command"
        named = {p.name for p in inspect.signature(commands[stage.name]).parameters.values()}
        assert {f.param for f in stage.flags()} <= named  # every derived flag is an option of the command
    for path in PACKAGE.rglob("*.py"):  # the resolved config is saved in one place: Stage.run
        if "save_resolved_config(" in path.read_text(encoding="utf-8"):
            assert path.name in ("stages.py", "provenance.py"), f"{path} saves the run config itself; Stage.run does it"


def test_no_module_is_too_long_to_read():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def test_layout_page_names_every_package_and_only_real_paths():
    page = (PACKAGE.parent / "docs" / "layout.md").read_text(encoding="utf-8")
    layout = page.split("# Layout", 1)[1].split("```", 2)[1]
    named = set(re.findall(r"autointerp/([a-z_]+)/", layout))
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert named == packages
    for line in layout.strip().splitlines():
        first = line.split()[0].rstrip(",")
        assert (PACKAGE.parent / first).exists(), f"docs/layout.md names {first}, which does not exist"
