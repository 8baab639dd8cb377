"""Stages of an align run: where each writes, what decides its results (its fingerprint), and how it is finished.

Run directory (``runs/<name>/``)::

    config.yaml                      the resolved align config
    cache/                           encoder features and annotator scores shared by the refine variants
    refine/<variant>/                a refine run per variant (pn, oracle, labels50, gold): annotate/, refine/
    reward/<variant>/model/          its exported reward model (python -m reward export)
    prompts/                         train.jsonl, eval.jsonl, split.json
    reward_eval/<name>/              evaluation.json, evaluation.md of a training reward (name: its variant) or of
                                     the judge (name: judge); silr exports also get the tables in their README.md
    <algorithm>/<variant>/seed_<s>/  the training stage (ppo/, grpo/ or rloo/): policy/, metrics.csv, metrics.png,
                                     train.json
    evaluate/<variant>/seed_<s>/     samples.jsonl, summary.json
    report/                          report.html, report.md, summary.json, *.png

Each stage folder holds ``stage.json`` (refine.rundir's format) with the config that determines its results,
including the configs of the stages it reads, so a change upstream is seen downstream. A finished stage with the
same config is skipped; a different config is refused unless ``overwrite_output_dir`` (refine.rundir conventions).
The training stage's config holds the algorithm's settings under the algorithm's name (``ppo``, ``grpo`` or
``rloo``), so the evaluations and the report of a run refuse policies trained with another algorithm.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from align.algorithms import LOGGING_KEYS
from align.config import JUDGE, JUDGE_PAIRS, JUDGE_REFINE_VARIANT, REFINE_VARIANTS, SFT, VARIANT_REWARDS, AlignConfig
from refine.config import DataConfig, RefineConfig
from refine.config_loading import config_from_dict, config_to_dict, data_dir, load_config, merge
from refine.loop import refine_fingerprint
from refine.rundir import STAGE_FILE, RunConflictError, RunDir, atomic_dir, fingerprint, read_json, write_json
from reward.pairs_training import PAIR_SPLIT_KEYS, pair_split, pairs_source

# Which command makes each stage, for the message when a later stage runs alone without it.
MAKERS = {"refine": "pipeline", "reward": "pipeline", "judge": "pipeline", "prompts": "ppo", "reward_eval": "evaluate",
          "ppo": "ppo", "grpo": "train", "rloo": "train", "evaluate": "evaluate", "report": "report"}
# The reward evaluation's bootstrap of the pairwise accuracy (reward.evaluate's defaults), part of its fingerprint.
REWARD_EVAL_BOOTSTRAP = {"confidence": 0.9, "resamples": 1000, "seed": 0}
# Named preference-pair sets of evaluate.reward_pairs → their file under the data directory.
REWARD_PAIR_SETS = {"hh_rlhf_harmless_test": "hh_rlhf_harmless_test/test.jsonl.gz"}
EXTRA_FLAGS = {"refine": " --stop_after export", "reward": " --stop_after export", "judge": " --stop_after export"}
JUDGE_PAIRS_STAGE = "judge/pairs"  # the judge the pipeline trains on preference pairs (evaluate.judge: pairs)


class MissingStageError(FileNotFoundError):
    """A stage's input (the output of an earlier stage) does not exist yet."""


logger = logging.getLogger(__name__)


def run_dir(config: AlignConfig) -> RunDir:
    return RunDir(config.output_dir)


def refine_variant_config(config: AlignConfig, variant: str) -> RefineConfig:
    """The shared refine section with the variant's overrides, writing to ``refine/<variant>`` of this run."""
    data = merge(config_to_dict(config.refine), REFINE_VARIANTS[variant])
    data = merge(data, config.refine_overrides.get(variant, {}))
    root = Path(config.output_dir)
    data.update(name=f"{Path(config.output_dir).name}-{variant}", output_dir=str(root / "refine" / variant),
                cache_dir=str(root / "cache"), overwrite_output_dir=config.overwrite_output_dir)
    return config_from_dict(RefineConfig, data)


def needed_refine_variants(config: AlignConfig) -> list[str]:
    """Refine variants the pipeline must run: the training rewards of the variants, and the judge if it is gold."""
    needed = [VARIANT_REWARDS[v] for v in config.trained_variants
              if v in VARIANT_REWARDS and v not in config.ppo.reward_models]
    if config.evaluate.judge == JUDGE_REFINE_VARIANT:
        needed.append(JUDGE_REFINE_VARIANT)
    return list(dict.fromkeys(needed))


