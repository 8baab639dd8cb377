"""Recover (prompt, response) from a chat-formatted policy sequence, so the reward model reads its training template.

A PPO policy generates after a chat-formatted query, e.g. for SmolLM2 (ChatML)::

    <|im_start|>system\\n...<|im_end|>\\n<|im_start|>user\\n{prompt}<|im_end|>\\n<|im_start|>assistant\\n{response}<|im_end|>

The safety classifier was trained on ``template.format(prompt=..., response=...)`` (e.g. ``User: ...\\nAssistant:
...``), not on chat markup. :class:`ChatTextExtractor` learns the policy's markup once, by rendering its chat template
on sentinel messages:

- ``generation_marker``: what follows a user message when the generation prompt is added
  (``<|im_end|>\\n<|im_start|>assistant\\n``); the response is everything after its **last** occurrence;
- ``user_header``: what precedes a user message (``<|im_start|>user\\n``); the prompt is the text between its last
  occurrence before the generation marker and that marker (in a multi-turn query: the last user turn);
- ``turn_end``: what closes an assistant turn (``<|im_end|>``); the response is cut at its first occurrence or at EOS.

Remaining special tokens (BOS, pad, stray markup) are removed and both parts are stripped of surrounding whitespace.
A sequence without the generation marker (a policy without a chat template, or plain-text prompts) cannot be split:
it is scored whole, without the template, after removing special tokens.

Limits: the split relies on the response not containing the generation marker itself, which holds when PPO truncates
responses at EOS (``stop_token="eos"``); a template whose markup is not plain text around the message is not
recognised and falls back to whole-sequence scoring.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# Sentinels: plain ASCII words, so that templates which trim or escape content leave them intact.
_PROMPT = "SILRSENTINELPROMPTA"
_REPLY = "SILRSENTINELREPLYB"
_NEXT = "SILRSENTINELPROMPTC"


@dataclass(frozen=True)
class ChatMarkup:
    """The text a chat template puts around messages (see the module docstring)."""

    generation_marker: str
    user_header: str | None
    turn_end: str | None


def _render(tokenizer, messages: list[dict], add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def chat_markup(tokenizer) -> ChatMarkup | None:
    """Learn the markup of ``tokenizer``'s chat template; None if it has none or it cannot be probed."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    try:
        single = _render(tokenizer, [{"role": "user", "content": _PROMPT}], True)
    except Exception as err:  # jinja errors of arbitrary templates
        logger.warning("cannot render the policy's chat template (%s); scoring whole decoded sequences", err)
        return None
    if single.count(_PROMPT) != 1:
        return None
    generation_marker = single.split(_PROMPT, 1)[1]
    if not generation_marker.strip():
        return None
    user_header = turn_end = None
    try:
        closed = _render(tokenizer, [{"role": "user", "content": _PROMPT}, {"role": "assistant", "content": _REPLY}],
                         False)
        two_turns = _render(tokenizer, [{"role": "user", "content": _PROMPT}, {"role": "assistant", "content": _REPLY},
                                        {"role": "user", "content": _NEXT}], True)
    except Exception:  # a template that rejects assistant turns: keep the generation marker only
        closed = two_turns = None
    if closed and two_turns and _REPLY in closed and _REPLY in two_turns and _NEXT in two_turns:
        after_reply = closed.split(_REPLY, 1)[1]
        between = two_turns.split(_REPLY, 1)[1].split(_NEXT, 1)[0]
        turn_end = after_reply.strip() or None
        common = 0
        while common < min(len(after_reply), len(between)) and after_reply[common] == between[common]:
            common += 1
        user_header = between[common:] or None
    if user_header is None:
        before = single.split(_PROMPT, 1)[0]
        user_header = before.splitlines(keepends=True)[-1] if before.strip() else None
    return ChatMarkup(generation_marker=generation_marker, user_header=user_header, turn_end=turn_end)


class ChatTextExtractor:
    """Decoded policy sequences → the reward model's text (see the module docstring).

    Args:
        tokenizer: The policy's tokenizer (its chat template and special tokens are read once).
        template: The reward model's prompt/response template, fields ``{prompt}`` and ``{response}``.
    """

    def __init__(self, tokenizer, template: str):
        self.template = template
        self.markup = chat_markup(tokenizer)
        specials = set(tokenizer.all_special_tokens)
        specials.update(str(t) for t in getattr(tokenizer, "added_tokens_decoder", {}).values() if t.special)
        self.special_tokens = sorted((t for t in specials if t), key=len, reverse=True)
        self.eos_token = tokenizer.eos_token
        self._warned = False

    def strip_special(self, text: str) -> str:
        for token in self.special_tokens:
            text = text.replace(token, "")
        return text

    def split(self, text: str) -> tuple[str, str] | None:
        """``(prompt, response)`` of a decoded chat sequence (special tokens kept), or None if it has no markup."""
        markup = self.markup
        if markup is None:
            return None
        cut = text.rfind(markup.generation_marker)
        if cut < 0:
            return None
        before, response = text[:cut], text[cut + len(markup.generation_marker) :]
        if markup.user_header:
            start = before.rfind(markup.user_header)
            if start >= 0:
                before = before[start + len(markup.user_header) :]
        for end in (markup.turn_end, self.eos_token):
            if end and end in response:
                response = response[: response.index(end)]
        return self.strip_special(before).strip(), self.strip_special(response).strip()

    def to_text(self, decoded: str) -> str:
        """The reward model's input for one decoded sequence: the template if it splits, else the whole text."""
        parts = self.split(decoded)
        if parts is None:
            if not self._warned:
                logger.warning("no chat markup found in the policy's sequences; scoring them whole, without the "
                               "reward template")
                self._warned = True
            return self.strip_special(decoded).strip()
        return self.template.format(prompt=parts[0], response=parts[1])
