"""Run the real delphi and neuronpedia code for tests/explain/test_interop_compat.py, inside scripts/interop_env.sh's venv.

    .venv-interop/bin/python scripts/interop_probe.py PLAN.json

PLAN.json (paths absolute):
    {"delphi_read":  [{"dir": ".../explanations", "latents": [["layers.6", 3], ...]}],
     "delphi_write": [{"dir": ".../explanations", "module": "layers.6", "answers": [[3, "LLM answer"], ...]}],
     "delphi_dump":  [{"dir": ".../explanations", "items": [["layers.6", 3, "explanation"], ...]}],
     "neuronpedia":  [{"file": ".../np.json"}]}

- delphi_read: each latent through ``delphi.explainers.explanation_loader`` (what a scoring run with a
  ``explanation_dir`` uses) and through delphi's ``--explainer none`` reader (``none_postprocessor``).
- delphi_write: delphi's ``DefaultExplainer`` answered by a scripted client (one answer per latent; an answer
  without "[EXPLANATION]:" is a parse failure, as with a real LLM), its result written by delphi's own
  ``explainer_postprocess``.
- delphi_dump: the given explanations written by ``explainer_postprocess`` alone (for a byte comparison).
- neuronpedia: every record through ``Explanation.from_np_db_json``, the ``Explanation`` dataclass, the three
  pydantic ``NPFeature`` models, and scripts/neuronpedia_upload.py's ``upload`` (source set creation and
  ``upload_batch``) with only ``NPRequest.send_request`` replaced, to capture the payloads instead of sending.

delphi's writer and ``--explainer none`` reader are closures inside ``delphi.__main__.process_cache``: their
source is taken from the installed delphi/__main__.py and compiled as is. delphi.clients/__init__ (vllm) and
delphi.latents/__init__ (faiss, sentence-transformers) are not run: their packages are registered bare, so
``delphi.clients.client`` and ``delphi.latents.latents`` import as the real modules they are.
Prints one JSON line (the last line of stdout); exit code 0 unless the packages cannot be imported.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import importlib.util
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import delphi


def _bare_package(name: str) -> None:
    """Register package ``name`` with its real __path__ without running its __init__ (eager GPU imports)."""
    spec = importlib.util.find_spec(name)
    sys.modules[name] = importlib.util.module_from_spec(spec)


for _name in ("delphi.clients", "delphi.latents"):
    _bare_package(_name)

import orjson  # noqa: E402
import torch  # noqa: E402
from delphi.clients.client import Client, Response  # noqa: E402
from delphi.explainers import DefaultExplainer, explanation_loader  # noqa: E402
from delphi.explainers.explainer import ExplainerResult  # noqa: E402
from delphi.latents.latents import ActivatingExample, Latent, LatentRecord  # noqa: E402
from delphi.pipeline import process_wrapper  # noqa: E402

SCRIPTS = Path(__file__).resolve().parent


def delphi_closure(name: str, namespace: dict[str, Any]):
    """The nested function ``name`` of delphi/__main__.py, compiled from the installed source."""
    origin = importlib.util.find_spec("delphi.__main__").origin
    tree = ast.parse(Path(origin).read_text(encoding="utf-8"), origin)
    nodes = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name]
    if len(nodes) != 1:
        raise RuntimeError(f"delphi/__main__.py has {len(nodes)} functions named {name}; delphi's writer moved")
    exec(compile(ast.Module(body=nodes, type_ignores=[]), origin, "exec"), namespace)
    return namespace[name]


def _record(module: str, index: int) -> LatentRecord:
    acts = torch.tensor([0.0, 2.0, 5.0, 0.5])
    example = ActivatingExample(tokens=torch.tensor([10, 11, 12, 13]), activations=acts,
                                normalized_activations=torch.floor(acts / acts.max() * 10), str_tokens=["the", " hot", " lava", "."])
    return LatentRecord(latent=Latent(module_name=module, latent_index=index), train=[example, example])


class ScriptedClient(Client):
    """delphi's Client answering every prompt with one fixed text (the LLM's answer)."""

    def __init__(self, answer: str):
        super().__init__("scripted")
        self.answer = answer

    async def generate(self, prompt, **kwargs) -> Response:
        return Response(text=self.answer)


def delphi_read(job: dict) -> list[dict]:
    none_reader = delphi_closure("none_postprocessor", {"orjson": orjson, "explanations_path": Path(job["dir"]),
                                                        "ExplainerResult": ExplainerResult})
    out = []
    for module, index in job["latents"]:
        record = _record(module, index)
        loaded = asyncio.run(explanation_loader(record, explanation_dir=job["dir"]))
        try:
            offline = none_reader(ExplainerResult(record=record, explanation="")).explanation
        except Exception as exc:  # noqa: BLE001 - reported to the test
            offline = f"ERROR {exc!r}"
        out.append({"latent": str(record.latent), "loader": loaded.explanation, "none_explainer": offline})
    return out


def delphi_write(job: dict) -> dict[str, str]:
    writer = delphi_closure("explainer_postprocess", {"orjson": orjson, "explanations_path": Path(job["dir"])})
    Path(job["dir"]).mkdir(parents=True, exist_ok=True)
    out = {}
    for index, answer in job["answers"]:
        explainer = DefaultExplainer(ScriptedClient(answer), threshold=0.3, verbose=False)
        result = asyncio.run(process_wrapper(explainer, postprocess=writer)(_record(job["module"], index)))
        out[str(result.record.latent)] = result.explanation
    return out


def delphi_dump(job: dict) -> None:
    writer = delphi_closure("explainer_postprocess", {"orjson": orjson, "explanations_path": Path(job["dir"])})
    Path(job["dir"]).mkdir(parents=True, exist_ok=True)
    for module, index, text in job["items"]:
        writer(ExplainerResult(record=_record(module, index), explanation=text))


def _each(records: list[dict], check) -> list[dict]:
    out = []
    for record in records:
        try:
            out.append({"ok": True, "value": check(record)})
        except Exception as exc:  # noqa: BLE001 - reported per record
            out.append({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
    return out


def neuronpedia(job: dict) -> dict[str, Any]:
    from neuronpedia.np_explanation import Explanation
    from neuronpedia.requests.base_request import NPRequest
    from neuronpedia.types.common.feature import NPFeature as CommonFeature
    from neuronpedia.types.inference.steer import NPFeature as SteerFeature
    from neuronpedia.types.inference.util import NPFeature as UtilFeature

    records = json.loads(Path(job["file"]).read_text(encoding="utf-8"))
    fields = [f.name for f in dataclasses.fields(Explanation)]
    out: dict[str, Any] = {
        "from_np_db_json": _each(records, lambda r: dataclasses.asdict(Explanation.from_np_db_json(r))),
        "dataclass": _each(records, lambda r: dataclasses.asdict(Explanation(**{k: r[k] for k in fields}))),
    }
    for name, cls in (("common", CommonFeature), ("util", UtilFeature), ("steer", SteerFeature)):
        out[f"np_feature_{name}"] = _each(records, lambda r, cls=cls: cls(**r).model_dump())
    sent: list[dict] = []

    def capture(self, uri: str = "", method: str = "POST", **kwargs):
        sent.append({"endpoint": self.endpoint, "uri": uri, "method": method, "json": kwargs.get("json")})
        if self.endpoint == "source-set":
            body = kwargs.get("json") or {}
            return {"name": body.get("name"), "modelId": body.get("modelId"), "description": None, "urls": [], "sources": []}
        return {"ok": True}

    sys.path.insert(0, str(SCRIPTS))
    import neuronpedia_upload

    NPRequest.send_request = capture
    os.environ.setdefault("NEURONPEDIA_API_KEY", "probe-key-not-sent")
    try:
        neuronpedia_upload.upload(records, create_source_set=True)
        out["upload"] = {"ok": True, "requests": sent}
    except Exception as exc:  # noqa: BLE001
        out["upload"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    return out


def main(plan_path: str) -> None:
    import importlib.metadata as md

    plan = json.loads(Path(plan_path).read_text(encoding="utf-8"))
    results: dict[str, Any] = {"versions": {n: md.version(n) for n in ("eai-delphi", "neuronpedia", "pydantic", "torch")}}
    results["delphi_read"] = [delphi_read(job) for job in plan.get("delphi_read", [])]
    results["delphi_write"] = [delphi_write(job) for job in plan.get("delphi_write", [])]
    for job in plan.get("delphi_dump", []):
        delphi_dump(job)
    results["neuronpedia"] = [neuronpedia(job) for job in plan.get("neuronpedia", [])]
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1])
