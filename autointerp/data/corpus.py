"""Corpus: documents {doc_id, text} from the embedded factbook, local files, or a Hugging Face dataset.

Pipeline: ids assigned in canonical order -> seeded shuffle -> clean (CRLF -> LF, strip) -> drop texts
shorter than ``min_chars`` -> drop exact duplicates (hash of the cleaned text) -> stop at ``max_docs``.
Finite sources are shuffled with a numpy permutation; streaming hub datasets with a 10_000-row buffer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autointerp.data.local_files import is_hub_repo_dir, looks_like_path, read_local_records
from autointerp.errors import UserError
from autointerp.hub import hub_reachable
from autointerp.io import atomic_path, parquet_errors, read_json, write_json
from autointerp.rundir.layout import CORPUS_META_FILE, DOCUMENTS_FILE


@dataclass
class CorpusConfig:
    dataset: str = "factbook"  # "factbook" | a path to a file or directory | a hub dataset name
    config_name: str | None = None  # hub config, e.g. "20231101.en"
    split: str = "train"  # hub dataset split
    text_field: str = "text"  # column/key holding the text (local jsonl/csv/parquet and hub)
    entity_field: str | None = None  # column/key naming each document's entity (e.g. an article title), used by the abstraction metric; unset: the factbook's country, else every document is its own entity
    streaming: bool = True  # hub only
    shuffle: bool = True  # shuffle the documents before taking the token budget
    seed: int = 0  # corpus shuffle seed
    min_chars: int = 64  # documents shorter than this (after cleaning/stripping) are dropped
    dedup: bool = True  # exact-duplicate removal (hash of the text)
    max_docs: int | None = None  # at most this many documents (unset: as many as the token budget holds)


@dataclass(frozen=True)
class Document:
    doc_id: str
    text: str
    entity: str | None = None  # what the document is about (see CorpusConfig.entity_field); None: the document itself


def entity_source(cfg: CorpusConfig) -> str:
    """In words, where the documents' entities come from (the report states it)."""
    if cfg.entity_field:
        return f"the corpus field '{cfg.entity_field}'"
    if cfg.dataset == "factbook":
        return "the factbook country of each section"
    return "none: the corpus names no entity field, so every document is its own entity ([corpus] entity_field)"


def saved_entity_source(out_dir: Path) -> str:
    """``entity_source`` of the corpus saved in ``out_dir`` (as its corpus.json records it)."""
    meta = Path(out_dir) / CORPUS_META_FILE
    saved = read_json(meta).get("config") if meta.is_file() else None
    known = {f.name for f in dataclasses.fields(CorpusConfig)}
    return entity_source(CorpusConfig(**{k: v for k, v in corpus_settings(saved).items() if k in known}))


def corpus_settings(saved: dict | None) -> dict:
    """Saved ``[corpus]`` settings with today's defaults for keys added since (a run made before a new key
    existed was made with its default)."""
    return dataclasses.asdict(CorpusConfig()) | dict(saved or {})


@dataclass
class CorpusStats:
    n_seen: int = 0
    n_kept: int = 0
    n_duplicates: int = 0
    n_too_short: int = 0
    n_replaced: int = 0  # undecodable (non-UTF-8) byte sequences replaced with U+FFFD
    files_with_replacements: list[str] = field(default_factory=list)


