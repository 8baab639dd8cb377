"""The SFT policy, its value model, and prompts written for it.

- :func:`resolve_policy_path`: a folder, Hub id or packaged alias → a folder ``from_pretrained`` loads. A GGUF policy
  (the packaged SmolLM2-135M-Instruct) cannot be saved or trained as is, so it is converted **once** to a plain HF
  folder (its dequantized state dict copied into a model built from its config without ``quantization_config``,
  saved as safetensors) under ``policy.cache_dir``, atomically.
- :func:`load_policy` / :func:`load_value_model`: the policy (optionally with LoRA applied by the trainer) and a value
  model on the policy's backbone (``AutoModelForSequenceClassification``, ``num_labels=1``, fresh head). Both get the
  same pad token, distinct from EOS (TRL PPO treats every pad id as padding); if it is new, the embeddings grow by
  one row set to the mean of the others, deterministically, so policy, reference and value model agree. By Jensen's
  inequality a mean output row gives the pad token at most probability 1/V at any step.
- :func:`policy_folder_with_pad`: a folder that loads as exactly what :func:`load_policy` returns (pad token and its
  embedding row included), for trainers that load the policy and their reference copy from a path themselves (TRL's
  GRPO and RLOO build the reference with ``from_pretrained(model.config._name_or_path)``): saved once under
  ``policy.cache_dir`` when the pad token is new, else the policy's own folder.
- :class:`PromptFormatter`: prompts → the policy's chat template with a generation prompt, or plain text
  (``plain_prompt_template``) with a warning when the tokenizer has no chat template.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from align.config import PolicyConfig
from refine.classifier_io import load_lora_adapters, safetensors_readable
from refine.errors import naming_weight_errors
from refine.packaged_models import ModelLocation, locate_model
from refine.rundir import atomic_dir, fingerprint
from refine.transformers_setup import DTYPES, quiet_transformers

logger = logging.getLogger(__name__)


def resolve_policy_path(config: PolicyConfig) -> str:
    """The folder (or Hub id) to load the SFT policy from; converts a GGUF policy once (see module docstring)."""
    location = locate_model(config.model_name_or_path, config.gguf_file, setting="policy.model_name_or_path")
    if location.gguf_file is None:
        return location.path
    return str(convert_gguf_policy(location, Path(config.cache_dir)))


def converted_folder(location: ModelLocation, cache_dir: Path) -> Path:
    """Where the plain copy of a GGUF policy lives: named by the file and a key of its path, size and mtime."""
    gguf_path = Path(location.path) / location.gguf_file
    if not gguf_path.is_file():
        raise FileNotFoundError(f"GGUF file {gguf_path} not found; check policy.model_name_or_path and gguf_file.")
    stat = gguf_path.stat()
    key = fingerprint({"path": str(gguf_path.resolve()), "size": stat.st_size, "mtime": int(stat.st_mtime)})
    return cache_dir / f"{gguf_path.stem}-{key}"


def plain_copy(model):
    """A trainable, saveable copy of a GGUF-loaded causal LM: same config minus ``quantization_config``."""
    from transformers import AutoConfig, AutoModelForCausalLM

    settings = model.config.to_dict()
    settings.pop("quantization_config", None)
    model_type = settings.pop("model_type")
    config = AutoConfig.for_model(model_type, **settings)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise ValueError(f"the GGUF model's weights do not fit its own config (missing {missing[:3]}, unexpected "
                         f"{unexpected[:3]}); convert it with llama.cpp's tools instead.")
    if config.tie_word_embeddings:
        plain.tie_weights()
    plain.generation_config = model.generation_config
    return plain


def convert_gguf_policy(location: ModelLocation, cache_dir: Path) -> Path:
    """Convert a GGUF policy to a plain HF folder once (atomic; a finished folder is reused).

    No collectives here: under a multi-process launch the caller converts on the main process before the others
    resolve the path (``run_ppo``), so every process finds the finished folder.
    """
    target = converted_folder(location, cache_dir)
    # atomic_dir makes the folder whole or not at all; a damaged single-file copy (a disk error) is converted again.
    weights = target / "model.safetensors"
    if (target / "config.json").is_file() and (
            safetensors_readable(weights) or (not weights.exists() and (target / "model.safetensors.index.json").is_file())):
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("converting %s/%s to a plain HF folder %s (once)", location.path, location.gguf_file, target)
    tokenizer = AutoTokenizer.from_pretrained(location.path, gguf_file=location.gguf_file)
    gguf_model = AutoModelForCausalLM.from_pretrained(location.path, gguf_file=location.gguf_file, dtype=torch.float32)
    plain = plain_copy(gguf_model)
    del gguf_model
    with atomic_dir(target) as tmp:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return target


def _grow_embeddings(model, size: int) -> None:
    """Resize the (input and output) embeddings to ``size`` rows, new rows set to the mean of the old ones."""
    old = model.get_input_embeddings().weight.shape[0]
    if size <= old:
        return
    model.resize_token_embeddings(size, mean_resizing=False)
    with torch.no_grad():
        embeddings = model.get_input_embeddings().weight
        embeddings[old:] = embeddings[:old].mean(dim=0, keepdim=True)
        output = model.get_output_embeddings()
        if output is not None and output.weight is not embeddings:
            output.weight[old:] = output.weight[:old].mean(dim=0, keepdim=True)


def ensure_pad_token(model, tokenizer, pad_token: str) -> None:
    """Give ``tokenizer`` a pad token distinct from EOS (added if needed) and ``model`` the rows and ids for it."""
    if _needs_pad_token(tokenizer):
        if pad_token == tokenizer.eos_token:
            raise ValueError(f"policy.pad_token={pad_token!r} is the EOS token; choose a distinct one, e.g. <|pad|>.")
        tokenizer.add_special_tokens({"pad_token": pad_token})
    if model is not None:
        _grow_embeddings(model, len(tokenizer))
        model.config.pad_token_id = tokenizer.pad_token_id
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id


def load_tokenizer(path: str, config: PolicyConfig):
    """The policy tokenizer: pad token distinct from EOS, left padding (PPO's queries are left-padded)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=config.trust_remote_code)
    if tokenizer.eos_token_id is None:
        raise ValueError(f"the tokenizer in {path} has no EOS token; PPO stops responses at EOS. Set one and save it.")
    ensure_pad_token(None, tokenizer, config.pad_token)
    tokenizer.padding_side = "left"
    return tokenizer


def load_policy(config: PolicyConfig, path: str | None = None):
    """``(model, tokenizer)`` of the SFT policy (or of a policy folder ``path`` saved by PPO)."""
    from transformers import AutoModelForCausalLM

    path = path or resolve_policy_path(config)
    tokenizer = load_tokenizer(path, config)
    with naming_weight_errors(path, "point policy.model_name_or_path at a complete model folder (a damaged converted or "
                                "trained policy folder: delete it and rerun)."):
        model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[config.dtype], use_safetensors=True,
                                                     trust_remote_code=config.trust_remote_code)
    ensure_pad_token(model, tokenizer, config.pad_token)
    return model, tokenizer


