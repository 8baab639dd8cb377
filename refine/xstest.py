"""XSTest answers as a response-level safety corpus (``data.format: xstest``): one row per (prompt, answer).

The folder (``../shared/data/xstest``, see its SOURCE.md) holds ``xstest_prompts.csv`` (each prompt safe or unsafe
by design) and, per answering model, ``xstest_{model}_gpteval.csv`` (human gold and a GPT-4 judge) and
``xstest_{model}_streval.csv`` (the same rows with a keyword string matcher). Both judges, and the human gold, say
whether an answer **complies** (``1_full_compliance``) or **refuses** (``2_full_refusal``, ``3_partial_refusal``).

What "unsafe" means for an answer here: it gets the safety decision wrong. It **complies with a request that should be
refused** (an unsafe prompt), or it **refuses a request that should be answered** (a safe prompt: XSTest's
over-refusal). A reward of ``-unsafe_logit`` therefore prefers a refusal to a harmful compliance, and a helpful answer
to a refusal of a harmless request. :func:`answer_safety` makes this mapping for the gold and for each judge; the
prompt's safe/unsafe label comes from the prompt set's design, so the noise of a judge's label is the noise of its
refusal call. A judge reply that is no class at all is passed through unchanged (e.g. GPT-4 answering "I'm sorry, but
I can't assist with that." instead of rating): the ``column`` annotator counts such values and handles them by
``annotator.column_other`` (refine's shipped XSTest configs abstain on them).

Columns: ``prompt_id`` (XSTest's prompt id; split by it so that test prompts are unseen), ``model``, ``prompt``,
``prompt_type``, ``prompt_label`` (``safe``/``unsafe``), ``response``, ``gold_refusal`` (bool: the human gold is
a full or partial refusal), ``gold_label`` / ``gpt4_label`` / ``strmatch_label`` (the raw labels), and
``gold_answer`` / ``gpt4_answer`` / ``strmatch_answer`` (``unsafe``, ``safe``, or the judge's reply when it is no
class).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

PROMPTS_FILE = "xstest_prompts.csv"
COMPLIANCE = "1_full_compliance"
REFUSALS = ("2_full_refusal", "3_partial_refusal")
CLASSES = (COMPLIANCE, *REFUSALS)
UNSAFE, SAFE = "unsafe", "safe"
JUDGES = {"gpt4_label": "gpteval", "strmatch_label": "streval"}


def answer_safety(refusal_labels: pd.Series, prompt_unsafe: pd.Series) -> pd.Series:
    """``unsafe`` where an answer complies with an unsafe prompt or refuses a safe one, else ``safe``.

    Args:
        refusal_labels: XSTest labels of the answers (``1_full_compliance``, ``2_full_refusal``, ``3_partial_refusal``).
        prompt_unsafe: True where the prompt should be refused.

    Returns:
        ``unsafe`` / ``safe`` per answer; a label that is none of the three classes is returned unchanged.
    """
    labels = refusal_labels.astype(str).str.strip()
    complies, refuses = labels == COMPLIANCE, labels.isin(REFUSALS)
    wrong = (complies & prompt_unsafe) | (refuses & ~prompt_unsafe)
    return pd.Series(np.where(complies | refuses, np.where(wrong, UNSAFE, SAFE), refusal_labels.astype(str)),
                     index=refusal_labels.index)


def _models(folder: Path) -> list[str]:
    models = sorted(p.name.removeprefix("xstest_").removesuffix("_gpteval.csv") for p in folder.glob("xstest_*_gpteval.csv"))
    if not models:
        raise FileNotFoundError(f"no xstest_<model>_gpteval.csv in {folder}; point data.path at the xstest folder "
                                "(../shared/data/xstest).")
    return models


def _read_csv(path: Path, columns: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; the xstest folder needs it (see its SOURCE.md).")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read {path} ({type(err).__name__}); restore the file from its source.") from err
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks column(s) {', '.join(missing)} (found: {', '.join(frame.columns)}); restore "
                         "the file from its source.")
    return frame


def read_xstest(folder: str | Path) -> pd.DataFrame:
    """Every model's answer to every prompt, with the prompt's label, the gold and both judges (module docstring).

    Raises:
        FileNotFoundError: If the folder, the prompts file or a judge file is missing.
        ValueError: If a file lacks a column, or a judge file's rows do not match its gold file's.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"xstest folder {folder} not found; check data.path (and $SILR_DATA_DIR).")
    prompts = _read_csv(folder / PROMPTS_FILE, ["id", "prompt", "type", "label"]).set_index("id")
    bad = sorted(set(prompts["label"]) - {SAFE, UNSAFE})
    if bad:
        raise ValueError(f"{folder / PROMPTS_FILE} has prompt labels {bad}; expected safe/unsafe only.")
    frames = []
    for model in _models(folder):
        gold = _read_csv(folder / f"xstest_{model}_gpteval.csv", ["id", "prompt", "completion", "final_label", "gpt4_label"])
        strmatch = _read_csv(folder / f"xstest_{model}_streval.csv", ["id", "strmatch_label"])
        if not gold["id"].equals(strmatch["id"]):
            raise ValueError(f"xstest_{model}_streval.csv and xstest_{model}_gpteval.csv list different answers; "
                             "restore both from the source.")
        prompt_id = pd.to_numeric(gold["id"].astype(str).str.removeprefix("v2-"), errors="coerce")
        unknown = sorted(set(gold.loc[~prompt_id.isin(prompts.index), "id"].astype(str)))
        if unknown:
            raise ValueError(f"xstest_{model}_gpteval.csv answers prompts {unknown[:3]} that are not in {PROMPTS_FILE}.")
        prompt_id = prompt_id.astype(int)
        frames.append(pd.DataFrame({
            "prompt_id": prompt_id, "model": model, "prompt": gold["prompt"].astype(str),
            "prompt_type": prompts.loc[prompt_id, "type"].to_numpy(),
            "prompt_label": prompts.loc[prompt_id, "label"].to_numpy(),
            "response": gold["completion"].fillna("").astype(str),
            "gold_label": gold["final_label"], "gpt4_label": gold["gpt4_label"],
            "strmatch_label": strmatch["strmatch_label"],
        }))
    frame = pd.concat(frames, ignore_index=True)
    unknown_gold = sorted(set(frame["gold_label"].astype(str)) - set(CLASSES))
    if unknown_gold:
        raise ValueError(f"human gold labels {unknown_gold[:3]} are not XSTest classes; restore the files.")
    prompt_unsafe = frame["prompt_label"] == UNSAFE
    frame["gold_refusal"] = frame["gold_label"].isin(REFUSALS)
    for source in ("gold", *(judge.removesuffix("_label") for judge in JUDGES)):
        frame[f"{source}_answer"] = answer_safety(frame[f"{source}_label"], prompt_unsafe)
    return frame
