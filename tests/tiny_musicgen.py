"""Tiny random-weight MusicGen models, saved as transformers folders (under 1 MB each).

Real layout, toy sizes: a T5 text encoder whose tokenizer comes from a local vocabulary, a
32 kHz EnCodec at MusicGen's 50 frames a second with 4 codebooks of 64 codes, and a one-layer
decoder. The melody variant conditions on chroma as musicgen-melody does; the stereo one
interleaves a left and a right set of codebooks as the -stereo models do.
"""

from __future__ import annotations

from pathlib import Path

from tiny_diffusion import t5_tokenizer

RATE, CODES, CODEBOOKS = 32000, 64, 4


def build_musicgen(folder: Path, kind: str = "mono") -> Path:
    """kind: mono (musicgen-small's shape), stereo, or melody."""
    import torch
    from transformers import (
        EncodecConfig,
        EncodecFeatureExtractor,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        MusicgenMelodyConfig,
        MusicgenMelodyFeatureExtractor,
        MusicgenMelodyForConditionalGeneration,
        MusicgenMelodyProcessor,
        MusicgenProcessor,
        T5Config,
    )

    torch.manual_seed(0)
    tokenizer = t5_tokenizer()
    channels = 2 if kind == "stereo" else 1
    text = T5Config(vocab_size=tokenizer.vocab_size, d_model=16, d_ff=32, d_kv=8, num_layers=1,
                    num_heads=2)
    # 4 codebooks of 6 bits at 50 Hz: 1.2 kbps (musicgen-small: 4 of 11 bits, 2.2 kbps)
    codec = EncodecConfig(sampling_rate=RATE, audio_channels=1, num_filters=4, hidden_size=16,
                          codebook_size=CODES, codebook_dim=16, upsampling_ratios=[8, 5, 4, 4],
                          target_bandwidths=[1.2], num_residual_layers=1, num_lstm_layers=1,
                          chunk_length_s=None, normalize=False, compress=2)
    decoder = MusicgenDecoderConfig(vocab_size=CODES, num_codebooks=CODEBOOKS * channels,
                                    audio_channels=channels, hidden_size=16, ffn_dim=32,
                                    num_hidden_layers=1, num_attention_heads=2,
                                    max_position_embeddings=4096, pad_token_id=CODES,
                                    bos_token_id=CODES)
    parts = {"text_encoder": text.to_dict(), "audio_encoder": codec.to_dict(),
             "decoder": decoder.to_dict()}
    if kind == "melody":
        model = MusicgenMelodyForConditionalGeneration(MusicgenMelodyConfig(**parts,
                                                                            num_chroma=12))
        processor = MusicgenMelodyProcessor(
            MusicgenMelodyFeatureExtractor(sampling_rate=RATE), tokenizer)
    else:
        model = MusicgenForConditionalGeneration(MusicgenConfig(**parts))
        processor = MusicgenProcessor(EncodecFeatureExtractor(feature_size=channels,
                                                              sampling_rate=RATE), tokenizer)
    with torch.no_grad():
        # Codebooks start at zero, where every code sounds the same; and a random decoder's
        # biases alone make a sound. Random codebooks, no biases: the codes are the sound.
        for layer in model.audio_encoder.quantizer.layers:
            layer.codebook.embed.normal_(std=10.0)
            layer.codebook.embed_avg.copy_(layer.codebook.embed)
        for name, parameter in model.audio_encoder.decoder.named_parameters():
            if name.endswith("bias"):
                parameter.zero_()
    generation = model.generation_config
    generation.decoder_start_token_id = generation.pad_token_id = CODES
    generation.do_sample, generation.guidance_scale, generation.max_length = True, 3.0, 1500
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
