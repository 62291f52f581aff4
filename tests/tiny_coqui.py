"""Tiny random-weight coqui models, built locally, loaded through the same code as real ones.

They speak noise, but through the real XTTS and VITS code paths: the tokenizer, the GPT, the
HiFi-GAN decoder and its speaker encoder, coqui's `TTS(model_path=..., config_path=...)`.
"""

from __future__ import annotations

from pathlib import Path

THAI = "".join(chr(c) for c in range(0x0E01, 0x0E5C))


def build_xtts(folder: Path, reference: Path, languages=("en", "zh-cn"),
               max_text_tokens: int = 100) -> Path:
    """An XTTS folder (config.json, model.pth, vocab.json, speakers_xtts.pth), about 90 MB:
    XTTS's speaker encoder and decoder widths are fixed by the architecture."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer
    from TTS.tts.models.xtts import Xtts, XttsArgs

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    special = ["[STOP]", "[UNK]", "[SPACE]", "[START]", *(f"[{code}]" for code in languages)]
    corpus = ["abcdefghijklmnopqrstuvwxyz 0123456789 .,!?'- zhong wen1 2 3 4 5"] * 10
    tokenizer.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=200,
                                                              special_tokens=special))
    tokenizer.save(str(folder / "vocab.json"))
    args = XttsArgs(gpt_layers=1, gpt_n_model_channels=32, gpt_n_heads=2, decoder_input_dim=32,
                    gpt_max_audio_tokens=40, gpt_max_text_tokens=max_text_tokens,
                    gpt_max_prompt_tokens=70)
    config = XttsConfig(model_args=args, languages=list(languages))
    torch.manual_seed(0)
    model = Xtts(config)
    model.tokenizer = VoiceBpeTokenizer(str(folder / "vocab.json"))
    model.init_models()
    torch.save({"model": model.state_dict()}, folder / "model.pth")
    config.save_json(str(folder / "config.json"))
    latent, embedding = model.get_conditioning_latents(audio_path=[str(reference)])
    torch.save({"Stock Speaker": {"gpt_cond_latent": latent, "speaker_embedding": embedding}},
               folder / "speakers_xtts.pth")
    return folder


def build_vits(folder: Path) -> Path:
    """A single-speaker character VITS (Thai letters), about 5 MB."""
    import torch
    from TTS.config.shared_configs import BaseAudioConfig
    from TTS.tts.configs.shared_configs import CharactersConfig
    from TTS.tts.configs.vits_config import VitsConfig
    from TTS.tts.models.vits import Vits, VitsArgs

    folder.mkdir(parents=True, exist_ok=True)
    args = VitsArgs(hidden_channels=16, hidden_channels_ffn_text_encoder=32,
                    num_heads_text_encoder=2, num_layers_text_encoder=1,
                    num_layers_posterior_encoder=1, num_layers_flow=1,
                    resblock_kernel_sizes_decoder=[3], resblock_dilation_sizes_decoder=[[1, 3, 5]],
                    upsample_rates_decoder=[8, 8, 4], upsample_initial_channel_decoder=32,
                    upsample_kernel_sizes_decoder=[16, 16, 8], init_discriminator=False)
    characters = CharactersConfig(
        characters_class="TTS.tts.models.vits.VitsCharacters", pad="<PAD>", eos="<EOS>",
        bos="<BOS>", blank="<BLNK>", characters=THAI + "abcdefghijklmnopqrstuvwxyz",
        punctuations="!'(),-.:;? ", phonemes=None, is_unique=True, is_sorted=True)
    config = VitsConfig(model_args=args, use_phonemes=False, text_cleaner="multilingual_cleaners",
                        characters=characters,
                        audio=BaseAudioConfig(sample_rate=16000, hop_length=256, win_length=1024,
                                              fft_size=1024))
    torch.manual_seed(0)
    model = Vits(config)
    torch.save({"model": model.state_dict()}, folder / "model.pth")
    config.save_json(str(folder / "config.json"))
    return folder
