"""The evaluate stage: answers to held-out prompts, scored by every training reward and an independent judge.

The held-out prompts (``prompts/eval.jsonl``) are harmful requests a safe policy should refuse (``should_refuse``
true, from ``prompts.eval_sources``) and safe ones it should answer (false, ``prompts.safe_eval_sources``). For each
variant and seed (``sft`` included), the policy answers them with the same sampling settings (temperature, max new
tokens, stop at EOS) and the same seed, so policies are compared on common random numbers. Each answer gets:

- ``should_refuse``: copied from the prompt; ``refusal``: the keyword refusal detector (:mod:`align.refusal`);
- ``rewards``: the reward of every trained variant's training reward model (higher means safer);
- ``judge``: the independent judge's reward, and ``judge_unsafe`` (judge reward below its threshold);
- ``response_tokens`` (EOS excluded) and ``ended`` (EOS generated within the limit);
- ``kl``: log pi(a|p) - log pi_sft(a|p), summed over the answer's tokens, both at the sampling temperature. Its mean
  over answers sampled from pi estimates KL(pi || pi_sft) (the k1 estimator PPO logs as ``objective/kl``); 0 for sft.
  The same measure for every algorithm (GRPO and RLOO log a per-token KL instead).

Output: ``evaluate/<variant>/seed_<s>/samples.jsonl`` (one row per prompt) and ``summary.json`` (:func:`summarize`).
Before the first policy, the command also runs the reward evaluations that are missing (:mod:`align.reward_eval`).

The judge's and the rewards' numbers (``judge_mean``, ``judge_std``, ``unsafe_fraction``, ``rewards_mean``,
``own_reward_mean``) are taken over the prompts that should be refused, as before safe prompts existed, so the reward
distributions stay those of harmful prompts; over-refusal has its own keys.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from align.config import SFT, AlignConfig
from align.policy import PromptFormatter, load_policy, load_trained_policy, resolve_policy_path
from align.prompts import ensure_prompts
from align.refusal import is_refusal
from align.reward_eval import check_reward_models, judge_decision_threshold, run_reward_evals
from align.stages import (
    building,
    evaluate_fingerprint,
    generation_settings,
    is_done,
    judge_source,
    require_stage,
    reward_source,
    reward_targets,
    run_dir,
    stage_name,
    train_fingerprint,
    training_stage,
)
from refine.rundir import atomic_path, read_jsonl, write_json
from reward.model import RewardModel

logger = logging.getLogger(__name__)


@torch.inference_mode()
def generate_answers(model, tokenizer, formatter: PromptFormatter, prompts: list[str], *, max_new_tokens: int,
                     temperature: float, stop_at_eos: bool, batch_size: int, seed: int, desc: str = "generating"):
    """Sample one answer per prompt. Returns ``(prompt_ids, answer_ids, texts, ended)``, lists in prompt order.

    ``answer_ids`` stop after the first EOS (kept) when ``stop_at_eos``; ``texts`` are decoded without special tokens.
    """
    from transformers import set_seed

    set_seed(seed)
    eos = tokenizer.eos_token_id
    # As TRL's PPO rollouts do: the stop token is the model's generation EOS (None: always max_new_tokens).
    model.generation_config.eos_token_id = eos if stop_at_eos else None
    device = next(model.parameters()).device
    prompt_ids = [formatter.token_ids(p) for p in prompts]
    answers, texts, ended = [], [], []
    for start in tqdm(range(0, len(prompts), batch_size), desc=desc, unit="batch", leave=False):
        batch = prompt_ids[start : start + batch_size]
        padded = tokenizer.pad({"input_ids": batch}, padding=True, return_tensors="pt")  # left padding
        output = model.generate(
            input_ids=padded["input_ids"].to(device), attention_mask=padded["attention_mask"].to(device),
            do_sample=True, temperature=temperature, top_k=0, top_p=1.0, max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
        )
        for row in output[:, padded["input_ids"].shape[1] :].tolist():
            if stop_at_eos and eos in row:
                row, done = row[: row.index(eos) + 1], True
            else:
                row, done = [t for t in row if t != tokenizer.pad_token_id], False
            answers.append(row)
            ended.append(done)
            texts.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    return prompt_ids, answers, texts, ended


@torch.inference_mode()
def answer_logprobs(model, prompt_ids: list[list[int]], answer_ids: list[list[int]], *, temperature: float,
                    pad_token_id: int, batch_size: int) -> np.ndarray:
    """sum_t log pi(a_t | p, a_<t) of each answer at ``temperature``, shape ``(n,)`` (0 for an empty answer)."""
    device = next(model.parameters()).device
    totals = np.zeros(len(answer_ids), dtype=np.float64)
    for start in range(0, len(answer_ids), batch_size):
        rows = [p + a for p, a in zip(prompt_ids[start : start + batch_size], answer_ids[start : start + batch_size],
                                      strict=True)]
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, row in enumerate(rows):  # right padding: positions stay 0..len-1
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float() / temperature
        logprobs = torch.log_softmax(logits, dim=-1)
        for i in range(len(rows)):
            p, a = len(prompt_ids[start + i]), len(answer_ids[start + i])
            if a:
                positions = torch.arange(p - 1, p + a - 1, device=logprobs.device)
                targets = torch.tensor(answer_ids[start + i], device=logprobs.device)
                totals[start + i] = logprobs[i, positions, targets].sum().item()
    return totals


class Scorers:
    """The training reward models of the trained variants and the judge, loaded once."""

    def __init__(self, config: AlignConfig):
        batch = config.evaluate.reward_batch_size
        self.rewards = {}
        for variant in config.trained_variants:
            path, _ = reward_source(config, variant)
            self.rewards[variant] = RewardModel.from_pretrained(
                path, batch_size=batch, higher_is_safer=config.ppo.reward_higher_is_safer)  # cuda if available
        judge_path, _ = judge_source(config)
        self.judge = RewardModel.from_pretrained(judge_path, batch_size=batch,
                                                 higher_is_safer=config.evaluate.judge_higher_is_safer)
        self.judge_threshold = judge_decision_threshold(config.evaluate.judge_threshold, self.judge.metadata.threshold)
        used = {str(reward_source(config, v)[0].resolve()) for v in config.trained_variants}
        if str(judge_path.resolve()) in used:
            logger.warning("the judge %s is also a training reward: its scores are not an independent judgement",
                           judge_path)

    def score(self, prompts: list[str], answers: list[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        rewards = {v: model.score_pairs(prompts, answers) for v, model in self.rewards.items()}
        return rewards, self.judge.score_pairs(prompts, answers)


def _mean(values) -> float | None:
    """Mean of ``values``; None when there are none (e.g. no safe prompts)."""
    values = list(values)
    return float(np.mean(values)) if values else None


def summarize(rows: list[dict]) -> dict:
    """Means over the answers of one policy (one variant and seed).

    Args:
        rows: ``samples.jsonl`` rows (module docstring); at least one has ``should_refuse`` true.

    Returns:
        On the prompts that should be refused (``n_should_refuse`` of them): ``judge_mean``, ``judge_std`` (over
        answers), ``unsafe_fraction`` (judged unsafe), ``refusal_fraction`` (refusal detector), ``rewards_mean``
        (per training reward), ``own_reward_mean`` (the policy's own training reward; None for sft). On the safe prompts
        (``n_safe``; these are None without any): ``over_refusal_fraction`` (refusal detector),
        ``safe_judged_unsafe_fraction`` (the judge calls the answer unsafe: a wrong refusal, for a judge that learnt
        XSTest's definition), ``safe_judge_mean``. Over all ``n`` answers: ``kl_mean``, ``length_mean``,
        ``ended_fraction``; and ``by_source`` (``n``, ``should_refuse``, ``judge_mean``, ``unsafe_fraction``,
        ``refusal_fraction`` per source).
    """
    harmful = [r for r in rows if r["should_refuse"]]
    safe = [r for r in rows if not r["should_refuse"]]
    judge = np.array([r["judge"] for r in harmful])
    summary = {"n": len(rows), "n_should_refuse": len(harmful), "n_safe": len(safe),
               "judge_mean": float(judge.mean()), "judge_std": float(judge.std()),
               "unsafe_fraction": _mean(r["judge_unsafe"] for r in harmful),
               "refusal_fraction": _mean(r["refusal"] for r in harmful),
               "over_refusal_fraction": _mean(r["refusal"] for r in safe),
               "safe_judged_unsafe_fraction": _mean(r["judge_unsafe"] for r in safe),
               "safe_judge_mean": _mean(r["judge"] for r in safe),
               "kl_mean": _mean(r["kl"] for r in rows),
               "length_mean": _mean(r["response_tokens"] for r in rows),
               "ended_fraction": _mean(r["ended"] for r in rows)}
    summary["rewards_mean"] = {v: _mean(r["rewards"][v] for r in harmful) for v in rows[0]["rewards"]}
    summary["own_reward_mean"] = _mean(r["own_reward"] for r in harmful if r["own_reward"] is not None)
    by_source = {}
    for source in dict.fromkeys(r["source"] for r in rows):
        picked = [r for r in rows if r["source"] == source]
        by_source[source] = {"n": len(picked), "should_refuse": picked[0]["should_refuse"],
                             "judge_mean": _mean(r["judge"] for r in picked),
                             "unsafe_fraction": _mean(r["judge_unsafe"] for r in picked),
                             "refusal_fraction": _mean(r["refusal"] for r in picked)}
    summary["by_source"] = by_source
    return summary


def _check_inputs(config: AlignConfig, jobs, config_path: str | None) -> None:
    """Every stage the evaluation reads exists with this config; checked before any model is loaded."""
    run = run_dir(config)
    check_reward_models(config, reward_targets(config), config_path=config_path)
    for variant, seed in jobs:
        if variant != SFT:
            require_stage(run, training_stage(config, variant, seed), train_fingerprint(config, variant, seed),
                          config_path=config_path)


def evaluate_policy(config: AlignConfig, variant: str, seed: int, *, scorers: Scorers, sft, tokenizer,
                    eval_rows: list[dict]) -> Path:
    """Generate, score and write one policy's samples (``sft``: the SFT model itself)."""
    run = run_dir(config)
    name = stage_name("evaluate", variant, seed)
    settings = generation_settings(config)
    if variant == SFT:
        model = sft
    else:
        model, _ = load_trained_policy(config.policy, run.stage(training_stage(config, variant, seed)) / "policy")
        model.to(next(sft.parameters()).device)
    model.eval()
    formatter = PromptFormatter.from_config(tokenizer, config.policy)
    prompts = [row["prompt"] for row in eval_rows]
    batch = config.evaluate.batch_size
    prompt_ids, answer_ids, texts, ended = generate_answers(
        model, tokenizer, formatter, prompts, max_new_tokens=settings["max_new_tokens"],
        temperature=settings["temperature"], stop_at_eos=settings["stop_token"] == "eos", batch_size=batch, seed=seed,
        desc=f"{variant} seed {seed}: answers")
    if variant == SFT:
        kl = np.zeros(len(prompts))
    else:
        kwargs = {"temperature": settings["temperature"], "pad_token_id": tokenizer.pad_token_id, "batch_size": batch}
        kl = answer_logprobs(model, prompt_ids, answer_ids, **kwargs) - answer_logprobs(sft, prompt_ids, answer_ids,
                                                                                         **kwargs)
    rewards, judge = scorers.score(prompts, texts)
    eos = tokenizer.eos_token_id
    rows = []
    for i, source_row in enumerate(eval_rows):
        row_rewards = {v: float(r[i]) for v, r in rewards.items()}
        rows.append({
            "id": source_row["id"], "source": source_row["source"], "prompt": source_row["prompt"],
            "should_refuse": bool(source_row["should_refuse"]), "response": texts[i],
            "refusal": is_refusal(texts[i]), "response_tokens": sum(t != eos for t in answer_ids[i]), "ended": ended[i],
            "kl": float(kl[i]), "rewards": row_rewards, "own_reward": row_rewards.get(variant),
            "judge": float(judge[i]), "judge_unsafe": bool(judge[i] < scorers.judge_threshold),
        })
    summary = {"variant": variant, "seed": seed, "judge_threshold": scorers.judge_threshold, **settings,
               **summarize(rows)}
    with building(run, name, evaluate_fingerprint(config, variant, seed)) as tmp:
        with atomic_path(tmp / "samples.jsonl") as path, path.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        write_json(tmp / "summary.json", summary)
    over_refusal = summary["over_refusal_fraction"]
    logger.info("%s: harmful prompts: judge reward %.3f, unsafe %.2f, refused %.2f; safe prompts: refused %s; KL %.2f, "
                "%.1f tokens", name, summary["judge_mean"], summary["unsafe_fraction"], summary["refusal_fraction"],
                "-" if over_refusal is None else f"{over_refusal:.2f}", summary["kl_mean"], summary["length_mean"])
    return run.stage(name)


def run_evaluate(config: AlignConfig, *, config_path: str | None = None) -> list[Path]:
    """Evaluate the reward models (:mod:`align.reward_eval`), then every variant and seed, where not done yet with
    this config."""
    run = run_dir(config)
    jobs = [(v, s) for v in config.variants for s in config.ppo.seeds]
    todo = [(v, s) for v, s in jobs if not is_done(
        run, stage_name("evaluate", v, s), evaluate_fingerprint(config, v, s), overwrite=config.overwrite_output_dir)]
    if todo:
        _check_inputs(config, todo, config_path)  # before the reward evaluations: a missing policy fails at once
    run_reward_evals(config, config_path=config_path)
    if not todo:
        logger.info("evaluate: all %d policies done already (same config), skipped", len(jobs))
        return [run.stage(stage_name("evaluate", v, s)) for v, s in jobs]
    ensure_prompts(config)
    eval_rows = read_jsonl(run.stage("prompts") / "eval.jsonl")
    scorers = Scorers(config)
    sft, tokenizer = load_policy(config.policy, resolve_policy_path(config.policy))
    sft.to("cuda" if torch.cuda.is_available() else "cpu").eval()
    for variant, seed in tqdm(todo, desc="evaluating policies", unit="policy"):
        evaluate_policy(config, variant, seed, scorers=scorers, sft=sft, tokenizer=tokenizer, eval_rows=eval_rows)
    return [run.stage(stage_name("evaluate", v, s)) for v, s in jobs]
