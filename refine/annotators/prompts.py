"""The few-shot Yes/No prompt put to an LLM annotator (shared by the ``hf`` and ``openai`` kinds).

Chat layout (``build_messages``): a system turn holding ``instruction``; then, for each few-shot example, a user turn
``Text: <example>`` and an assistant turn ``Yes`` or ``No``; then a user turn ``Text: <text>``. The model's next
token answers the question, so the annotator reads its probabilities of Yes and No.

Plain layout (``build_plain_prompt``), for tokenizers without a chat template: the same content as one string that
ends in ``Answer:``, so the next token is `` Yes`` or `` No`` (with a leading space).
"""

from __future__ import annotations

USER_TEMPLATE = "Text: {text}"


def build_messages(text: str, *, instruction: str, few_shot: list[dict]) -> list[dict[str, str]]:
    """Chat messages asking whether ``text`` is unsafe, after the few-shot examples.

    Args:
        text: The text to label (already truncated by the caller).
        instruction: The question, e.g. ``AnnotatorConfig.instruction``; sent as the system turn.
        few_shot: Examples, each ``{"text": ..., "label": "Yes" | "No"}``.

    Returns:
        OpenAI-style messages: ``[{"role": "system" | "user" | "assistant", "content": ...}, ...]``.
    """
    messages = [{"role": "system", "content": instruction}]
    for shot in few_shot:
        messages.append({"role": "user", "content": USER_TEMPLATE.format(text=shot["text"])})
        messages.append({"role": "assistant", "content": shot["label"]})
    messages.append({"role": "user", "content": USER_TEMPLATE.format(text=text)})
    return messages


def build_plain_prompt(text: str, *, instruction: str, few_shot: list[dict]) -> str:
    """The same question as one plain-text prompt ending in ``Answer:`` (for models without a chat template)."""
    parts = [instruction, ""]
    for shot in few_shot:
        parts += [USER_TEMPLATE.format(text=shot["text"]), f"Answer: {shot['label']}", ""]
    parts += [USER_TEMPLATE.format(text=text), "Answer:"]
    return "\n".join(parts)
