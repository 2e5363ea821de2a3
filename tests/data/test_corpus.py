"""Corpus loading: embedded factbook, local files, hub code path (with a local repo-layout directory)."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from autointerp.data.corpus import (
    CorpusConfig,
    CorpusStats,
    Document,
    collect_documents,

    iter_documents,
    load_hub_dataset,
    load_saved_documents,
    save_documents,
)
from autointerp.data.factbook import clean_html
from autointerp.errors import UserError
from autointerp.hub import hub_reachable

TAG_RE = re.compile(r"</?[a-zA-Z][^<>]*>")
LONG = "lorem ipsum dolor sit amet " * 4  # > 64 chars


def _cfg(path: Path | str, **kw) -> CorpusConfig:
    kw.setdefault("min_chars", 1)
    return CorpusConfig(dataset=str(path), **kw)


def _ids(cfg: CorpusConfig) -> list[str]:
    return [d.doc_id for d in iter_documents(cfg)]


# ----------------------------------------------------------------------------------------- factbook
def test_factbook_loads_clean_documents():
    start = time.perf_counter()
    docs, stats = collect_documents(CorpusConfig())
    assert time.perf_counter() - start < 10
    assert len(docs) > 1000 and stats.n_kept == len(docs)
    assert stats.n_seen == stats.n_kept + stats.n_too_short + stats.n_duplicates
    ids = [d.doc_id for d in docs]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("factbook/") for i in ids)
    by_id = {d.doc_id: d.text for d in docs}
    france = by_id["factbook/fr/geography"]
    assert france.startswith("France: Geography\n\nLocation: ")
    assert "Area - total: 643,801 sq km" in france
    assert "\n\n" not in france.split("\n\n", 1)[1]  # one field per line, no empty fields
    assert "factbook/gm/people-and-society" in by_id and by_id["factbook/gm/people-and-society"].startswith("Germany: ")
    for text in by_id.values():
        assert not TAG_RE.search(text), text[:200]
        assert "\xa0" not in text and "&nbsp;" not in text and "&eacute;" not in text
        assert len(text) >= 64
    assert "Côte d'Ivoire: " in by_id["factbook/iv/geography"]


def test_factbook_ids_stable_and_shuffle_seeded():
    a = _ids(CorpusConfig(seed=0))
    a_again = _ids(CorpusConfig(seed=0))
    b = _ids(CorpusConfig(seed=1))
    assert a == a_again
    assert a != b and sorted(a) == sorted(b)
    unshuffled = _ids(CorpusConfig(shuffle=False))
    assert unshuffled != a and sorted(unshuffled) == sorted(a)
    assert unshuffled[0].startswith("factbook/aa/")  # canonical order: sorted by country code


def test_clean_html():
    raw = "<strong>metropolitan France:</strong> 46 00 N<br><br><em>Reunion</em>&nbsp;"
    raw += "&eacute;t&eacute; &lt;1%  x<!-- c -->"
    assert clean_html(raw) == "metropolitan France: 46 00 N\nReunion été <1% x"


# ------------------------------------------------------------------------------------- local files
def test_txt_file(tmp_path):
    (tmp_path / "a.txt").write_text("\ufeff  Hello world.\r\nSecond line.  \n\n", encoding="utf-8")
    docs, stats = collect_documents(_cfg(tmp_path / "a.txt"))
    assert docs == [Document("a.txt:0", "Hello world.\nSecond line.")]
    assert stats.n_seen == 1 and stats.n_replaced == 0


def test_jsonl_and_json_files(tmp_path):
    rows = [{"text": f"doc {i} {LONG}", "other": i} for i in range(5)]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:3]) + "\n\n" + json.dumps(rows[3]) + "\n")
    docs, _ = collect_documents(_cfg(tmp_path / "d.jsonl", shuffle=False))
    assert [d.doc_id for d in docs] == ["d.jsonl:0", "d.jsonl:1", "d.jsonl:2", "d.jsonl:3"]
    assert docs[3].text == rows[3]["text"].strip()
    (tmp_path / "arr.json").write_text(json.dumps(rows))  # a .json file may hold one array
    assert len(collect_documents(_cfg(tmp_path / "arr.json"))[0]) == 5
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{not json}\n')
    with pytest.raises(UserError, match="line 2"):
        iter_documents(_cfg(tmp_path / "bad.jsonl"))


def test_csv_and_text_field_selection(tmp_path):
    (tmp_path / "t.csv").write_text('id,body\n1,"first, with comma\nand a newline"\n2,second body\n', encoding="utf-8")
    docs, _ = collect_documents(_cfg(tmp_path / "t.csv", text_field="body", shuffle=False))
    assert docs == [Document("t.csv:0", "first, with comma\nand a newline"), Document("t.csv:1", "second body")]


def test_parquet_file(tmp_path):
    pq.write_table(pa.table({"content": [f"p{i} {LONG}" for i in range(4)], "n": [1, 2, 3, 4]}), tmp_path / "x.parquet")
    docs, _ = collect_documents(_cfg(tmp_path / "x.parquet", text_field="content", shuffle=False))
    assert [d.doc_id for d in docs] == [f"x.parquet:{i}" for i in range(4)]
    assert docs[2].text.startswith("p2 lorem")


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet"])
def test_missing_text_field_names_available_columns(tmp_path, kind):
    path = tmp_path / f"f.{kind}"
    if kind == "jsonl":
        path.write_text(json.dumps({"body": LONG, "title": "t"}) + "\n")
    elif kind == "csv":
        path.write_text(f"body,title\n{LONG},t\n")
    else:
        pq.write_table(pa.table({"body": [LONG], "title": ["t"]}), path)
    with pytest.raises(UserError) as exc:
        iter_documents(_cfg(path))
    msg = str(exc.value)
    assert "'text'" in msg and "body" in msg and "title" in msg and "text_field" in msg and "\n" not in msg


def test_directory_of_mixed_files(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "b.txt").write_text("B " + LONG)
    (tmp_path / "sub" / "a.jsonl").write_text("\n".join(json.dumps({"text": f"A{i} {LONG}"}) for i in range(2)))
    (tmp_path / "sub" / "c.csv").write_text(f"text\nC0 {LONG}\n")
    pq.write_table(pa.table({"text": ["D0 " + LONG]}), tmp_path / "d.parquet")
    (tmp_path / "notes.md").write_text("ignored " + LONG)
    (tmp_path / ".hidden" / "h.txt").write_text("hidden " + LONG)
    ids = _ids(_cfg(tmp_path, shuffle=False))
    assert ids == ["b.txt:0", "d.parquet:0", "sub/a.jsonl:0", "sub/a.jsonl:1", "sub/c.csv:0"]
    canonical = {d.doc_id: d.text for d in iter_documents(_cfg(tmp_path, shuffle=False))}
    shuffled = list(iter_documents(_cfg(tmp_path, seed=3)))
    assert [d.doc_id for d in shuffled] != ids and sorted(d.doc_id for d in shuffled) == ids
    assert all(canonical[d.doc_id] == d.text for d in shuffled)  # ids stay bound to their text
    assert canonical["sub/a.jsonl:1"].startswith("A1 ") and canonical["d.parquet:0"].startswith("D0 ")


def test_dedup_and_min_chars(tmp_path):
    rows = ["same text " + LONG, "same text " + LONG, "  same text " + LONG + "\n", "short", "other " + LONG]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in rows))
    docs, stats = collect_documents(CorpusConfig(dataset=str(tmp_path / "d.jsonl"), min_chars=64))
    assert len(docs) == 2 and {d.text for d in docs} == {rows[0].strip(), rows[4].strip()}
    assert (stats.n_seen, stats.n_kept, stats.n_duplicates, stats.n_too_short) == (5, 2, 2, 1)
    docs, stats = collect_documents(CorpusConfig(dataset=str(tmp_path / "d.jsonl"), min_chars=64, dedup=False))
    assert len(docs) == 4 and stats.n_duplicates == 0
    docs, stats = collect_documents(CorpusConfig(dataset=str(tmp_path / "d.jsonl"), min_chars=0, max_docs=3))
    assert len(docs) == 3 and stats.n_kept == 3


def test_everything_filtered_raises(tmp_path):
    (tmp_path / "s.jsonl").write_text("\n".join(json.dumps({"text": "tiny"}) for _ in range(3)))
    with pytest.raises(UserError) as exc:
        collect_documents(CorpusConfig(dataset=str(tmp_path / "s.jsonl")))
    msg = str(exc.value)
    assert "3 seen" in msg and "min_chars=64" in msg and "\n" not in msg


def test_empty_file_and_dir_raise(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "empty.jsonl").write_bytes(b"\n\n")
    for name in ("empty.txt", "empty.jsonl"):
        with pytest.raises(UserError):
            collect_documents(_cfg(tmp_path / name))
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "readme.md").write_text("not a corpus file")
    with pytest.raises(UserError, match="no corpus files"):
        iter_documents(_cfg(tmp_path / "nothing"))


def test_missing_path_and_unsupported_extension(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        iter_documents(_cfg(tmp_path / "nope.jsonl"))
    with pytest.raises(UserError, match="does not exist"):
        iter_documents(_cfg(tmp_path / "no" / "such" / "dir"))
    (tmp_path / "x.docx").write_bytes(b"PK")
    with pytest.raises(UserError) as exc:
        iter_documents(_cfg(tmp_path / "x.docx"))
    assert ".jsonl" in str(exc.value) and ".parquet" in str(exc.value)


def test_unreadable_file(tmp_path):
    """chmod 000 must give a one-line permission error. Root ignores file modes, so as root the check runs
    in a child process without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH (setpriv), where modes apply again."""
    import shutil
    import subprocess
    import sys

    path = tmp_path / "secret.txt"
    path.write_text(LONG)
    path.chmod(0)
    try:
        if os.geteuid() != 0:
            with pytest.raises(UserError, match="permission"):
                iter_documents(_cfg(path))
            return
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is needed to drop root's file-permission override"
        code = (
            "from autointerp.data.corpus import CorpusConfig, iter_documents\n"
            "from autointerp.errors import UserError\n"
            f"try:\n    iter_documents(CorpusConfig(dataset={str(path)!r}))\n"
            "except UserError as e:\n    print('USERERROR', e)\n"
        )
        drop = "-dac_override,-dac_read_search"
        out = subprocess.run([setpriv, f"--bounding-set={drop}", f"--inh-caps={drop}", sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert out.stdout.startswith("USERERROR") and "permission denied" in out.stdout, out.stdout + out.stderr
    finally:
        path.chmod(0o644)


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_non_utf8_bytes_replaced_and_counted(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("café crème ".encode("latin-1") + LONG.encode())
    (tmp_path / "ok.txt").write_bytes("genuine \ufffd is not counted ".encode() + LONG.encode())
    (tmp_path / "rows.jsonl").write_bytes(b'{"text": "bad \xff\xfe bytes ' + LONG.encode() + b'"}\n')
    handler, logger = _ListHandler(), logging.getLogger("autointerp")
    logger.addHandler(handler)
    try:
        docs, stats = collect_documents(_cfg(tmp_path, shuffle=False))
    finally:
        logger.removeHandler(handler)
    assert stats.n_replaced == 4  # é, è (latin-1), \xff, \xfe
    assert stats.files_with_replacements == ["latin1.txt", "rows.jsonl"]
    by_id = {d.doc_id: d.text for d in docs}
    assert by_id["latin1.txt:0"].startswith("caf\ufffd cr\ufffdme")
    assert "\ufffd\ufffd" in by_id["rows.jsonl:0"]
    warnings = [m for m in handler.messages if "U+FFFD" in m]
    assert len(warnings) == 1 and "latin1.txt" in warnings[0] and "4 " in warnings[0]


def test_collect_stops_at_token_budget_with_whole_docs(tmp_path):
    texts = [f"doc{i} " + " ".join(["w"] * 30) for i in range(10)]  # 31 "tokens" each
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in texts))
    count = lambda t: len(t.split())  # noqa: E731
    docs, stats = collect_documents(_cfg(tmp_path / "d.jsonl", seed=5), count_tokens=count, max_tokens=100)
    assert len(docs) == 4  # 3 docs = 93 < 100, 4 docs = 124 >= 100
    assert all(d.text in texts for d in docs) and stats.n_kept == 4
    docs, _ = collect_documents(_cfg(tmp_path / "d.jsonl", max_docs=2), count_tokens=count, max_tokens=10_000)
    assert len(docs) == 2


def test_save_load_round_trip(tmp_path):
    docs = [Document("a:0", "alpha " + LONG), Document("b:1", "béta\nwith newline")]
    stats = CorpusStats(n_seen=3, n_kept=2, n_too_short=1)
    cfg = CorpusConfig(dataset="some/where", seed=7)
    out = tmp_path / "run" / "corpus"
    save_documents(out, docs, stats, cfg)
    assert load_saved_documents(out) == docs
    meta = json.loads((out / "corpus.json").read_text())
    assert meta["n_docs"] == 2 and meta["n_chars"] == sum(len(d.text) for d in docs)
    assert meta["config"]["seed"] == 7 and meta["stats"]["n_too_short"] == 1
    assert sorted(p.name for p in out.iterdir()) == ["corpus.json", "documents.parquet"]  # no temp files left
    with pytest.raises(UserError, match="corpus stage"):
        load_saved_documents(tmp_path / "missing")


# --------------------------------------------------------------------------------------------- hub
def test_unreachable_hub_dataset_fails_fast():
    start = time.perf_counter()
    with pytest.raises(UserError) as exc:
        iter_documents(CorpusConfig(dataset="autointerp-test/surely-not-a-dataset", config_name="x"))
    assert time.perf_counter() - start < 30
    assert "surely-not-a-dataset" in str(exc.value) and "\n" not in str(exc.value)
    if not hub_reachable():
        assert "not available offline" in str(exc.value) and "factbook" in str(exc.value)


def _hub_repo(root: Path, with_id: bool) -> Path:
    (root / "data").mkdir(parents=True)
    train = {"content": [f"train row {i} " + LONG for i in range(25)], "label": list(range(25))}
    if with_id:
        train["id"] = [f"row-{i}" for i in range(25)]
    pq.write_table(pa.table(train), root / "data" / "train-00000-of-00001.parquet")
    test = pa.table({"content": ["test row " + LONG], "label": [0]})
    pq.write_table(test, root / "data" / "test-00000-of-00001.parquet")
    return root


def test_hub_code_path_with_local_repo_dir(tmp_path):
    repo = _hub_repo(tmp_path / "repo", with_id=False)
    streamed = load_hub_dataset(str(repo), split="train", streaming=True)
    assert sorted(streamed.column_names) == ["content", "label"]
    assert sum(1 for _ in streamed) == 25
    table = load_hub_dataset(str(repo), split="test", streaming=False, cache_dir=str(tmp_path / "cache"))
    assert len(table) == 1 and table[0]["content"].startswith("test row")
    cfg = CorpusConfig(dataset=str(repo), text_field="content", streaming=True)
    a, b = _ids(cfg), _ids(CorpusConfig(**{**cfg.__dict__, "seed": 1}))
    assert sorted(a) == sorted(b) == sorted(f"train:{i}" for i in range(25)) and a != b
    assert a == _ids(cfg)
    texts = {d.doc_id: d.text for d in iter_documents(cfg)}
    assert texts["train:7"].startswith("train row 7 ")
    with pytest.raises(UserError, match="content"):
        iter_documents(CorpusConfig(dataset=str(repo), streaming=True))  # default text_field 'text' missing
    with pytest.raises(UserError, match="split"):
        load_hub_dataset(str(repo), split="nope", streaming=True)


def test_hub_ids_from_id_column(tmp_path):
    repo = _hub_repo(tmp_path / "repo", with_id=True)
    cfg = CorpusConfig(dataset=str(repo), text_field="content", streaming=True, seed=2)
    docs = list(iter_documents(cfg))
    assert sorted(d.doc_id for d in docs) == sorted(f"row-{i}" for i in range(25))
    assert all(d.text.startswith(f"train row {d.doc_id[4:]} ") for d in docs)


def test_unreadable_file_even_as_root(tmp_path):
    """Reading /proc/self/mem from offset 0 fails with EIO for any user: a real unreadable file."""
    if not Path("/proc/self/mem").exists():
        pytest.skip("needs Linux /proc")
    link = tmp_path / "broken.txt"
    link.symlink_to("/proc/self/mem")
    with pytest.raises(UserError, match="cannot read") as exc:
        iter_documents(_cfg(link))
    assert "\n" not in str(exc.value)


def test_entity_field_names_what_each_document_is_about(tmp_path):
    from autointerp.compare.analysis import entities_of, exemplar_spans
    from autointerp.data.corpus import entity_source, load_saved_documents, save_documents, saved_entity_source

    rows = [{"text": f"Paragraph {i} about {t}. " * 8, "title": t} for i, t in enumerate(["Paris", "Paris", "Rome", "Oslo"])]
    rows.append({"text": "A paragraph without a title. " * 8})
    path = tmp_path / "wiki.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    cfg = CorpusConfig(dataset=str(path), entity_field="title", shuffle=True, seed=3)
    docs, stats = collect_documents(cfg)
    by_text = {d.text[:11]: d.entity for d in docs}
    assert by_text == {"Paragraph 0": "Paris", "Paragraph 1": "Paris", "Paragraph 2": "Rome", "Paragraph 3": "Oslo", "A paragraph": None}
    save_documents(tmp_path / "corpus", docs, stats, cfg)
    assert load_saved_documents(tmp_path / "corpus") == docs
    assert saved_entity_source(tmp_path / "corpus") == "the corpus field 'title'" == entity_source(cfg)
    # the abstraction metric counts entities from the corpus: two Paris paragraphs are one entity
    import pandas as pd

    exemplars = tmp_path / "exemplars.parquet"
    pd.DataFrame({"feature": [0, 0, 0], "kind": ["top"] * 3, "doc_id": [d.doc_id for d in docs if d.entity in ("Paris", "Rome")]}).to_parquet(exemplars)
    spans = exemplar_spans(exemplars, 1, entities_of(docs))
    assert int(spans.loc[0, "top_docs_spanned"]) == 3 and int(spans.loc[0, "top_entities_spanned"]) == 2
    # without an entity field, every document is its own entity, and the report says so
    assert "every document is its own entity" in entity_source(CorpusConfig(dataset=str(path)))


def test_factbook_entities_are_countries_and_old_corpora_still_load(tmp_path):
    from autointerp.data.corpus import load_saved_documents, save_documents

    docs, stats = collect_documents(CorpusConfig(dataset="factbook", max_docs=5))
    assert all(d.entity == d.doc_id.split("/")[1] for d in docs)
    save_documents(tmp_path, docs, stats, CorpusConfig(dataset="factbook", max_docs=5))
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "documents.parquet").drop(["entity"])  # a corpus saved before entities existed
    pq.write_table(table, tmp_path / "documents.parquet")
    assert load_saved_documents(tmp_path) == docs