def export_fingerprint(config: AlignConfig, variant: str) -> dict:
    refine_config = refine_variant_config(config, variant)
    return {"refine": refine_fingerprint(refine_config), "loop": dataclasses.asdict(refine_config.loop),
            "iteration": str(config.export_iteration)}


def exported_model_dir(config: AlignConfig, variant: str) -> Path:
    return Path(config.output_dir) / "reward" / variant / "model"


def policy_identity(config: AlignConfig) -> dict:
    """The policy settings that change results (not where conversions are cached)."""
    policy = dataclasses.asdict(config.policy)
    for key in ("cache_dir", "trust_remote_code"):
        policy.pop(key)
    if not config.policy.use_lora:
        for key in [k for k in policy if k.startswith("lora_")]:
            policy.pop(key)
    return policy


def held_out_corpora(config: AlignConfig, *, warn: bool = False) -> dict[str, DataConfig]:
    """Every corpus a reward or the judge of this run trained on that has a prompt column → its data section: the
    evaluation prompts exclude the prompts of its training split (:func:`align.prompts.reward_training_prompts`).

    Keys: the refine variants this run needs, and ``<variant or judge>:external`` for a silr export given by path
    (``ppo.reward_models``, ``evaluate.judge``) whose refine run is still at hand (:func:`export_training_data`).
    ``warn``: log each such export whose run folder is gone (once, when the prompt split is built; every stage's
    fingerprint reads this too).
    """
    corpora = {}
    for variant in needed_refine_variants(config):
        data = refine_variant_config(config, variant).data
        if data.prompt_column:
            corpora[variant] = data
    for name, path in external_models(config).items():
        data = export_training_data(path, warn=warn)
        if data is not None and data.prompt_column:
            corpora[f"{name}:external"] = data
    return corpora


def external_models(config: AlignConfig) -> dict[str, str]:
    """The reward models given by path: ``ppo.reward_models`` by variant, and the judge (``evaluate.judge``)."""
    external = dict(config.ppo.reward_models)
    if config.evaluate.judge not in (JUDGE_REFINE_VARIANT, JUDGE_PAIRS):
        external[JUDGE] = config.evaluate.judge
    return external


def held_out_pair_models(config: AlignConfig) -> dict[str, dict]:
    """Every reward model trained on preference pairs (``reward train-pairs``) → the ``silr.source`` keys that give its
    split (:data:`reward.pairs_training.PAIR_SPLIT_KEYS`): the evaluation prompts exclude its training pairs' prompts.

    Keys: ``<variant or judge>:external`` for a model given by path, ``judge:pairs`` for the judge this pipeline
    trains (``evaluate.judge: pairs``; its split is known from the config before it is trained)."""
    sources = {f"{name}:external": pairs_source(path) for name, path in external_models(config).items()}
    if config.evaluate.judge == JUDGE_PAIRS:
        sources[f"{JUDGE}:{JUDGE_PAIRS}"] = judge_pairs_split(config)
    return {name: {k: source.get(k) for k in PAIR_SPLIT_KEYS} for name, source in sources.items()
            if source is not None}


def judge_pairs_training(config: AlignConfig):
    """The judge's ``evaluate.judge_pairs`` with ``pairs`` as a file path (a named set resolved)."""
    settings = config.evaluate.judge_pairs
    return dataclasses.replace(settings, pairs=str(reward_pairs_path(settings.pairs).resolve()))


def judge_pairs_split(config: AlignConfig) -> dict:
    """The split of the judge the pipeline trains on preference pairs, as its ``silr.source`` will record it."""
    return pair_split(judge_pairs_training(config))


def judge_pairs_fingerprint(config: AlignConfig) -> dict:
    return dataclasses.asdict(judge_pairs_training(config))


def judge_pairs_dir(config: AlignConfig) -> Path:
    return Path(config.output_dir) / JUDGE_PAIRS_STAGE / "model"


def export_training_data(model_dir: str | os.PathLike, *, warn: bool = False) -> DataConfig | None:
    """The data section of the refine run a silr export came from (its ``config.json`` names the run), or None for a
    model without silr metadata or whose run folder is gone (then nothing can be held out from it: logged if
    ``warn``)."""
    config_path = Path(model_dir) / "config.json"
    source = read_json(config_path).get("silr", {}).get("source", {}) if config_path.is_file() else {}
    run = source.get("run")
    if not run:
        return None
    run_config = Path(run) / "config.yaml"
    if not run_config.is_file():
        if warn:
            logger.warning("%s was trained by the refine run %s, which is not here: evaluation prompts cannot be held "
                           "out from its training split", model_dir, run)
        return None
    return load_config(RefineConfig, str(run_config)).data


