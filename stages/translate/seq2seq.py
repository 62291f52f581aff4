"""Backend `transformers`: NLLB-200, M2M100 or MarianMT through transformers' seq2seq models.

`model` is a Hugging Face id or a local folder (`from_pretrained` either way). The model family
decides how languages are named: NLLB takes codes like `tha_Thai` (templates/languages.yaml,
`nllb`), M2M100 takes `th`, and a MarianMT model is one language pair (or a multi-target model
that reads a `>>tha<<` prefix).
"""

from __future__ import annotations

import threading
from typing import Any, Literal

from pydantic import Field

from stages import hub
from stages.devices import free_memory, pick_device
from stages.errors import SopreelError
from stages.hub import HubWeights
from stages.languages import Language
from stages.models import locate
from stages.registry import BackendOptions
from stages.translate import TranslateBackend


class Seq2SeqOptions(BackendOptions):
    model: str = "facebook/nllb-200-distilled-600M"
    license: str | None = Field("CC-BY-NC-4.0", description="of the model's weights, recorded "
                                "with every draft")
    num_beams: int = Field(4, ge=1, le=16)
    max_new_tokens: int = Field(256, ge=8, le=1024)
    batch_size: int = Field(8, ge=1, le=64)
    device: Literal["auto", "cpu", "cuda"] = "auto"


class Seq2SeqTranslator(TranslateBackend):
    name = "transformers"
    Options = Seq2SeqOptions

    def __init__(self, options: Seq2SeqOptions):
        super().__init__(options)
        self.options: Seq2SeqOptions = options
        self.license = options.license   # type: ignore[misc]
        self._tokenizer: Any = None
        self._model: Any = None
        self._lock = threading.Lock()   # a tokenizer's source language is per-call state

    def hub_weights(self, languages: list[str]) -> list[HubWeights]:
        if locate(self.options.model, "translation model").kind != "hub":
            return []
        return [HubWeights(self.options.model, "transformers", "translation model",
                           str(self.license))]

    def load(self) -> None:
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        name = self.options.model
        for weights in self.hub_weights([]):   # pulled: that commit, no network; else asked
            snapshot = hub.pulled_snapshot(weights)
            name = str(snapshot) if snapshot else name
            if snapshot is None:
                hub.require(weights)
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(name)
            self._model = AutoModelForSeq2SeqLM.from_pretrained(name)
        except OSError as exc:
            raise SopreelError(f"Cannot load the translation model '{name}': {exc}. Give a "
                               "Hugging Face id this machine can download, or a local folder "
                               "with config.json, the weights and the tokenizer.") from None
        self._model.to(pick_device(self.options.device)).eval()

    def close(self) -> None:
        self._tokenizer = self._model = None
        free_memory()

    def translate(self, texts: list[str], source: Language, target: Language) -> list[str]:
        import torch

        results: list[str] = []
        size = self.options.batch_size
        with self._lock, torch.inference_mode():
            for start in range(0, len(texts), size):
                batch = texts[start:start + size]
                inputs, extra = self._encode(batch, source, target)
                output = self._model.generate(**inputs.to(self._model.device), **extra,
                                              num_beams=self.options.num_beams,
                                              max_new_tokens=self.options.max_new_tokens)
                results += [text.strip() for text in
                            self._tokenizer.batch_decode(output, skip_special_tokens=True)]
        return results

    def _encode(self, texts: list[str], source: Language,
                target: Language) -> tuple[Any, dict[str, Any]]:
        """Tokenised inputs and the `generate` arguments that select the target language."""
        tokenizer = self._tokenizer
        family = self._model.config.model_type
        kind = type(tokenizer).__name__
        if kind.startswith("Nllb"):
            tokenizer.src_lang = source.nllb
            forced = tokenizer.convert_tokens_to_ids(target.nllb)
            return tokenizer(texts, return_tensors="pt", padding=True), {
                "forced_bos_token_id": forced}
        if family == "m2m_100":
            tokenizer.src_lang = source.code.split("-")[0]
            forced = tokenizer.get_lang_id(target.code.split("-")[0])
            return tokenizer(texts, return_tensors="pt", padding=True), {
                "forced_bos_token_id": forced}
        if family == "marian":
            prefix = f">>{target.iso639_2}<<"
            if prefix in tokenizer.get_vocab():   # a multi-target Marian model
                texts = [f"{prefix} {text}" for text in texts]
            return tokenizer(texts, return_tensors="pt", padding=True), {}
        raise SopreelError(f"The translation model '{self.options.model}' is a {family} model; "
                           "use an NLLB-200, M2M100 or MarianMT model.")
