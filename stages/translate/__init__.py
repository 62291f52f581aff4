"""Stage `translate`: machine drafts of a script's narration, captions and title.

A draft is never shown to a worker as is: `stages.translations` files it as unreviewed in a
sidecar next to the script, applies the site glossary, and a person approves it before a build
may use it. Backends only turn sentences of one language into another.
"""

from __future__ import annotations

from stages.languages import Language
from stages.registry import Backend, Registry


class TranslateBackend(Backend):
    def translate(self, texts: list[str], source: Language, target: Language) -> list[str]:
        """One translation per text, in order."""
        raise NotImplementedError


BACKENDS: Registry[TranslateBackend] = Registry("translate", TranslateBackend)
BACKENDS.register("transformers", "stages.translate.seq2seq:Seq2SeqTranslator")
