"""A tiny random-weight OmniVoice and speaker encoder, built locally in the layout of the real
ones and loaded through the same `from_pretrained` code.

OmniVoice: an OmniVoiceConfig over a two-layer Qwen3 backbone, a byte-level BPE text tokenizer
with OmniVoice's control tokens, and `audio_tokenizer/`: a HiggsAudioV2 tokenizer (DAC acoustic
model, HuBERT semantic model, 8 codebooks at 25 frames per second, as the real one). It speaks
noise in every language, through the real code: tokenizing, iterative unmasking with guidance,
the clone prompt's audio codes, decoding. About 6 MB, built in a few seconds.
"""

from __future__ import annotations

from pathlib import Path

CONTROL_TOKENS = ["<|endoftext|>", "<|denoise|>", "<|lang_start|>", "<|lang_end|>",
                  "<|instruct_start|>", "<|instruct_end|>", "<|text_start|>", "<|text_end|>"]


def build_omnivoice(folder: Path) -> Path:
    import torch
    from omnivoice import OmniVoice, OmniVoiceConfig
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        DacFeatureExtractor,
        HiggsAudioV2TokenizerConfig,
        HiggsAudioV2TokenizerModel,
        PreTrainedTokenizerFast,
        Qwen3Config,
    )

    folder.mkdir(parents=True, exist_ok=True)
    text = Tokenizer(models.BPE())
    text.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    text.decoder = decoders.ByteLevel()
    text.train_from_iterator(["check the forks before you drive"] * 5, trainers.BpeTrainer(
        vocab_size=320, special_tokens=CONTROL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))   # any script, byte by byte
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=text, eos_token="<|endoftext|>",
                                        pad_token="<|endoftext|>")
    tokenizer.save_pretrained(folder)
    # The audio mask id (1024) pads text positions too, so the text vocabulary is larger.
    backbone = Qwen3Config(vocab_size=1040, hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                           head_dim=16, max_position_embeddings=4096)
    torch.manual_seed(0)
    OmniVoice(OmniVoiceConfig(llm_config=backbone.to_dict())).save_pretrained(folder)

    codec = HiggsAudioV2TokenizerConfig(
        acoustic_model_config={"encoder_hidden_size": 8, "downsampling_ratios": [8, 5, 4, 2, 3],
                               "decoder_hidden_size": 32, "upsampling_ratios": [8, 5, 4, 2, 3],
                               "hidden_size": 16, "codebook_dim": 8},
        semantic_model_config={"hidden_size": 16, "num_hidden_layers": 1,
                               "num_attention_heads": 2, "intermediate_size": 32,
                               "conv_dim": [8] * 7, "num_conv_pos_embeddings": 16,
                               "num_conv_pos_embedding_groups": 2},
        target_bandwidths=[0.5, 1, 1.5, 2], codebook_dim=8)
    audio = HiggsAudioV2TokenizerModel(codec)
    with torch.no_grad():   # random weights whisper at -55 dBFS; make the noise audible
        audio.acoustic_decoder.conv2.weight.mul_(100)
    audio.save_pretrained(folder / "audio_tokenizer")
    DacFeatureExtractor(sampling_rate=24000, hop_length=960).save_pretrained(
        folder / "audio_tokenizer")
    return folder


def build_speaker_encoder(folder: Path) -> Path:
    """A WavLM x-vector speaker-verification model (microsoft/wavlm-base-plus-sv's layout)."""
    import torch
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForXVector

    config = WavLMConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, conv_dim=[8] * 7, num_conv_pos_embeddings=16,
                         num_conv_pos_embedding_groups=2, tdnn_dim=[16, 16, 16, 16, 32],
                         xvector_output_dim=16, num_buckets=32, max_bucket_distance=64)
    torch.manual_seed(0)
    WavLMForXVector(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=True,
                             return_attention_mask=True).save_pretrained(folder)
    return folder
