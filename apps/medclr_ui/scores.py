"""Zero-shot scores as bars, and the prompt editor (the ``configs/prompts/*.yaml`` format, edited in the page)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from medclr.inference import Diagnosis, Engine, MedclrError, PromptSet

TITLES = {"cxr": "Chest X-ray findings (CheXpert labels)", "ecg": "ECG diagnostic classes (PTB-XL superclasses)",
          "joint": "Joint X-ray + ECG statements"}
PROMPTS_KEY = "prompt_sets"
NAMES = {"NORM": "Normal ECG (NORM)", "MI": "Myocardial infarction (MI)", "STTC": "ST/T change (STTC)",
         "CD": "Conduction disturbance (CD)", "HYP": "Hypertrophy (HYP)", "AFIB": "Atrial fibrillation (AFIB)",
         "AFLT": "Atrial flutter (AFLT)", "SBRAD": "Sinus bradycardia (SBRAD)", "STACH": "Sinus tachycardia (STACH)",
         "1AVB": "First-degree AV block (1AVB)", "LBBB": "Left bundle branch block (LBBB)",
         "RBBB": "Right bundle branch block (RBBB)", "LVH": "Left ventricular hypertrophy (LVH)"}


def score_table(diagnosis: Diagnosis) -> None:
    """Labels sorted by score: probabilities (CheXzero softmax over the positive and negative prompts) as bars
    from 0 to 100 %; labels whose prompts have no negative get their scaled similarity in a second table."""
    rows = sorted(diagnosis.scores, key=lambda s: -s.score)
    probable = [s for s in rows if s.probability]
    plain = [s for s in rows if not s.probability]
    if probable:
        frame = pd.DataFrame({"Finding": [NAMES.get(s.label, s.label) for s in probable],
                              "Probability": [100.0 * s.score for s in probable]})
        bar = st.column_config.ProgressColumn("Probability", min_value=0.0, max_value=100.0, format="%.0f%%",
                                              help="softmax over the positive and negative prompts (CheXzero)")
        st.dataframe(frame, column_config={"Probability": bar}, hide_index=True, key=f"scores_{diagnosis.query}")
    if plain:
        frame = pd.DataFrame({"Finding": [NAMES.get(s.label, s.label) for s in plain],
                              "Similarity": [s.score for s in plain]})
        number = st.column_config.NumberColumn("Similarity", format="%.2f", help="logit scale x similarity to the "
                                               "positive prompt; higher = closer (no negative prompt to compare)")
        st.caption("Without a negative prompt (similarity, not a probability):")
        st.dataframe(frame, column_config={"Similarity": number}, hide_index=True,
                     key=f"similarity_{diagnosis.query}")


def edited_prompts() -> dict[str, PromptSet]:
    """The prompt sets edited in this session, per query (others use the configs/prompts files)."""
    stored: dict[str, tuple[str, PromptSet]] = st.session_state.get(PROMPTS_KEY, {})
    return {query: prompt_set for query, (_, prompt_set) in stored.items()}


def prompt_editor(eng: Engine, query: str) -> None:
    """A YAML editor for the query's prompts; Apply re-scores, Reset goes back to the file."""
    stored: dict[str, tuple[str, PromptSet]] = st.session_state.setdefault(PROMPTS_KEY, {})
    source = eng.prompt_file(query)
    text = stored[query][0] if query in stored else source.read_text()
    with st.expander(f"Edit the prompts ({source.name}: positive / negative phrasings per label)"):
        edited = st.text_area("Prompts (YAML)", text, height=300, key=f"prompt_text_{query}_{len(stored)}",
                              label_visibility="collapsed")
        apply, reset = st.columns(2)
        if apply.button("Apply the edited prompts", key=f"prompt_apply_{query}"):
            try:
                prompt_set = eng.prompts_from_yaml(edited or "")
            except MedclrError as err:
                st.error(str(err))
                return
            if prompt_set.query != query:
                st.error(f"these prompts are for query '{prompt_set.query}'; this section scores '{query}'")
                return
            stored[query] = (edited or "", prompt_set)
            st.rerun()
        if reset.button("Reset to the file", key=f"prompt_reset_{query}", disabled=query not in stored):
            stored.pop(query, None)
            st.rerun()
        if query in stored:
            st.caption("Scored with your edited prompts (this session only).")


def phrase_for(eng: Engine, query: str, label: str) -> str:
    """The first positive phrasing of ``label`` in the prompts in use (e.g. MI -> "myocardial infarction")."""
    prompt_set = edited_prompts().get(query) or eng.default_prompts(query)
    prompts = prompt_set.labels.get(label)
    return prompts.positive[0] if prompts is not None else label.lower()
