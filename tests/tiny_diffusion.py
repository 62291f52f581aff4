"""Tiny random-weight Stable Diffusion 1.5, SDXL, FLUX.1, Wan2.1 and HunyuanVideo
image-to-video pipelines, built locally.

Each is saved with `save_pretrained` in the same layout as the real model's Hugging Face repo
(model_index.json, one folder per component, safetensors weights, tokenizers), so the images
backend loads it through the same `from_pretrained` call a user's model id takes. Tokenizers
come from a small local vocabulary; nothing is fetched from a hub. Each is well under 1 MB and
draws a 64x64 image (or a 9-frame clip) on the CPU in a fraction of a second; the pictures
are noise.
"""

from __future__ import annotations

from pathlib import Path

LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789.,:;!?'-()"


def clip_tokenizer():
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for letter in LETTERS:
        vocab[letter] = len(vocab)
        vocab[f"{letter}</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def t5_tokenizer():
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [(f"▁{c}", -1.0) for c in LETTERS] + [(c, -2.0) for c in LETTERS]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=512)


def _clip_text(projection: bool = False, hidden: int = 32):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, vocab_size=128,
                            hidden_size=hidden, intermediate_size=37, num_attention_heads=4,
                            num_hidden_layers=2, projection_dim=32, hidden_act="gelu",
                            max_position_embeddings=77)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def _vae(latent_channels: int = 4, **extra):
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(8, 16), in_channels=3, out_channels=3,
                         down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2,
                         latent_channels=latent_channels, norm_num_groups=4, sample_size=32,
                         **extra)


def _unet(**extra):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=1, sample_size=16,
                                in_channels=4, out_channels=4, norm_num_groups=4,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), **extra)


def build_sd(folder: Path) -> Path:
    """A Stable Diffusion 1.5-shaped pipeline (StableDiffusionPipeline)."""
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    torch.manual_seed(0)
    pipe = StableDiffusionPipeline(
        unet=_unet(cross_attention_dim=32, attention_head_dim=2), vae=_vae(),
        text_encoder=_clip_text(), tokenizer=clip_tokenizer(),
        scheduler=DDIMScheduler(beta_schedule="scaled_linear", clip_sample=False,
                                set_alpha_to_one=False, steps_offset=1),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return folder


def build_sdxl(folder: Path) -> Path:
    """An SDXL-shaped pipeline: two text encoders, size and crop conditioning."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    torch.manual_seed(0)
    unet = _unet(cross_attention_dim=64, attention_head_dim=2, use_linear_projection=True,
                 addition_embed_type="text_time", addition_time_embed_dim=8,
                 projection_class_embeddings_input_dim=6 * 8 + 32)
    pipe = StableDiffusionXLPipeline(
        unet=unet, vae=_vae(), text_encoder=_clip_text(), tokenizer=clip_tokenizer(),
        text_encoder_2=_clip_text(projection=True), tokenizer_2=clip_tokenizer(),
        scheduler=EulerDiscreteScheduler(beta_schedule="scaled_linear",
                                         timestep_spacing="leading", steps_offset=1))
    pipe.save_pretrained(folder)
    return folder


def build_flux(folder: Path) -> Path:
    """A FLUX.1-shaped pipeline: CLIP + T5 text encoders, a flow-matching transformer."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=1,
                                         num_single_layers=1, attention_head_dim=16,
                                         num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=32, axes_dims_rope=[4, 4, 8])
    t5 = T5EncoderModel(T5Config(vocab_size=128, d_model=32, d_kv=8, d_ff=37, num_layers=2,
                                 num_heads=4, pad_token_id=0, eos_token_id=1))
    pipe = FluxPipeline(
        transformer=transformer, vae=_vae(latent_channels=1, use_quant_conv=False,
                                          use_post_quant_conv=False, shift_factor=0.0609,
                                          scaling_factor=1.5035),
        text_encoder=_clip_text(), tokenizer=clip_tokenizer(),
        text_encoder_2=t5, tokenizer_2=t5_tokenizer(),
        scheduler=FlowMatchEulerDiscreteScheduler())
    pipe.save_pretrained(folder)
    return folder


def build_sd_lora(pipeline_folder: Path, out: Path, safe: bool = True) -> Path:
    """A random LoRA for the tiny SD UNet, saved as diffusers saves one (a brand-style adapter)."""
    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe = StableDiffusionPipeline.from_pretrained(pipeline_folder)
    torch.manual_seed(1)
    pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                     target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet))
    StableDiffusionPipeline.save_lora_weights(out, unet_lora_layers=layers,
                                              safe_serialization=safe)
    return out