def clean_text(text: str) -> str:
    """Normalise line endings, drop a BOM and lone surrogates, strip surrounding whitespace."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff").strip()
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (e.g. from JSON "\ud800") cannot be stored as UTF-8
        text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


def validate_corpus(cfg: CorpusConfig) -> None:
    """``[corpus]`` values a run can use (checked where the config is read and before collecting)."""
    if not str(cfg.dataset).strip():
        raise UserError("corpus dataset is empty; set dataset to 'factbook', a local path, or a hub dataset name")
    if cfg.min_chars < 0:
        raise UserError(f"min_chars must be >= 0 (got {cfg.min_chars}); set min_chars to 0 or more")
    if cfg.max_docs is not None and cfg.max_docs <= 0:
        raise UserError(f"max_docs must be positive (got {cfg.max_docs}); set a positive number or leave it unset")


def _shuffled(records: list[tuple[str, str]], cfg: CorpusConfig) -> Iterator[tuple[str, str]]:
    if not cfg.shuffle:
        return iter(records)
    order = np.random.default_rng(cfg.seed).permutation(len(records))
    return (records[i] for i in order)


def _source_records(cfg: CorpusConfig, stats: CorpusStats) -> Iterator[tuple[str, str]]:
    """Raw (doc_id, text) records in seeded order; source errors are raised here, eagerly."""
    name = str(cfg.dataset)
    if name == "factbook":
        from autointerp.data.factbook import factbook_records

        return _shuffled(factbook_records(), cfg)
    path = Path(name).expanduser()
    if not looks_like_path(name) or (path.is_dir() and is_hub_repo_dir(path)):
        return hub_records(name, cfg)
    records, report = read_local_records(path, cfg.text_field)
    stats.n_replaced += report.n_replaced
    stats.files_with_replacements.extend(report.replaced)
    return _shuffled(records, cfg)


def iter_documents(cfg: CorpusConfig, stats: CorpusStats | None = None) -> Iterator[Document]:
    """Cleaned, filtered, deduplicated documents in seeded order; ``stats`` is updated as they are consumed.

    Source problems (missing path, offline hub, missing text field ...) raise UserError at call time.
    """
    validate_corpus(cfg)
    stats = stats if stats is not None else CorpusStats()
    records = _source_records(cfg, stats)
    return _filter(records, cfg, stats)


def _filter(records: Iterable[tuple[str, str]], cfg: CorpusConfig, stats: CorpusStats) -> Iterator[Document]:
    seen: set[bytes] = set()
    for doc_id, raw in records:
        stats.n_seen += 1
        text = clean_text(raw)
        if len(text) < cfg.min_chars:
            stats.n_too_short += 1
            continue
        if cfg.dedup:
            digest = hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()
            if digest in seen:
                stats.n_duplicates += 1
                continue
            seen.add(digest)
        stats.n_kept += 1
        yield Document(doc_id, text)
        if cfg.max_docs is not None and stats.n_kept >= cfg.max_docs:
            return


def collect_documents(
    cfg: CorpusConfig,
    count_tokens: Callable[[str], int] | None = None,
    max_tokens: int | None = None,
) -> tuple[list[Document], CorpusStats]:
    """Take documents in (seeded, shuffled) order until sum(count_tokens(text)) >= max_tokens (whole documents)
    or max_docs; raise UserError if nothing is left."""
    if max_tokens is not None and count_tokens is None:
        raise ValueError("collect_documents: max_tokens needs count_tokens")
    stats = CorpusStats()
    docs: list[Document] = []
    n_tokens = 0
    for doc in iter_documents(cfg, stats):
        docs.append(doc)
        if max_tokens is not None:
            n_tokens += count_tokens(doc.text)  # type: ignore[misc]
            if n_tokens >= max_tokens:
                break
    if docs and (cfg.entity_field or cfg.dataset == "factbook"):
        docs = _with_entities(docs, cfg)
    if not docs:
        is_hub = cfg.dataset != "factbook" and not looks_like_path(str(cfg.dataset))
        src = f"dataset '{cfg.dataset}'" + (f" (split '{cfg.split}')" if is_hub else "")
        if stats.n_seen == 0:
            raise UserError(f"{src} contains no documents (empty file or split); choose a dataset with text in it")
        raise UserError(
            f"no documents left from {src}: {stats.n_seen} seen, {stats.n_too_short} shorter than "
            f"min_chars={cfg.min_chars}, {stats.n_duplicates} duplicates; lower min_chars"
            + (", set dedup = false" if stats.n_duplicates else "")
            + " or use a larger corpus"
        )
    return docs, stats


def _with_entities(docs: list[Document], cfg: CorpusConfig) -> list[Document]:
    """The chosen documents with their entity: the factbook's country, or the value of ``entity_field`` read
    from the same source by the same reader (so ids line up); a document without one is its own entity."""
    if not cfg.entity_field:
        from autointerp.data.factbook import factbook_entity

        return [dataclasses.replace(d, entity=factbook_entity(d.doc_id)) for d in docs]
    wanted = {d.doc_id for d in docs}
    source = dataclasses.replace(cfg, text_field=cfg.entity_field, shuffle=False)
    found: dict[str, str] = {}
    for doc_id, value in _source_records(source, CorpusStats()):
        if doc_id in wanted:
            found[doc_id] = clean_text(value) or None
            if len(found) == len(wanted):
                break
    return [dataclasses.replace(d, entity=found.get(d.doc_id)) for d in docs]


def save_documents(out_dir: Path, docs: list[Document], stats: CorpusStats, cfg: CorpusConfig) -> None:
    """Atomically write the run's corpus folder: the documents (doc_id, text) and their description."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = pa.table({"doc_id": [d.doc_id for d in docs], "text": [d.text for d in docs], "entity": [d.entity for d in docs]},
                     schema=pa.schema([("doc_id", pa.string()), ("text", pa.string()), ("entity", pa.string())]))
    with atomic_path(out_dir / DOCUMENTS_FILE) as tmp:
        pq.write_table(table, tmp)
    meta = {
        "config": dataclasses.asdict(cfg),
        "stats": dataclasses.asdict(stats),
        "n_docs": len(docs),
        "n_chars": sum(len(d.text) for d in docs),
    }
    write_json(out_dir / CORPUS_META_FILE, meta)


def load_saved_documents(out_dir: Path) -> list[Document]:
    import pyarrow.parquet as pq

    path = Path(out_dir) / DOCUMENTS_FILE
    if not path.is_file():
        raise UserError(f"no saved corpus at '{path}'; run the corpus stage first")
    with parquet_errors(path):
        columns = ["doc_id", "text"] + (["entity"] if "entity" in pq.read_schema(path).names else [])
        table = pq.read_table(path, columns=columns)
    ids = table.column("doc_id").to_pylist()
    if "entity" in columns:
        entities = table.column("entity").to_pylist()
    else:  # saved before entities were: the factbook's are recovered from its ids
        from autointerp.data.factbook import factbook_entity

        meta = Path(out_dir) / CORPUS_META_FILE
        factbook = meta.is_file() and (read_json(meta).get("config") or {}).get("dataset") == "factbook"
        entities = [factbook_entity(i) if factbook else None for i in ids]
    return [Document(i, t, e) for i, t, e in zip(ids, table.column("text").to_pylist(), entities)]


