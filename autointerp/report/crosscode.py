"""The crosscoder's section of the report: the joint answer next to the post-hoc one, with the controls.

Every number comes from the crosscode records (``<run>/crosscode/<A>__<B>/crosscode.json``) and, for the
post-hoc side, the comparison's calibration with its controls (``controls.calibration``). The histogram of
relative decoder norms is drawn into the report's plots/ (``crosscode_plots``), so it travels with the report wherever ``--out`` puts it.
"""

from __future__ import annotations

from pathlib import Path

from autointerp.controls.calibration import pair_calibration
from autointerp.io import atomic_path, read_json
from autointerp.report.crosscode_pages import latent_lines
from autointerp.report.fmt import count, md_marked, md_table, md_text, num, pct
from autointerp.report.plots import Plot
from autointerp.rundir.layout import PLOTS_DIR, CrosscodeDir, RunDir

KEY = "crosscode"


def _records(run_dir: Path) -> list[tuple[CrosscodeDir, dict]]:
    out = []
    for d in RunDir(run_dir).crosscoders():
        try:
            rec = read_json(d.record)
        except (OSError, ValueError):
            continue
        if rec.get("complete") and rec.get("summary"):
            out.append((d, rec["summary"]))
    return out


def record_files(run_dir: Path) -> list[Path]:
    """The crosscode records the report reads (part of its inputs: a retrained crosscoder redoes the report),
    and the paged latents' records (new windows or labels redo it too)."""
    out = []
    for d, _ in _records(run_dir):
        out += [d.record] + [p for p in (d.latent_exemplars_record, d.latent_labels_record) if p.is_file()]
    return out


def crosscode_plots(run_dir: Path, out_dir: Path) -> dict[str, list[Plot]]:
    """One histogram of relative decoder norms per crosscoder (the pair and its controls overlaid)."""
    records = _records(run_dir)
    if not records:
        return {}
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    for _, s in records:
        ax.hist(s["relative_norms"], bins=50, range=(0, 1), histtype="step" if s["role"] != "pair" else "stepfilled",
                alpha=0.9 if s["role"] != "pair" else 0.6, label=f"{s['model_a']} x {s['model_b']} ({s['role']})")
    pair = next((s for _, s in records if s["role"] == "pair"), records[0][1])
    for x in _bands(pair):
        ax.axvline(x, color="#888", lw=0.8, ls="--")
    ax.set_xlabel("relative decoder norm |d_B| / (|d_A| + |d_B|)   (0: only A, 1: only B)")
    ax.set_ylabel("live latents")
    ax.legend(fontsize=7)
    fig.tight_layout()
    name = "crosscode_relative_norms.png"
    with atomic_path(out_dir / PLOTS_DIR / name) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return {KEY: [Plot("Crosscoder: relative decoder norms (dashed: class thresholds)", f"{PLOTS_DIR}/{name}")]}


def _bands(s: dict) -> list[float]:
    t = s["classes"]["thresholds"]
    lo = float(t["a_only"].split("<")[1])
    shared = [float(x) for x in t["shared"].split("<=")[::2]]
    return [lo, shared[0], shared[1], 1 - lo]


def _fractions(s: dict) -> str:
    f, c = s["classes"]["fractions"], s["classes"]["counts"]
    return (f"{pct(f['shared'])} shared, {pct(f['a_only'])} `{s['model_a']}`-only, {pct(f['b_only'])} `{s['model_b']}`-only, "
            f"{pct(f['norm_only'])} exclusive by decoder norm only (the other model can read them: Latent Scaling), "
            f"{pct(f['leaning'])} leaning one way; of {count(s['classes']['n_live'])} live latents ({count(c['dead'])} dead)")


def crosscode_section(run_dir: Path, plots: dict[str, list[Plot]], pages_index: str | None = None) -> list[str]:
    """Markdown lines; empty when no crosscoder was trained (the stage is opt-in). With ``pages_index`` (the
    HTML pages were written) the paged latents are listed with links to their pages."""
    records = _records(run_dir)
    pair = next((s for _, s in records if s["role"] == "pair"), None)
    if pair is None:
        return []
    t, m, tr = pair["classes"]["thresholds"], pair["metrics"], pair["training"]
    fvu = ", ".join(f"`{k}` {num(v)}" for k, v in m["fvu"].items())
    out = ["## One dictionary for both models: the crosscoder", "",
           f"A BatchTopK crosscoder ({count(pair['d_sae'])} latents, k = {pair['k']} per word unit; one encoder over both models, "
           f"one decoder per model) trained on {count(pair['n_train_units'])} word units where both models' activations are the "
           f"{md_text(pair['pooling'])}, each model scaled to a common mean centred norm. Held-out FVU ({count(pair['n_eval_units'])} units): "
           f"{fvu}; L0 {num(m['l0'], 1)}; {pct(m['never_fired_fraction'])} of latents never fire; "
           f"training {num(tr['seconds'], 0)} s ({num(tr['units_per_s'], 0)} units/s).", "", *_per_model(m),
           f"**Joint answer** for `{pair['model_a']}` vs `{pair['model_b']}`: {_fractions(pair)}. Thresholds on r = |d_B| / (|d_A| + |d_B|): "
           f"shared {t['shared']}, A-only {t['a_only']}, B-only {t['b_only']}; {t['latent_scaling']}.", ""]
    cal = _calibration(run_dir, pair)
    if cal.get("shared_fraction") is not None:
        out += [f"**Post-hoc answer** (one SAE per model, Hungarian matching): {pct(cal['shared_fraction'])} of matched pairs are shared"
                + (f", {pct(cal['beyond_lexical_fraction'])} of them beyond word identity" if cal.get("beyond_lexical_fraction") is not None else "")
                + ". The two fractions count different things (latents of one dictionary vs pairs of two) and are not expected to be equal.", ""]
    out += _controls(records, cal) + _agreement(pair) + _disagreements(pair)
    out += [line for p in plots.get(KEY, []) for line in (f"![{p.title}]({p.path})", "")]
    return out + latent_lines(run_dir, pages_index)