def _wan_vae_and_text() -> tuple[object, object]:
    """The Wan video VAE (4x in time, 8x in space) and a UMT5 text encoder, tiny."""
    import torch
    from diffusers import AutoencoderKLWan
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    return vae, UMT5EncoderModel(UMT5Config(vocab_size=128, d_model=32, d_kv=8, d_ff=37,
                                            num_layers=2, num_heads=4, pad_token_id=0,
                                            eos_token_id=1, decoder_start_token_id=0))


def build_wan_i2v(folder: Path) -> Path:
    """A Wan2.1-I2V-shaped pipeline: UMT5 text encoder, CLIP vision image encoder, the Wan
    video VAE (4x in time, 8x in space) and a 3D transformer taking 36 latent channels (16
    noise + 4 mask + 16 image)."""
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        WanImageToVideoPipeline,
        WanTransformer3DModel,
    )
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModel,
    )

    vae, text_encoder = _wan_vae_and_text()
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=36,
        out_channels=16, text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2,
        cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32, image_dim=4)
    image_encoder = CLIPVisionModel(CLIPVisionConfig(
        hidden_size=4, projection_dim=4, num_hidden_layers=2, num_attention_heads=2,
        image_size=32, intermediate_size=16, patch_size=1))
    pipe = WanImageToVideoPipeline(
        tokenizer=t5_tokenizer(), text_encoder=text_encoder, vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        image_processor=CLIPImageProcessor(crop_size=32, size=32), image_encoder=image_encoder,
        transformer=transformer)
    pipe.save_pretrained(folder)
    return folder


def llama_tokenizer():
    """A character-level tokenizer with Llama-3's chat markers and LLaVA's <image>, so that
    HunyuanVideo-I2V's own prompt template tokenizes as it does with the real one: <image>
    lands at position 5, where the pipeline puts the image embeddings."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                "<|eot_id|>", "<image>"]
    words = ["system", "user", "assistant", "\n\n", "\n"]
    letters = list(dict.fromkeys(LETTERS + LETTERS.upper() + " ,"))
    vocab = {token: i for i, token in enumerate([*specials, *words, *letters, "<unk>"])}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                  for t in specials])
    tokenizer.add_tokens([AddedToken(word, normalized=False) for word in words])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|begin_of_text|>",
                                   eos_token="<|eot_id|>", pad_token="<pad>", unk_token="<unk>",
                                   model_max_length=4096), len(vocab)


def build_hunyuan_i2v(folder: Path) -> Path:
    """A HunyuanVideo-I2V-shaped pipeline: a LLaVA (Llama + CLIP vision) prompt encoder that
    sees the image, a CLIP text encoder, the Hunyuan video VAE and a latent-concat transformer
    (which drops the first four frames it makes)."""
    import torch
    from diffusers import (
        AutoencoderKLHunyuanVideo,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideoImageToVideoPipeline,
        HunyuanVideoTransformer3DModel,
    )
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
    )

    torch.manual_seed(0)
    tokenizer, vocab_size = llama_tokenizer()
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=2 * 4 + 1, out_channels=4, num_attention_heads=2, attention_head_dim=10,
        num_layers=1, num_single_layers=1, num_refiner_layers=1, patch_size=1, patch_size_t=1,
        guidance_embeds=False, text_embed_dim=16, pooled_projection_dim=32,
        rope_axes_dim=(2, 4, 4), image_condition_type="latent_concat")
    vae = AutoencoderKLHunyuanVideo(
        in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8),
        layers_per_block=1, act_fn="silu", norm_num_groups=4, scaling_factor=0.476986,
        spatial_compression_ratio=8, temporal_compression_ratio=4, mid_block_add_attention=True)
    llama = LlamaConfig(bos_token_id=1, eos_token_id=4, pad_token_id=0, hidden_size=16,
                        intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                        vocab_size=vocab_size, hidden_act="gelu")
    # CLIP-L/14 at 336 px: 576 patch embeddings, as many as the template's image slots.
    vision = CLIPVisionConfig(hidden_size=8, intermediate_size=37, projection_dim=32,
                              num_attention_heads=4, num_hidden_layers=2, image_size=336,
                              patch_size=14)
    text_encoder = LlavaForConditionalGeneration(LlavaConfig(
        vision_config=vision, text_config=llama, pad_token_id=0, image_token_index=5))
    pipe = HunyuanVideoImageToVideoPipeline(
        text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer, vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder_2=_clip_text(hidden=32), tokenizer_2=clip_tokenizer(),
        image_processor=CLIPImageProcessor(crop_size=336, size=336, resample=3))
    pipe.save_pretrained(folder)
    return folder


def qwen_tokenizer():
    """A byte-level BPE tokenizer with Qwen's end-of-text token, trained on a few words: any
    text tokenizes (byte by byte where it must), as Qwen3's does."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    text = Tokenizer(models.BPE())
    text.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    text.decoder = decoders.ByteLevel()
    text.train_from_iterator(["calm corporate ambient soft piano instruction caption"] * 5,
                             trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                 initial_alphabet=pre_tokenizers.ByteLevel
                                                 .alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=text, eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>")


def build_ace_step(folder: Path, turbo: bool = True) -> Path:
    """An ACE-Step 1.5-shaped pipeline: a Qwen3 text encoder, the condition encoder, a 1D DiT
    over 25 Hz latents and an Oobleck VAE at 48 kHz (1920x down to 8 channels; the real one:
    64, from an encoder half as wide as its output)."""
    import torch
    from diffusers import AceStepPipeline, AutoencoderOobleck, FlowMatchEulerDiscreteScheduler
    from diffusers.models.transformers.ace_step_transformer import AceStepTransformer1DModel
    from diffusers.pipelines.ace_step import AceStepConditionEncoder
    from transformers import Qwen3Config, Qwen3Model

    torch.manual_seed(0)
    transformer = AceStepTransformer1DModel(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, in_channels=24, audio_acoustic_hidden_dim=8,
        patch_size=2, rope_theta=10000.0, sliding_window=16, is_turbo=turbo)
    text_encoder = Qwen3Model(Qwen3Config(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, vocab_size=320, max_position_embeddings=1024))
    condition_encoder = AceStepConditionEncoder(
        hidden_size=32, intermediate_size=64, text_hidden_dim=32, timbre_hidden_dim=8,
        num_lyric_encoder_hidden_layers=1, num_timbre_encoder_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, rope_theta=10000.0,
        sliding_window=16)
    vae = AutoencoderOobleck(encoder_hidden_size=16, downsampling_ratios=[2, 4, 4, 6, 10],
                             decoder_channels=4, decoder_input_channels=8, audio_channels=2,
                             channel_multiples=[1, 1, 1, 1, 1], sampling_rate=48000)
    pipe = AceStepPipeline(vae=vae, text_encoder=text_encoder, tokenizer=qwen_tokenizer(),
                           transformer=transformer, condition_encoder=condition_encoder,
                           scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1,
                                                                     shift=1.0))
    pipe.save_pretrained(folder)
    return folder


