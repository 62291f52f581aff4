"""A tiny random-weight NLLB-200 model (M2M100 architecture + NLLB tokenizer), built locally.

Same files as facebook/nllb-200-distilled-600M (config.json, model.safetensors,
tokenizer.json), loaded through the same `from_pretrained` calls; about 100 KB. Its output is
noise: tests check the plumbing (language codes, sidecar, glossary, review), not the quality.
"""

from __future__ import annotations

from pathlib import Path

LETTERS = ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,:;!?'-()[]/"
           "上鎖掛牌在主電源開關處關閉輸送帶ปิดสวิตช์สายพานลำเลียงล็อกเอาต์")


def build_nllb(folder: Path) -> Path:
    import torch
    from transformers import M2M100Config, M2M100ForConditionalGeneration, NllbTokenizer

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "▁": 4}
    for piece in [f"▁{c}" for c in LETTERS] + list(LETTERS):
        vocab.setdefault(piece, len(vocab))
    tokenizer = NllbTokenizer(vocab=vocab, merges=[], src_lang="eng_Latn")
    config = M2M100Config(
        vocab_size=len(tokenizer), d_model=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
        decoder_ffn_dim=32, max_position_embeddings=256, pad_token_id=1, bos_token_id=0,
        eos_token_id=2, decoder_start_token_id=2)
    torch.manual_seed(0)
    M2M100ForConditionalGeneration(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