def _per_model(m: dict) -> list[str]:
    per = m.get("per_model") or {}
    if not per:
        return []
    parts = [f"`{k}` L0 {num(v['l0'], 1)}, {count(v['n_live'])} live of {count(v['n_latents'])} latents with a non-negligible decoder norm for it "
             f"({count(v['n_dead'])} of those dead), {pct(v['unused_fraction'])} of the dictionary unusable by it" for k, v in per.items()]
    return ["Per model: " + "; ".join(parts) + f" ({md_text(m['definitions']['per_model'])}).", ""]


def _calibration(run_dir: Path, s: dict) -> dict:
    return pair_calibration(run_dir, RunDir(run_dir).pair(s["model_a"], s["model_b"]))


def _controls(records: list[tuple[CrosscodeDir, dict]], cal: dict) -> list[str]:
    floors = [s for _, s in records if s["role"] == "floor"]
    lines = ["**Controls.**"]
    if floors:
        lines += [f"- random-weights floor, crosscoder `{s['model_a']}` x `{s['model_b']}`: {pct(s['classes']['fractions']['shared'])} shared latents" for s in floors]
    else:
        lines += ["- random-weights floor of the crosscoder: not measured (no random-weights control harvest in the run: run `autointerp controls`)"]
    floor = cal.get("floor_shared_fraction")
    if isinstance(floor, dict) and floor:  # per real model: the share of its matchable features with a partner in the random control
        lines += ["- post-hoc random-weights floor (share of each real model's matchable features with a shared partner in the "
                  "random-weights control): " + ", ".join(f"`{k}` {pct(v)}" for k, v in floor.items())]
    elif isinstance(floor, (int, float)):  # a calibration.json written before sharing was counted per model
        lines += [f"- post-hoc random-weights floor: {pct(floor)} of matched pairs shared"]
    ceiling = cal.get("ceiling_shared_fraction")
    if isinstance(ceiling, dict) and ceiling:
        lines += ["- post-hoc same-model ceiling: " + ", ".join(f"`{k}` {pct(v)}" for k, v in ceiling.items())
                  + " (a crosscoder of a model with itself shares every latent by construction, so it has no ceiling of its own)"]
    return lines + [""]


def _agreement(s: dict) -> list[str]:
    post = s["posthoc"]
    if not post.get("available"):
        return [f"_Against the post-hoc view: {md_text(post.get('reason'))}._", ""]
    kinds = ", ".join(f"{k} {pct(v)}" for k, v in (post.get("posthoc_shared_in_crosscoder_by_kind") or {}).items())
    return [f"**Against the post-hoc view** (each latent's best-correlated SAE feature per model, counted at r >= {num(post['min_corr'], 2)}): "
            f"of {count(post['n_crosscoder_shared_mapped'])} shared latents that map on both sides, {pct(post['crosscoder_shared_in_posthoc'])} land on a "
            f"pair that compare calls shared; of {count(post['n_posthoc_shared_pairs'])} post-hoc shared pairs, {pct(post['posthoc_shared_in_crosscoder'])} "
            f"are the best pair of some shared latent" + (f" ({kinds})" if kinds else "") + f"; {count(post['n_exclusive_on_posthoc_shared_pair'])} "
            "exclusive latents sit on a post-hoc shared pair.", ""]


def _disagreements(s: dict) -> list[str]:
    rows = s.get("disagreements") or []
    if not rows:
        return []
    table = [[str(r["latent"]), md_text(r["kind"]), num(r["relative_norm"], 2), f"{r['best_a']} ({num(r['corr_a'], 2)})",
              f"{r['best_b']} ({num(r['corr_b'], 2)})", " / ".join(md_marked(e["before"], e["word"], e["after"]) for e in r["exemplars"][:2])]
             for r in rows]
    return ["Where the two views disagree (top word units of each latent, the unit in **bold**):", "",
            md_table(["latent", "disagreement", "r", "best A (corr)", "best B (corr)", "exemplars"], table, ["r", "l", "r", "r", "r", "l"]), ""]