def build_wan22_i2v(folder: Path) -> Path:
    """A Wan2.2-I2V-A14B-shaped pipeline: two experts (`transformer` for high noise,
    `transformer_2` below `boundary_ratio`), no CLIP image encoder, the Wan video VAE."""
    import torch
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        WanImageToVideoPipeline,
        WanTransformer3DModel,
    )

    def expert(seed: int) -> WanTransformer3DModel:
        torch.manual_seed(seed)
        return WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=36,
            out_channels=16, text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2,
            cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32)

    vae, text_encoder = _wan_vae_and_text()
    pipe = WanImageToVideoPipeline(
        tokenizer=t5_tokenizer(), text_encoder=text_encoder, vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0), transformer=expert(1),
        transformer_2=expert(2), boundary_ratio=0.9)
    pipe.save_pretrained(folder)
    return folder


def build_wan_lora(pipeline_folder: Path, out: Path, seed: int = 3) -> Path:
    """A random LoRA for a tiny Wan transformer, saved as diffusers saves one (the layout of
    LightX2V's step-distillation LoRAs: attention and feed-forward layers of every block)."""
    import torch
    from diffusers import WanImageToVideoPipeline, WanTransformer3DModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    transformer = WanTransformer3DModel.from_pretrained(pipeline_folder / "transformer")
    torch.manual_seed(seed)
    transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                       target_modules=["to_q", "to_k", "to_v", "to_out.0",
                                                       "ffn.net.0.proj", "ffn.net.2"]))
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(transformer))
    out.mkdir(parents=True, exist_ok=True)
    WanImageToVideoPipeline.save_lora_weights(out, transformer_lora_layers=layers,
                                              safe_serialization=True)
    return out / "pytorch_lora_weights.safetensors"