def prompts_fingerprint(config: AlignConfig) -> dict:
    policy = policy_identity(config)
    tokenizer_keys = ("model_name_or_path", "gguf_file", "pad_token", "system_prompt", "plain_prompt_template")
    held_out = {v: dataclasses.asdict(data) for v, data in held_out_corpora(config).items()}
    fingerprint = {"prompts": dataclasses.asdict(config.prompts), "policy": {k: policy[k] for k in tokenizer_keys},
                   "held_out_from": held_out}
    pair_models = held_out_pair_models(config)
    if pair_models:  # only then: runs made before pairs-trained models existed keep their fingerprint
        fingerprint["held_out_from_pairs"] = pair_models
    return fingerprint


def reward_source(config: AlignConfig, variant: str) -> tuple[Path, dict]:
    """The training reward model of a variant: its folder and what identifies it."""
    if variant in config.ppo.reward_models:
        path = Path(config.ppo.reward_models[variant])
        return path, {"path": str(path.resolve()), "higher_is_safer": config.ppo.reward_higher_is_safer}
    refine_variant = VARIANT_REWARDS[variant]
    return exported_model_dir(config, refine_variant), {"export": export_fingerprint(config, refine_variant)}


def training_stage(config: AlignConfig, variant: str, seed: int) -> str:
    """The training stage of a variant and seed: ``<algorithm>/<variant>/seed_<s>``."""
    return stage_name(config.algorithm, variant, seed)


def train_fingerprint(config: AlignConfig, variant: str, seed: int) -> dict:
    """What decides a trained policy: policy, prompts, reward, and the algorithm's settings under its name.

    PPO's fingerprint is the one silr recorded before GRPO and RLOO existed (its settings hold normalize_rewards), so
    finished PPO runs stay valid. GRPO and RLOO add the shared ``normalize_rewards``.
    """
    settings = dataclasses.asdict(config.training)
    for key in ("seed", "num_seeds", "reward_models", "reward_higher_is_safer", *LOGGING_KEYS):
        settings.pop(key, None)
    if config.algorithm != "ppo":
        settings["normalize_rewards"] = config.ppo.normalize_rewards
    settings["seed"] = seed
    return {"policy": policy_identity(config), "prompts": prompts_fingerprint(config),
            "reward": reward_source(config, variant)[1], config.algorithm: settings}


def judge_source(config: AlignConfig) -> tuple[Path, dict]:
    judge = config.evaluate.judge
    if judge == JUDGE_REFINE_VARIANT:
        return exported_model_dir(config, JUDGE_REFINE_VARIANT), {"export": export_fingerprint(config, judge)}
    if judge == JUDGE_PAIRS:
        return judge_pairs_dir(config), {"pairs_training": judge_pairs_fingerprint(config)}
    return Path(judge), {"path": str(Path(judge).resolve()), "higher_is_safer": config.evaluate.judge_higher_is_safer}


def generation_settings(config: AlignConfig) -> dict:
    """Sampling settings of the evaluation: the same for every policy; unset ones follow the training algorithm's
    (GRPO and RLOO always end a completion at EOS)."""
    evaluate, training = config.evaluate, config.training
    if config.algorithm == "ppo":
        length, stop_token = training.response_length, training.stop_token
    else:
        length, stop_token = training.max_completion_length, "eos"
    return {"max_new_tokens": evaluate.max_new_tokens or length,
            "temperature": evaluate.temperature or training.temperature, "stop_token": stop_token}


def evaluate_fingerprint(config: AlignConfig, variant: str, seed: int) -> dict:
    trained = None if variant == SFT else train_fingerprint(config, variant, seed)
    scorers = {v: reward_source(config, v)[1] for v in config.trained_variants}
    threshold = config.evaluate.judge_threshold
    return {"policy": policy_identity(config), "trained": trained, "prompts": prompts_fingerprint(config),
            "generation": generation_settings(config), "seed": seed, "scorers": scorers,
            "judge": {**judge_source(config)[1], "threshold": threshold}}


