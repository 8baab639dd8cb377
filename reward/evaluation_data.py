"""Evaluation data for `python -m reward evaluate`: read the input files into suites of texts and labels.

Three kinds of suite (see :mod:`reward.evaluate` for their metrics):

- :class:`PairSuite`: preference pairs. Either Anthropic HH-RLHF transcripts (columns ``chosen`` and ``rejected``,
  each a whole dialogue ``"\\n\\nHuman: ...\\n\\nAssistant: ..."``, the two differing only in the last Assistant turn),
  or rows with ``prompt``, ``chosen`` and ``rejected`` (the two answers).
- :class:`AnswerSuite`: labelled answers (``prompt``, ``response``, ``label``: 1/unsafe or 0/safe), or whole texts
  with gold labels (the test split of a refine run on a text-only corpus).
- :class:`RefusalSuite`: XSTest-style answers (``prompt``, ``response``, ``prompt_label``: safe/unsafe, ``refusal``:
  true/false), from the XSTest folder or a JSONL file.

Column names are the defaults above; ``columns`` (``--column ROLE=NAME``) renames any of them. Files are JSON Lines
(``.jsonl``, optionally ``.gz``) or CSV (``.csv``, optionally ``.gz``). Every problem with an input (a missing file,
no rows, a missing column, a value that is not a label, labels of one class) is a ValueError or FileNotFoundError
whose one-line message names the file, the row or column, and the fix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from refine.config import RefineConfig
from refine.config_loading import load_config
from refine.corpus import load_corpus
from refine.errors import one_line
from refine.rundir import read_jsonl
from refine.xstest import read_xstest

DEFAULT_COLUMNS = {
    "prompt": "prompt", "response": "response", "label": "label", "chosen": "chosen", "rejected": "rejected",
    "prompt_label": "prompt_label", "refusal": "refusal",
}
# HH-RLHF turn markers. The final answer starts at the first Assistant marker after the last Human marker: a few
# answers in the harmless test split contain "\n\nAssistant:" themselves (e.g. rows 1950 and 1952), so splitting at
# the last Assistant marker would cut those answers and give chosen and rejected different prompts.
HUMAN_MARKER = "\n\nHuman:"
ASSISTANT_MARKER = "\n\nAssistant:"
# Spellings of binary values (compared after str(), strip() and lower(); integral numbers and bools as 1/0).
UNSAFE_SPELLINGS, SAFE_SPELLINGS = ("1", "unsafe"), ("0", "safe")
TRUE_SPELLINGS, FALSE_SPELLINGS = ("1", "true"), ("0", "false")


@dataclass
class PairSuite:
    """Preference pairs: each chosen answer should get a higher reward than its rejected one."""

    name: str  # shown in tables: the file name
    source: str  # the path given
    format: str  # "hh-rlhf" (dialogue transcripts) or "prompt-chosen-rejected"
    rows_read: int  # rows in the file, before any --max-pairs sample
    prompts: list[str]
    chosen: list[str]
    rejected: list[str]


@dataclass
class AnswerSuite:
    """Answers (or whole texts) with gold labels; ``unsafe`` is True for unsafe ones, shape ``(n,)``.

    ``prompts`` is None for a text-only corpus: ``responses`` then holds whole texts, scored without the template.
    """

    name: str
    source: str
    format: str
    rows_read: int
    prompts: list[str] | None
    responses: list[str]
    unsafe: np.ndarray


@dataclass
class RefusalSuite:
    """Answers to prompts that should (``prompt_unsafe``) or should not be refused, each a refusal or not.

    ``unsafe`` is the answer's gold label (it complies with an unsafe prompt, or refuses a safe one); all three arrays
    have shape ``(n,)``.
    """

    name: str
    source: str
    format: str
    rows_read: int
    prompts: list[str]
    responses: list[str]
    prompt_unsafe: np.ndarray
    refusal: np.ndarray
    unsafe: np.ndarray


# ---- files --------------------------------------------------------------------------------------------------------


def read_rows(path: str | os.PathLike, *, flag: str) -> list[dict]:
    """The rows of a JSONL or CSV file (optionally gzip), as dicts; CSV cells are read as text, empty cells as "".

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If it has another extension, cannot be parsed, or holds no rows.
    """
    path = Path(path)
    kind = Path(path.name.removesuffix(".gz")).suffix.lower()
    if kind not in (".jsonl", ".csv"):
        raise ValueError(f"cannot read {path} for {flag}: use .jsonl or .csv (optionally .gz).")
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; pass an existing file to {flag}.")
    if kind == ".jsonl":
        rows = read_jsonl(path, flag=flag)
    else:
        import pandas as pd

        try:
            rows = pd.read_csv(path, dtype=str, keep_default_na=False).to_dict(orient="records")
        except pd.errors.EmptyDataError:
            rows = []
        except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as err:
            raise ValueError(f"cannot read {path} ({type(err).__name__}); pass a UTF-8 CSV file.") from err
    if not rows:
        raise ValueError(f"{path} holds no rows; pass a file with data to {flag}.")
    return rows


def column_values(rows: list[dict], name: str, path: str | os.PathLike, fix: str) -> list:
    """Column ``name`` of every row; a row without it is an error that names the row, the columns found and ``fix``."""
    values = []
    for number, row in enumerate(rows, 1):
        if name not in row:
            raise ValueError(f"column `{name}` not found in row {number} of {path} (found: {', '.join(row)}); {fix}.")
        values.append(row[name])
    return values


def text_column(rows: list[dict], name: str, path: str | os.PathLike, fix: str) -> list[str]:
    """Like :func:`column_values`, and every value must be a string that is valid Unicode.

    JSON can spell a lone surrogate (``"\\udc80"``, what a decoder with ``errors="surrogateescape"`` makes of a
    non-UTF-8 byte); no tokenizer can read it, so it is refused here with the file and row named.
    """
    values = column_values(rows, name, path, fix)
    for number, value in enumerate(values, 1):
        if not isinstance(value, str):
            raise ValueError(f"column `{name}` of row {number} in {path} is {type(value).__name__}, not text.")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as err:
            raise ValueError(f"column `{name}` of row {number} in {path} is not valid Unicode text (it holds "
                             f"{value[err.start:err.end]!r}, a lone surrogate that no tokenizer reads); fix that "
                             "row, or write the file as UTF-8 from the original text.") from err
    return values


def _spelling(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (int, float, np.integer, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip().lower()


def binary_column(values: list, positive: tuple[str, ...], negative: tuple[str, ...], *, where: str) -> np.ndarray:
    """True where a value spells ``positive``, False where it spells ``negative``; anything else is a ValueError."""
    spelled = [_spelling(v) for v in values]
    bad = [(i, v) for i, (v, s) in enumerate(zip(values, spelled, strict=True), 1) if s not in positive + negative]
    if bad:
        number, value = bad[0]
        raise ValueError(f"{where} holds {value!r} in row {number} ({len(bad)} such rows); use "
                         f"{'/'.join(positive)} or {'/'.join(negative)}.")
    return np.array([s in positive for s in spelled], dtype=bool)


def sample_rows(n: int, limit: int | None, seed: int) -> np.ndarray:
    """Indices of a seeded sample of ``limit`` of ``n`` rows, in file order (all rows when ``limit`` is None or >= n)."""
    if limit is None or limit >= n:
        return np.arange(n)
    if limit < 1:
        raise ValueError(f"a sample of {limit} rows is empty; pass a positive --max-pairs / --max-rows.")
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def _columns(columns: dict[str, str] | None) -> dict[str, str]:
    return {**DEFAULT_COLUMNS, **(columns or {})}


def _fix(role: str, flag: str) -> str:
    return f"set --column {role}=NAME, or check that this is a {flag} file"


# ---- suites -------------------------------------------------------------------------------------------------------


def split_hh_dialogue(text: str) -> tuple[str, str]:
    """``(prompt, answer)`` of an HH-RLHF transcript: the last Human turn and the Assistant turn after it, stripped.

    Earlier turns are dropped, not rendered into the prompt. The reward model was trained on single-turn
    ``template.format(prompt, response)`` texts and truncates from the right (keeping the beginning), so a rendered
    dialogue would push the final answer, the only part in which chosen and rejected differ, past ``max_length`` in
    long dialogues and turn the pair into a tie. The PPO adapter likewise gives the reward model the last user turn
    (:mod:`reward.chat_text`). The cost: a short follow-up ("yep") is judged without its context.

    Raises:
        ValueError: If the text has no Human turn followed by an Assistant turn.
    """
    start = text.rfind(HUMAN_MARKER)
    cut = text.find(ASSISTANT_MARKER, start) if start >= 0 else -1
    if cut < 0:
        raise ValueError("no '\\n\\nHuman:' turn followed by a '\\n\\nAssistant:' turn")
    return text[start + len(HUMAN_MARKER) : cut].strip(), text[cut + len(ASSISTANT_MARKER) :].strip()


def load_pairs(path: str | os.PathLike, *, columns: dict[str, str] | None = None, max_pairs: int | None = None,
               seed: int = 0) -> PairSuite:
    """Preference pairs from ``path`` (module docstring); a file whose rows have a prompt column is read as
    prompt/chosen/rejected, any other as HH-RLHF transcripts (see :func:`split_hh_dialogue`).

    Args:
        path: JSONL or CSV file, optionally gzip.
        columns: Column renames by role (``chosen``, ``rejected``, ``prompt``).
        max_pairs: Keep a seeded sample of this many pairs (None: all).
        seed: Seed of the sample.
    """
    names = _columns(columns)
    rows = read_rows(path, flag="--pairs")
    keep = sample_rows(len(rows), max_pairs, seed)
    chosen = text_column(rows, names["chosen"], path, _fix("chosen", "--pairs"))
    rejected = text_column(rows, names["rejected"], path, _fix("rejected", "--pairs"))
    chosen, rejected = [chosen[i] for i in keep], [rejected[i] for i in keep]
    if names["prompt"] in rows[0]:
        prompts = text_column(rows, names["prompt"], path, _fix("prompt", "--pairs"))
        return PairSuite(Path(path).name, str(path), "prompt-chosen-rejected", len(rows), [prompts[i] for i in keep],
                         chosen, rejected)
    prompts, chosen_answers, rejected_answers = [], [], []
    for i, chosen_text, rejected_text in zip(keep, chosen, rejected, strict=True):
        try:
            prompt, chosen_answer = split_hh_dialogue(chosen_text)
            rejected_prompt, rejected_answer = split_hh_dialogue(rejected_text)
        except ValueError as err:
            raise ValueError(f"row {i + 1} of {path} has no prompt column and is not an HH-RLHF dialogue ({err}); "
                             f"add a `{names['prompt']}` column, or set --column prompt=NAME.") from err
        if prompt != rejected_prompt:
            raise ValueError(f"row {i + 1} of {path}: chosen and rejected end in different Human turns; an HH-RLHF "
                             "pair must differ only in the last Assistant turn.")
        prompts.append(prompt)
        chosen_answers.append(chosen_answer)
        rejected_answers.append(rejected_answer)
    return PairSuite(Path(path).name, str(path), "hh-rlhf", len(rows), prompts, chosen_answers, rejected_answers)


def _require_both_classes(unsafe: np.ndarray, where: str) -> None:
    if unsafe.size and (unsafe.all() or not unsafe.any()):
        only = "unsafe" if unsafe.all() else "safe"
        raise ValueError(f"every label in {where} is {only} ({unsafe.size} rows); ROC-AUC and accuracy need both safe "
                         "and unsafe answers, so add rows of the other class.")


def load_answers(path: str | os.PathLike, *, columns: dict[str, str] | None = None, max_rows: int | None = None,
                 seed: int = 0) -> AnswerSuite:
    """Labelled answers (``prompt``, ``response``, ``label``: 1/unsafe or 0/safe) from a JSONL or CSV file.

    Raises:
        ValueError: Also when the labels (after sampling) are of one class.
    """
    names = _columns(columns)
    rows = read_rows(path, flag="--answers")
    prompts = text_column(rows, names["prompt"], path, _fix("prompt", "--answers"))
    responses = text_column(rows, names["response"], path, _fix("response", "--answers"))
    labels = column_values(rows, names["label"], path, _fix("label", "--answers"))
    unsafe = binary_column(labels, UNSAFE_SPELLINGS, SAFE_SPELLINGS, where=f"column `{names['label']}` of {path}")
    keep = sample_rows(len(rows), max_rows, seed)
    _require_both_classes(unsafe[keep], f"column `{names['label']}` of {path}")
    return AnswerSuite(Path(path).name, str(path), "answers", len(rows), [prompts[i] for i in keep],
                       [responses[i] for i in keep], unsafe[keep])


def answer_is_unsafe(prompt_unsafe: np.ndarray, refusal: np.ndarray) -> np.ndarray:
    """XSTest's answer label (:func:`refine.xstest.answer_safety`): a compliance with an unsafe prompt, or a refusal of
    a safe one, is an unsafe answer."""
    return (prompt_unsafe & ~refusal) | (~prompt_unsafe & refusal)


def _refusal_suite(name: str, source: str, fmt: str, rows_read: int, prompts: list[str], responses: list[str],
                   prompt_unsafe: np.ndarray, refusal: np.ndarray, unsafe: np.ndarray | None) -> RefusalSuite:
    if not ((prompt_unsafe & refusal).any() and (prompt_unsafe & ~refusal).any()) and not (
        (~prompt_unsafe & refusal).any() and (~prompt_unsafe & ~refusal).any()
    ):
        raise ValueError(f"{source} has no prompt group (unsafe or safe prompts) with both refusals and compliances "
                         f"({len(prompts)} rows), so no refusal AUC can be computed; add rows of the missing kind.")
    unsafe = answer_is_unsafe(prompt_unsafe, refusal) if unsafe is None else unsafe
    return RefusalSuite(name, source, fmt, rows_read, prompts, responses, prompt_unsafe, refusal, unsafe)


def load_refusals(path: str | os.PathLike, *, columns: dict[str, str] | None = None, max_rows: int | None = None,
                  seed: int = 0) -> RefusalSuite:
    """XSTest-style rows (``prompt``, ``response``, ``prompt_label``: safe/unsafe, ``refusal``: true/false).

    The answer label is the file's ``gold_answer`` column (unsafe/safe) when it has one, else derived from
    ``prompt_label`` and ``refusal`` with :func:`answer_is_unsafe`.
    """
    names = _columns(columns)
    rows = read_rows(path, flag="--refusals")
    prompts = text_column(rows, names["prompt"], path, _fix("prompt", "--refusals"))
    responses = text_column(rows, names["response"], path, _fix("response", "--refusals"))
    prompt_unsafe = binary_column(column_values(rows, names["prompt_label"], path, _fix("prompt_label", "--refusals")),
                                  UNSAFE_SPELLINGS, SAFE_SPELLINGS, where=f"column `{names['prompt_label']}` of {path}")
    refusal = binary_column(column_values(rows, names["refusal"], path, _fix("refusal", "--refusals")),
                            TRUE_SPELLINGS, FALSE_SPELLINGS, where=f"column `{names['refusal']}` of {path}")
    unsafe = None
    if "gold_answer" in rows[0]:
        unsafe = binary_column(column_values(rows, "gold_answer", path, "or drop the column from every row"),
                               UNSAFE_SPELLINGS, SAFE_SPELLINGS, where=f"column `gold_answer` of {path}")
    keep = sample_rows(len(rows), max_rows, seed)
    return _refusal_suite(Path(path).name, str(path), "refusals", len(rows), [prompts[i] for i in keep],
                          [responses[i] for i in keep], prompt_unsafe[keep], refusal[keep],
                          None if unsafe is None else unsafe[keep])


def load_xstest(folder: str | os.PathLike, *, max_rows: int | None = None, seed: int = 0) -> RefusalSuite:
    """Every answer in the XSTest folder (:func:`refine.xstest.read_xstest`), with the human gold refusal and label."""
    frame = read_xstest(folder)
    rows_read = len(frame)
    frame = frame.iloc[sample_rows(rows_read, max_rows, seed)]
    return _refusal_suite(Path(folder).name, str(folder), "xstest", rows_read,
                          frame["prompt"].tolist(), frame["response"].tolist(),
                          (frame["prompt_label"] == "unsafe").to_numpy(), frame["gold_refusal"].to_numpy(bool),
                          (frame["gold_answer"] == "unsafe").to_numpy())


def load_refine_run(run: str | os.PathLike, *, max_rows: int | None = None, seed: int = 0) -> AnswerSuite | RefusalSuite:
    """The gold test split of a refine run (the rows refine never trained on, selected on or estimated priors from).

    The corpus is rebuilt from the run's ``config.yaml`` with refine's own loader, which redraws the same seeded split.
    A run on the XSTest folder (``data.format: xstest``) gives a :class:`RefusalSuite` whose answer labels are the
    corpus gold; any other gives an :class:`AnswerSuite` (of prompt/response pairs, or of whole texts).

    Raises:
        FileNotFoundError: If the run, its config or its corpus is missing.
        ValueError: If the config does not load, or the corpus has no test split with both classes.
    """

    run = Path(run)
    config_path = run / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found; pass a run directory made by `python -m refine` to "
                                "--refine-run.")
    config = load_config(RefineConfig, config_path)
    try:
        corpus = load_corpus(config.data)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"the corpus of {run} cannot be found ({one_line(err)}); data.path in {config_path} "
                                "is relative to the folder refine ran in, so run from there.") from err
    test = corpus[corpus["split"] == "test"]
    if test.empty:
        raise ValueError(f"{run} has no gold test split (data.label_columns={config.data.label_columns}, "
                         f"test_fraction={config.data.test_fraction}); evaluate it on other data.")
    rows_read = len(test)
    test = test.iloc[sample_rows(rows_read, max_rows, seed)]
    unsafe = test["gold"].to_numpy() == 1
    name = f"{run.name} (test split)"
    _require_both_classes(unsafe, f"the test split of {run}")
    if config.data.format == "xstest":
        answers = read_xstest(config.data.path).loc[test["id"].to_numpy()]  # corpus id = row of read_xstest
        return _refusal_suite(name, str(run), "refine-run (xstest)", rows_read, answers["prompt"].tolist(),
                              answers["response"].tolist(), (answers["prompt_label"] == "unsafe").to_numpy(),
                              answers["gold_refusal"].to_numpy(bool), unsafe)
    if "prompt" in test.columns:
        return AnswerSuite(name, str(run), "refine-run", rows_read, test["prompt"].tolist(), test["response"].tolist(),
                           unsafe)
    return AnswerSuite(name, str(run), "refine-run (texts)", rows_read, None, test["text"].tolist(), unsafe)
