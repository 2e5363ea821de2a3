"""Upload labels exported by ``autointerp export-labels --format neuronpedia`` to Neuronpedia, through the
neuronpedia package's own classes (``pip install neuronpedia``; the API key from NEURONPEDIA_API_KEY).

    python scripts/neuronpedia_upload.py np/gemma-3-270m.json [--create-source-set]

Why a script, not an autointerp command: uploading needs the neuronpedia package and an account, neither
of which autointerp depends on. The model must exist on Neuronpedia (``neuronpedia.np_model.Model.new``);
``--create-source-set`` creates the source set first (Neuronpedia then makes one source per layer,
``<layer>-<set>``). Each record becomes ``Explanation.from_np_db_json(record)`` on a ``Feature``, sent with
``Source.upload_batch`` in batches of the package's maximum (128); no activations are sent.
tests/explain/test_interop_compat.py runs ``upload`` on the real package with only the HTTP request captured.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict


def features(records: list[dict]) -> dict[tuple[str, str], list]:
    """(model id, source) -> Features (sorted by index), each with its explanations."""
    from neuronpedia.np_explanation import Explanation
    from neuronpedia.np_feature import Feature

    groups: dict[tuple[str, str], dict[int, Feature]] = defaultdict(dict)
    for record in records:
        explanation = Explanation.from_np_db_json(record)
        group = groups[(explanation.modelId, explanation.source)]
        feature = group.setdefault(explanation.index, Feature(modelId=explanation.modelId, source=explanation.source,
                                                              index=explanation.index, explanations=[]))
        feature.explanations.append(explanation)
    return {key: [group[i] for i in sorted(group)] for key, group in groups.items()}


def upload(records: list[dict], create_source_set: bool = False) -> list:
    """Upload every record; the API's responses, one per batch."""
    from neuronpedia.np_source import Source
    from neuronpedia.np_source_set import SourceSet
    from neuronpedia.requests.feature_request import MAX_FEATURES_PER_BATCH

    responses, created = [], set()
    for (model_id, source), batch in features(records).items():
        set_name = source.partition("-")[2]
        if create_source_set and (model_id, set_name) not in created:
            SourceSet.new(name=set_name, model_id=model_id)
            created.add((model_id, set_name))
        target = Source(id=source, model_id=model_id, set_name=set_name)
        for start in range(0, len(batch), MAX_FEATURES_PER_BATCH):
            responses.append(target.upload_batch(batch[start:start + MAX_FEATURES_PER_BATCH]))
        print(f"uploaded {len(batch)} features to {model_id}/{source}", file=sys.stderr)
    return responses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", help="a JSON list written by `autointerp export-labels --format neuronpedia`")
    parser.add_argument("--create-source-set", action="store_true", help="create the source set on Neuronpedia first")
    args = parser.parse_args(argv)
    with open(args.file, encoding="utf-8") as f:
        upload(json.load(f), args.create_source_set)
    return 0


if __name__ == "__main__":
    sys.exit(main())
