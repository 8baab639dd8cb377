"""A local causal LM asked "is this text unsafe? Yes or No" (``kind: hf``).

The score of a text is the log-odds of the answer on the next token after the prompt of ``refine.annotators.prompts``:

    score = logsumexp_{t in YES} logit_t - logsumexp_{t in NO} logit_t  ( = log P(Yes) - log P(No) )

where YES holds the ids of every variant in ``YES_VARIANTS`` ("Yes", " Yes", "yes", " yes", "YES", " YES") that the
tokenizer encodes as a single token, and NO likewise for ``NO_VARIANTS``. The softmax normaliser cancels, so raw
logits suffice. score > 0 is the argmax of Yes versus No.

Texts are truncated to ``max_length`` tokens, sorted by length and run in left-padded batches (position ids follow
the attention mask), so a text's score does not depend on its batch. The default model is the packaged 4-bit
SmolLM2-135M-Instruct: a weak, noisy annotator whose labels must never be presented as accurate (on 300 random
texts of the OpenAI moderation set its ROC-AUC was 0.50, chance level, with the default prompt). It scores about
2 texts/s on 2 CPU cores (prompts of ~190 tokens, batch 16); loading the GGUF file takes ~17-23 s.
"""

from __future__ import annotations

import inspect
import logging

import numpy as np
import torch

from refine.annotators.prompts import build_messages, build_plain_prompt
from refine.config import AnnotatorConfig
from refine.encoder import length_sorted_batches
from refine.packaged_models import locate_model

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2"
YES_VARIANTS = ("Yes", " Yes", "yes", " yes", "YES", " YES")
NO_VARIANTS = ("No", " No", "no", " no", "NO", " NO")


def answer_token_ids(tokenizer, variants: tuple[str, ...]) -> list[int]:
    """Ids of the ``variants`` that the tokenizer encodes as exactly one token (sorted, unique).

    Raises:
        ValueError: If no variant is a single token.
    """
    ids = set()
    for variant in variants:
        encoded = tokenizer.encode(variant, add_special_tokens=False)
        if len(encoded) == 1:
            ids.add(encoded[0])
    if not ids:
        raise ValueError(
            f"the tokenizer encodes none of {variants} as one token, so the annotator cannot read its answer; "
            "use another annotator.model_name_or_path."
        )
    return sorted(ids)


def load_causal_lm(config: AnnotatorConfig):
    """Load the annotator LM and its tokenizer: the packaged SmolLM2 GGUF by default, else a folder or Hub id.

    GGUF files are dequantized by transformers (needs the ``gguf`` package); other models load from safetensors only.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    location = locate_model(config.model_name_or_path or DEFAULT_MODEL, config.gguf_file,
                            setting="annotator.model_name_or_path")
    weights = {"gguf_file": location.gguf_file} if location.gguf_file else {"use_safetensors": True}
    trust = config.trust_remote_code
    logger.info("loading annotator LM %s%s", location.path, f" ({location.gguf_file})" if location.gguf_file else "")
    tokenizer = AutoTokenizer.from_pretrained(location.path, trust_remote_code=trust, **(
        {"gguf_file": location.gguf_file} if location.gguf_file else {}
    ))
    model = AutoModelForCausalLM.from_pretrained(location.path, trust_remote_code=trust, **weights)
    model.eval()
    if torch.cuda.is_available():
        model.to("cuda")
    return model, tokenizer


class CausalLMScorer:
    """Scores texts with a causal LM (see the module docstring); call it on a list of texts.

    Args:
        model: A ``transformers`` causal LM in eval mode.
        tokenizer: Its tokenizer. Its padding side is set to left; a missing pad token becomes the EOS token.
        instruction: The question (``AnnotatorConfig.instruction``).
        few_shot: Few-shot examples (``AnnotatorConfig.few_shot``).
        max_length: Tokens of each text kept (the prompt around it is not counted).
        batch_size: Prompts per forward pass.
    """

    def __init__(self, model, tokenizer, *, instruction: str, few_shot: list[dict], max_length: int, batch_size: int):
        self.model = model
        self.tokenizer = tokenizer
        self.instruction = instruction
        self.few_shot = few_shot
        self.max_length = max_length
        self.batch_size = batch_size
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.use_chat = getattr(tokenizer, "chat_template", None) is not None
        if not self.use_chat:
            logger.warning(
                "the annotator's tokenizer has no chat template; using a plain-text Yes/No prompt instead, which "
                "suits base models but may score an instruction-tuned model worse."
            )
        self.yes_ids = answer_token_ids(tokenizer, YES_VARIANTS)
        self.no_ids = answer_token_ids(tokenizer, NO_VARIANTS)
        params = inspect.signature(model.forward).parameters
        self.pass_position_ids = "position_ids" in params
        self.logits_to_keep = "logits_to_keep" in params

    @classmethod
    def from_config(cls, config: AnnotatorConfig) -> CausalLMScorer:
        model, tokenizer = load_causal_lm(config)
        return cls(
            model, tokenizer, instruction=config.instruction, few_shot=config.few_shot,
            max_length=config.max_length, batch_size=config.batch_size,
        )

    def _truncate(self, texts: list[str]) -> list[str]:
        encoded = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [
            self.tokenizer.decode(ids[: self.max_length]) if len(ids) > self.max_length else text
            for text, ids in zip(texts, encoded, strict=True)
        ]

    def prompts(self, texts: list[str]) -> list[str]:
        """The full prompt string of each text (chat template applied, generation prompt added)."""
        kwargs = {"instruction": self.instruction, "few_shot": self.few_shot}
        if not self.use_chat:
            return [build_plain_prompt(text, **kwargs) for text in self._truncate(texts)]
        return [
            self.tokenizer.apply_chat_template(build_messages(text, **kwargs), tokenize=False, add_generation_prompt=True)
            for text in self._truncate(texts)
        ]

    @torch.inference_mode()
    def __call__(self, texts: list[str], advance=lambda k: None) -> np.ndarray:
        """Scores of ``texts``, shape ``(n,)``, float64; calls ``advance(k)`` after each batch of k texts."""
        # The chat template already holds the special tokens (BOS, <|im_start|>): add none twice.
        encoded = self.tokenizer(self.prompts(texts), add_special_tokens=not self.use_chat)
        rows = [{"input_ids": ids, "attention_mask": mask} for ids, mask in
                zip(encoded["input_ids"], encoded["attention_mask"], strict=True)]
        device = next(self.model.parameters()).device
        yes, no = torch.tensor(self.yes_ids, device=device), torch.tensor(self.no_ids, device=device)
        scores = np.empty(len(texts), dtype=np.float64)
        for batch_idx in length_sorted_batches([len(r["input_ids"]) for r in rows], self.batch_size):
            batch = self.tokenizer.pad([rows[i] for i in batch_idx], return_tensors="pt").to(device)
            inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
            if self.pass_position_ids:
                inputs["position_ids"] = (batch["attention_mask"].long().cumsum(-1) - 1).clamp(min=0)
            if self.logits_to_keep:
                inputs["logits_to_keep"] = 1
            logits = self.model(**inputs).logits[:, -1, :].float()
            score = torch.logsumexp(logits[:, yes], dim=-1) - torch.logsumexp(logits[:, no], dim=-1)
            scores[batch_idx] = score.cpu().double().numpy()
            advance(len(batch_idx))
        return scores
