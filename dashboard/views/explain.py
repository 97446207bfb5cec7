"""Explain: for one chunk, SHAP bars, LIME weights over the waveform, attention heatmaps, acoustic features
against the corpus and the faithfulness check; the full tier on demand."""

from __future__ import annotations

import logging

import pandas as pd
import streamlit as st

from dashboard import actions, charts, data, media
from dashboard.views import common
from warehouse.rows import stored_explanation

logger = logging.getLogger(__name__)

#: What each faithfulness measure means (keys of explanations.faithfulness).
FAITHFULNESS_HELP = {
    "aopc_top": "mean drop of the explained probability when the top-k segments (by Shapley value) are removed one "
                "by one — higher means the explanation found segments the model relies on",
    "aopc_random": "the same drop when k random segments are removed (the baseline to beat)",
    "k": "segments removed",
    "top_is_most_harmful": "1 when removing the top segment hurts most of all single removals",
    "topk_overlap": "share of the top-k segments by Shapley value that are also top-k by single-removal drop",
    "rank_agreement": "rank correlation of Shapley values with single-removal drops",
    "top1_drop": "probability drop when only the top segment is removed",
    "max_single_drop": "largest drop from removing one segment",
    "segments": "time segments in the chunk",
    "forward_passes": "model evaluations the check cost",
}


def render() -> None:
    opened = common.file_page("Explain", key="explain")
    if opened is None:
        return
    cfg, db, file_id = opened
    with common.guard():
        info = data.file_info(db, file_id)
        chunks = data.file_chunks(db, file_id)
    if info is None:
        st.error(f"File #{file_id} is no longer in the warehouse (it was re-ingested or removed).")
        return
    if chunks.empty:
        st.info("This file has no speech chunks to explain.")
        return
    trained = bool(info.get("emotion_trained"))
    chunk_id = common.pick_chunk(chunks, key="explain", trained=trained)
    if chunk_id is None:
        return
    if not trained:
        common.untrained_warning(info.get("emotion_model"))
        st.caption("The explanations below are real explanations of this model's outputs — of a random model.")

    with common.guard():
        ctx = data.chunk_context(db, chunk_id)
        stored = data.chunk_explanation(db, chunk_id)
    exp = stored_explanation(stored) if stored is not None else None
    if ctx is None:
        st.warning(f"Chunk #{chunk_id} is no longer in the warehouse (its file was re-ingested or removed).")
        return
    st.caption(common.md_escape(f"Chunk {ctx.idx} of {ctx.path} · {ctx.start_s:.2f}–{ctx.end_s:.2f} s · emotion "
                                f"model {ctx.emotion_model}"))
    common.caveats([(ctx.emotion_model, ctx.emotion_trained)])

    _full_tier_button(cfg, db, chunk_id, exp)
    if exp is None:
        st.info("No explanation is stored for this chunk (it was ingested with `--explain none`). "
                "Run the full tier above to explain it.")
        return

    audio = media.load_audio(ctx.path)
    clip = None
    if not isinstance(audio, media.AudioUnavailable):
        clip = media.chunk_samples(audio.samples, ctx.start_s, ctx.end_s)

    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Explained label", exp.target_label, help="the probability the attributions explain")
    c2.metric("Tier", exp.tier)
    c3.metric("f(none) → f(all)", f"{exp.shap_base_value:.3f} → {exp.shap_full_value:.3f}",
              help="the probability with every segment removed, and on the whole chunk; segment Shapley values "
                   "sum to the difference")
    faith = exp.faithfulness or {}
    if "aopc_top" in faith:
        c4.metric("Faithfulness (AOPC top-k)", f"{faith['aopc_top']:.3f}",
                  delta=f"{faith['aopc_top'] - faith.get('aopc_random', 0.0):+.3f} vs random",
                  help=FAITHFULNESS_HELP["aopc_top"])
    else:
        c4.metric("Faithfulness", "not measured",
                  help="the fast tier checks a sample of chunks (faithfulness_sample); the full tier checks all")

    tabs = st.tabs(["SHAP", "LIME", "Attention", "Acoustic features", "Faithfulness", "Methods"])
    with tabs[0]:
        seg = pd.DataFrame([{"segment": s.segment, "start_s": s.start_s, "end_s": s.end_s, "value": s.value}
                            for s in exp.shap_segments])
        if len(seg):
            st.altair_chart(charts.shap_segments(seg, exp.target_label, exp.tier), width="stretch")
            st.caption(f"Shapley values over {len(seg)} time segments; they sum to "
                       f"{seg['value'].sum():+.4f} = f(all) − f(none).")
        else:
            st.info("No segment Shapley values: " + common.md_escape(exp.shap_method))
        if exp.shap_features:
            feats = pd.DataFrame({"feature": list(exp.shap_features), "value": list(exp.shap_features.values())})
            st.altair_chart(charts.shap_features(feats, exp.target_label), width="stretch")
            r2 = "n/a" if exp.surrogate_r2 is None else f"{exp.surrogate_r2:.2f}"
            st.caption(f"Shapley values of a surrogate model of the emotion model (held-out R² {r2}): "
                       + common.md_escape(exp.shap_features_method))
        else:
            st.caption("Acoustic-feature Shapley values: "
                       + common.md_escape(exp.shap_features_method or "not computed") + ".")
    with tabs[1]:
        lime = pd.DataFrame([{"segment": s.segment, "start_s": s.start_s, "end_s": s.end_s, "weight": s.value}
                             for s in exp.lime_segments])
        if len(lime):
            env = charts.envelope(clip, media.SAMPLE_RATE, points=800) if clip is not None else None
            st.altair_chart(charts.lime_waveform(env, lime, exp.target_label), width="stretch")
            score = "n/a" if exp.lime_score is None else f"{exp.lime_score:.2f}"
            st.caption(f"LIME local linear model, R² {score} on its samples.")
            if clip is not None:
                st.audio(clip, sample_rate=media.SAMPLE_RATE)
        else:
            st.info("No LIME weights: " + common.md_escape(exp.lime_method))
    with tabs[2]:
        _attention(stored, exp)
    with tabs[3]:
        with common.guard():
            pct = data.feature_percentiles(db, chunk_id)
        if len(pct):
            st.altair_chart(charts.feature_percentiles(pct), width="stretch")
            st.dataframe(pct, hide_index=True, width="stretch", key="explain_features")
        else:
            st.info("No acoustic features were stored for this chunk.")
    with tabs[4]:
        if faith:
            rows = [{"measure": k, "value": v, "meaning": FAITHFULNESS_HELP.get(k, "")} for k, v in faith.items()]
            st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="explain_faith")
            better = faith.get("aopc_top", 0.0) > faith.get("aopc_random", 0.0)
            st.caption("Removing the top segments lowers the probability more than removing random ones: the "
                       "attribution points at segments the model uses." if better else
                       "Removing the top segments does not beat removing random ones here: treat this explanation "
                       "with caution.")
        else:
            st.info("No faithfulness check was stored for this chunk (the fast tier checks a sample of chunks; "
                    "the full tier checks every chunk it explains).")
        _faithfulness_overview(db)
    with tabs[5]:
        esc = common.md_escape
        st.markdown(f"- **SHAP (segments):** {esc(exp.shap_method)}\n- **LIME:** {esc(exp.lime_method)}\n"
                    f"- **SHAP (acoustic features):** {esc(exp.shap_features_method or 'not computed')}\n"
                    f"- **Attention:** {esc(exp.attention_note or '—')}")