def _needs_pad_token(tokenizer) -> bool:
    return tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id


def policy_folder_with_pad(config: PolicyConfig, path: str | None = None) -> str:
    """A folder (or Hub id) whose ``from_pretrained`` equals :func:`load_policy`'s model and tokenizer.

    ``path`` itself when its tokenizer already pads with a token other than EOS; otherwise a copy with the pad token
    added (its embedding row the mean of the others, as :func:`ensure_pad_token` makes it), saved once under
    ``policy.cache_dir`` (atomic; a finished copy is reused). Named by the source, its files' sizes and times, the pad
    token and the dtype. As with :func:`convert_gguf_policy`, under a multi-process launch the main process calls this
    first and the others after a barrier.
    """
    from transformers import AutoTokenizer

    path = path or resolve_policy_path(config)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=config.trust_remote_code)
    if not _needs_pad_token(tokenizer):
        return path
    source = Path(path)
    files = sorted((p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in source.iterdir() if p.is_file()) \
        if source.is_dir() else []
    key = fingerprint({"source": str(source.resolve()) if source.is_dir() else path, "files": files,
                       "pad_token": config.pad_token, "dtype": config.dtype})
    target = Path(config.cache_dir) / f"{source.name}-pad-{key}"
    if (target / "config.json").is_file():
        return str(target)
    logger.info("saving %s with pad token %r to %s (once), for trainers that load the policy from a folder", path,
                config.pad_token, target)
    model, tokenizer = load_policy(config, path)
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return str(target)


def load_value_model(config: PolicyConfig, tokenizer, path: str | None = None, *, seed: int = 0):
    """A value model on the policy's backbone: ``AutoModelForSequenceClassification`` with one logit, new head."""
    from transformers import AutoModelForSequenceClassification

    path = path or resolve_policy_path(config)
    torch.manual_seed(seed)  # the fresh score head
    with quiet_transformers():  # "score.weight newly initialized" is expected here
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=1, dtype=DTYPES[config.dtype], use_safetensors=True,
            trust_remote_code=config.trust_remote_code,
        )
    ensure_pad_token(model, tokenizer, config.pad_token)
    return model


