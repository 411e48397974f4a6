"""Jinja chat templates rendered by ponder: by the OpenAI engine for servers that cannot
continue a partial answer, and by the embedded engine when asked for the model's own
template (``chat_template="jinja"``) instead of llama.cpp's built-in one."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

from ponder.types import Message

__all__ = ["ChatTemplate"]


class ChatTemplate:
    """A Jinja chat template rendered on the client, the way Hugging Face renders it.

    ``server_adds_bos``: the server puts a BOS token before a completion prompt when it
    tokenizes it, so a BOS the template writes is dropped (else it would appear twice).
    """

    def __init__(
        self, source: str, bos_token: str = "", eos_token: str = "", server_adds_bos: bool = False
    ) -> None:
        from jinja2 import BaseLoader, TemplateError
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(
            loader=BaseLoader(), trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
        )
        env.filters["tojson"] = lambda x, indent=None: json.dumps(
            x, ensure_ascii=False, indent=indent
        )
        try:
            self._template = env.from_string(source)
        except TemplateError as exc:
            raise ValueError(f"the chat template does not parse: {exc}") from exc
        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.server_adds_bos = server_adds_bos

    def render(self, messages: Sequence[Message]) -> str:
        """The prompt text for ``messages`` with an assistant turn opened."""

        def raise_exception(message: str) -> None:
            raise ValueError(f"the chat template refused the messages: {message}")

        text = self._template.render(
            messages=list(messages),
            bos_token=self.bos_token,
            eos_token=self.eos_token,
            add_generation_prompt=True,
            raise_exception=raise_exception,
            strftime_now=lambda f: time.strftime(f),
        )
        if self.server_adds_bos and self.bos_token and text.startswith(self.bos_token):
            text = text[len(self.bos_token) :]
        return text

    @staticmethod
    def from_gguf(path: str | Path) -> ChatTemplate:
        """The template stored in a GGUF file's metadata (reads the vocabulary only); a
        llama.cpp server adds BOS to a completion prompt when the vocabulary asks for it."""
        from llama_cpp import Llama

        llm = Llama(str(path), vocab_only=True, verbose=False)
        try:
            source = llm.metadata.get("tokenizer.chat_template")
            if not source:
                raise ValueError(f"{path} carries no chat template")

            def text(token: int) -> str:
                if token < 0:
                    return ""
                return llm.detokenize([token], special=True).decode("utf-8", "replace")

            bos = llm.token_bos()
            adds_bos = bos >= 0 and llm.tokenize(b"x", add_bos=True)[:1] == [bos]
            return ChatTemplate(source, text(bos), text(llm.token_eos()), adds_bos)
        finally:
            llm.close()

    @staticmethod
    def load(spec: str) -> ChatTemplate:
        """From Jinja source text, a GGUF path, or a ponder model name."""
        if "{%" in spec or "{{" in spec:
            return ChatTemplate(spec)
        if Path(spec).is_file():
            return ChatTemplate.from_gguf(spec)
        from ponder import models

        return ChatTemplate.from_gguf(models.resolve(spec))