def _faithfulness_overview(db: str) -> None:
    """Every stored deletion check in the warehouse, per model and tier: does the top segment hurt most?"""
    st.markdown("**Across the warehouse**")
    with common.guard():
        overview = data.faithfulness_overview(db)
    if overview.empty:
        st.caption("No chunk in the warehouse has a faithfulness check yet.")
        return
    st.dataframe(overview, hide_index=True, width="stretch", key="explain_faith_overview",
                 column_config={c: st.column_config.NumberColumn(format="%.2f") for c in overview.columns
                                if c not in ("emotion model", "tier", "chunks checked")})
    st.caption("How often an explanation's top segment is the one whose silencing (a real re-run of the model) "
               "lowers the explained probability most, against the chance rate 1/segments, over every checked "
               "chunk. The fast tier checks a `faithfulness_sample` share of chunks (each check costs about 14 "
               "forward passes; raise it in the configuration for a denser audit); the full tier checks every "
               "chunk it explains.")


def _attention(stored, exp) -> None:
    maps = stored.attention if stored is not None else {}
    if not maps:
        note = exp.attention_note or ""
        if "has no attention" in note or not note:
            st.info("This model has no attention" + (f" ({common.md_escape(note)})." if note else "."))
        else:
            st.info("No attention maps for this chunk: " + common.md_escape(note))
        return
    layers = sorted(k for k in maps if k >= 0)
    panels = [(f"layer {k + 1}", maps[k]) for k in layers]
    if -1 in maps:
        panels.append(("rollout (all layers)", maps[-1]))
    st.caption(common.md_escape(exp.attention_note or ""))
    cols = st.columns(min(3, len(panels)))
    for i, (name, m) in enumerate(panels):
        cols[i % len(cols)].altair_chart(charts.attention_heatmap(m, name), width="content")


def _full_tier_button(cfg, db: str, chunk_id: int, exp) -> None:
    label = "Re-run the full tier" if exp is not None and exp.tier == "full" else "Run the full tier on this chunk"
    if st.button(label, key="explain_full", type="primary" if exp is None or exp.tier != "full" else "secondary",
                 help="Input masking with real re-forwards of the emotion model (KernelSHAP + LIME on the same "
                      f"evaluations, budget {cfg.explain_budget}); replaces the stored explanation."):
        try:
            with st.spinner("Running the full explanation tier…"):
                replaced = actions.run_full_explanation(cfg, db, chunk_id)
        except Exception as exc:  # a model that cannot load, audio that moved: say so, no traceback
            logger.exception("full explanation tier of chunk %s failed", chunk_id)
            st.error("The full tier could not run: " + common.md_escape(exc))
            return
        st.session_state["explain_done"] = (chunk_id, replaced.tier, replaced.target_label)
        st.rerun()
    done = st.session_state.get("explain_done")
    if done and done[0] == chunk_id:
        st.success(f"Stored the {done[1]} tier explanation of p({common.md_escape(done[2])}) for this chunk.")