def lora_config(config: PolicyConfig):
    """The peft LoraConfig for the policy, or None when ``use_lora`` is off."""
    if not config.use_lora:
        return None
    from peft import LoraConfig

    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.lora_target_modules), task_type="CAUSAL_LM")


def load_trained_policy(config: PolicyConfig, folder: str | os.PathLike):
    """``(model, tokenizer)`` of a policy saved by the PPO stage: full weights, or LoRA adapters over the SFT
    policy (merged)."""
    folder = Path(folder)
    if (folder / "adapter_config.json").is_file():
        base, tokenizer = load_policy(config)
        return load_lora_adapters(base, folder), tokenizer
    return load_policy(config, str(folder))


class PromptFormatter:
    """Prompts → the text the policy sees: its chat template with a generation prompt, else plain text.

    Args:
        tokenizer: The policy tokenizer.
        system_prompt: A system message before each prompt (None: the template's default).
        plain_template: Used when the tokenizer has no chat template; must contain ``{prompt}``.
    """

    def __init__(self, tokenizer, *, system_prompt: str | None = None,
                 plain_template: str = "User: {prompt}\nAssistant:"):
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt
        self.plain_template = plain_template
        self.uses_chat_template = bool(getattr(tokenizer, "chat_template", None))
        if not self.uses_chat_template:
            logger.warning("the policy tokenizer has no chat template: prompts are given as plain text (%r)",
                           plain_template)

    @classmethod
    def from_config(cls, tokenizer, config: PolicyConfig) -> PromptFormatter:
        return cls(tokenizer, system_prompt=config.system_prompt, plain_template=config.plain_prompt_template)

    def messages(self, prompt: str) -> list[dict]:
        """The conversation the chat template renders: the system message (if set), then the prompt as the user."""
        messages = [{"role": "user", "content": prompt}]
        if self.system_prompt is not None:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        return messages

    def text(self, prompt: str) -> str:
        if not self.uses_chat_template:
            return self.plain_template.format(prompt=prompt)
        return self.tokenizer.apply_chat_template(self.messages(prompt), tokenize=False, add_generation_prompt=True)

    def token_ids(self, prompt: str) -> list[int]:
        """Token ids of the formatted prompt (the chat template carries its own special tokens)."""
        encoded = self.tokenizer(self.text(prompt), add_special_tokens=not self.uses_chat_template)
        return list(encoded["input_ids"])


def prompt_length_check(config: PolicyConfig, max_tokens: int):
    """A test of whether a prompt, formatted for the policy, has at most ``max_tokens`` tokens."""
    tokenizer = load_tokenizer(resolve_policy_path(config), config)
    formatter = PromptFormatter.from_config(tokenizer, config)
    return lambda prompt: len(formatter.token_ids(prompt)) <= max_tokens