@dataclasses.dataclass(frozen=True)
class RewardTarget:
    """A reward model the reward_eval stage evaluates: a trained variant's training reward, or the judge."""

    name: str  # the variant, or JUDGE; the stage is reward_eval/<name>
    path: Path  # the model folder
    identity: dict  # what identifies the model (reward_source / judge_source)
    refine_variant: str | None  # the refine run of this align run it was exported from; None: an outside folder
    higher_is_safer: bool | None  # the direction of a model without silr metadata
    threshold: float | None  # replaces the exported decision threshold (the judge's evaluate.judge_threshold)


def reward_targets(config: AlignConfig) -> list[RewardTarget]:
    """The training rewards of the trained variants (config order), then the judge."""
    targets = []
    for variant in config.trained_variants:
        path, identity = reward_source(config, variant)
        refine_variant = None if variant in config.ppo.reward_models else VARIANT_REWARDS[variant]
        targets.append(RewardTarget(variant, path, identity, refine_variant, config.ppo.reward_higher_is_safer, None))
    path, identity = judge_source(config)
    refine_variant = JUDGE_REFINE_VARIANT if config.evaluate.judge == JUDGE_REFINE_VARIANT else None
    targets.append(RewardTarget(JUDGE, path, identity, refine_variant, config.evaluate.judge_higher_is_safer,
                                config.evaluate.judge_threshold))
    return targets


def reward_pairs_path(setting: str | None) -> Path | None:
    """The file of ``evaluate.reward_pairs``: a named set under the data directory, or the path given."""
    if setting is None:
        return None
    return Path(data_dir()) / REWARD_PAIR_SETS[setting] if setting in REWARD_PAIR_SETS else Path(setting)


def reward_eval_fingerprint(config: AlignConfig, target: RewardTarget) -> dict:
    """The model's identity, its decision threshold, and the evaluation data and settings."""
    pairs = config.evaluate.reward_pairs
    if pairs is not None and pairs not in REWARD_PAIR_SETS:
        pairs = str(Path(pairs).resolve())
    return {"reward": target.identity, "threshold": target.threshold, "test_split_of": target.refine_variant,
            "pairs": pairs, "max_pairs": config.evaluate.reward_max_pairs, "bootstrap": REWARD_EVAL_BOOTSTRAP}


def report_fingerprint(config: AlignConfig) -> dict:
    evaluations = {f"{v}/seed_{s}": fingerprint(evaluate_fingerprint(config, v, s))
                   for v in config.variants for s in config.ppo.seeds}
    rewards = {t.name: fingerprint(reward_eval_fingerprint(config, t)) for t in reward_targets(config)}
    return {"evaluate": evaluations, "reward_eval": rewards, "report": dataclasses.asdict(config.report)}


def stage_name(kind: str, variant: str | None = None, seed: int | None = None) -> str:
    parts = [kind] + ([variant] if variant else []) + ([f"seed_{seed}"] if seed is not None else [])
    return "/".join(parts)


def is_done(run: RunDir, name: str, stage_config: dict, *, overwrite: bool) -> bool:
    """True if stage ``name`` holds results of ``stage_config``; raises RunConflictError on another config."""
    return run.check_stage(name, stage_config, overwrite=overwrite)


def require_stage(run: RunDir, name: str, stage_config: dict, *, config_path: str | None = None) -> Path:
    """The folder of a stage another stage reads; a missing or different one is an error naming the command to run."""
    folder = run.stage(name)
    command = MAKERS[name.split("/")[0]]
    kind = name.split("/")[0]
    hint = f"`python -m align {command} --config {config_path or 'CONFIG.yaml'}{EXTRA_FLAGS.get(kind, '')}`"
    if not (folder / STAGE_FILE).is_file():
        raise MissingStageError(f"{folder} not found: stage {name} has not run; run {hint} first.")
    try:
        run.check_stage(name, stage_config, overwrite=False)
    except RunConflictError as err:
        raise RunConflictError(f"{err} The stage is made by {hint}.") from err
    return folder


@contextlib.contextmanager
def building(run: RunDir, name: str, stage_config: dict) -> Iterator[Path]:
    """Yield a temporary folder; it becomes stage ``name`` (with ``stage.json``) only if the block succeeds."""
    with atomic_dir(run.stage(name)) as tmp:
        yield tmp
        write_json(tmp / STAGE_FILE, {"fingerprint": fingerprint(stage_config), "config": stage_config})


def finish_partial(partial: Path, folder: Path, stage_config: dict) -> None:
    """Mark a folder built in place (``partial``) as stage output and rename it onto ``folder``."""
    import shutil

    write_json(partial / STAGE_FILE, {"fingerprint": fingerprint(stage_config), "config": stage_config})
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(partial, folder)