def corpus_fingerprint(docs: list[Document]) -> str:
    """sha256 over (doc_id, text) in order: the identity of a corpus that harvests record and compare checks."""
    h = hashlib.sha256()
    for doc in docs:
        h.update(doc.doc_id.encode())
        h.update(b"\0")
        h.update(doc.text.encode("utf-8", "surrogatepass"))
        h.update(b"\1")
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------- hub
_SHUFFLE_BUFFER = 10_000


@contextlib.contextmanager
def _hub_offline_mode() -> Iterator[None]:
    """Make datasets/huggingface_hub use only local files (their flags are read at import time)."""
    import datasets.config
    import huggingface_hub.constants as hub_constants

    saved = datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved


def load_hub_dataset(
    name: str,
    config_name: str | None = None,
    split: str = "train",
    streaming: bool = True,
    cache_dir: str | None = None,
):
    """``datasets.load_dataset`` that fails fast offline; ``name`` may also be a local hub-layout directory.

    When the hub is unreachable, only already-cached data is used (non-streaming) and a missing dataset is a
    UserError instead of ~25 s of retries.
    """
    import datasets

    local = Path(name).expanduser().is_dir()
    offline = not local and not hub_reachable()
    try:
        with _hub_offline_mode() if (local or offline) else contextlib.nullcontext():
            path = str(Path(name).expanduser()) if local else name
            return datasets.load_dataset(
                path, config_name, split=split, streaming=streaming and not offline, cache_dir=cache_dir
            )
    except (ConnectionError, FileNotFoundError, ValueError, OSError) as exc:
        if offline:
            raise UserError(
                f"dataset '{name}' is not available offline: the Hugging Face hub is unreachable; use the embedded "
                "'factbook', a local .txt/.jsonl/.parquet/.csv file or directory, or a cached dataset"
            ) from exc
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(
            f"cannot load dataset '{name}' (config {config_name!r}, split '{split}'): {detail}; "
            "check the name, config_name and split"
        ) from exc


def _buffer_shuffle(items: Iterable, seed: int, buffer_size: int = _SHUFFLE_BUFFER) -> Iterator:
    """Seeded buffer shuffle (like IterableDataset.shuffle, without reordering shards)."""
    rng = np.random.default_rng(seed)
    buffer: list = []
    for item in items:
        if len(buffer) < buffer_size:
            buffer.append(item)
            continue
        i = int(rng.integers(buffer_size))
        yield buffer[i]
        buffer[i] = item
    rng.shuffle(buffer)
    yield from buffer


def hub_records(name: str, cfg: CorpusConfig) -> Iterator[tuple[str, str]]:
    """(doc_id, text) from a hub (or hub-layout local) dataset; ids from an 'id' column, else f"{split}:{row}"."""
    import datasets

    ds = load_hub_dataset(name, cfg.config_name, cfg.split, cfg.streaming)
    columns = list(ds.column_names or [])
    if columns and cfg.text_field not in columns:
        raise _missing_column(name, cfg.text_field, columns)
    has_id = "id" in columns
    if columns:
        ds = ds.select_columns(list(dict.fromkeys([cfg.text_field] + (["id"] if has_id else []))))

    def text_of(row: dict) -> str:
        if cfg.text_field not in row:
            raise _missing_column(name, cfg.text_field, list(row))
        value = row[cfg.text_field]
        return value if isinstance(value, str) else ("" if value is None else str(value))

    if isinstance(ds, datasets.IterableDataset):
        if has_id:  # ids travel with the rows, so datasets' shuffle (which also reorders shards) is safe
            rows = ds.shuffle(seed=cfg.seed, buffer_size=_SHUFFLE_BUFFER) if cfg.shuffle else ds
            return ((str(row["id"]), text_of(row)) for row in rows)
        indexed = ((f"{cfg.split}:{i}", row) for i, row in enumerate(ds))  # index before shuffling: seed-independent
        if cfg.shuffle:
            indexed = _buffer_shuffle(indexed, cfg.seed)
        return ((doc_id, text_of(row)) for doc_id, row in indexed)
    order = np.random.default_rng(cfg.seed).permutation(len(ds)) if cfg.shuffle else np.arange(len(ds))
    rows = ds.select(order) if cfg.shuffle else ds
    return ((str(row["id"]) if has_id else f"{cfg.split}:{int(i)}", text_of(row)) for i, row in zip(order, rows))


def _missing_column(name: str, text_field: str, columns: list[str]) -> UserError:
    available = ", ".join(columns)
    return UserError(
        f"dataset '{name}' has no column '{text_field}' (available: {available}); set text_field to one of them"
    )
