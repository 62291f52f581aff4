"""GPU benchmark: seconds of music per second of compute, MusicGen small and medium, ACE-Step.

The models are built from musicgen-small's and -medium's architectures (decoder width 1024 x
24 layers and 1536 x 48, 4 codebooks of 2048 codes at 50 Hz; T5-base text encoder; the 32 kHz
EnCodec) with random weights, directly on the GPU (decoder and text encoder in bf16, the codec
in fp32 as the backend keeps it): nothing is downloaded, and the work per step is the real
models'. Each runs through the sopreel backend as a build does: a fresh 30 s window, then a
continuation window (10 s of context, 20 s new), with classifier-free guidance (3.0), sampling
top-k 250. "x real time" is seconds of new music per second of wall time.

Published anchor: musicgen-medium on an RTX 4090 generates at 0.8x real time eager, 2.6x with
CUDA graphs (static cache + torch.compile, `--compile` here).

`ace-step`: ACE-Step 1.5 XL turbo at its size (a DiT 2560 wide, 32 layers, 32 query and 8
key-value heads of 128, FFN 9728, over 25 Hz latents of 64 channels; a condition encoder 2048
wide; a Qwen3-0.6B-sized text encoder; the Oobleck VAE at 48 kHz), random weights in bf16
throughout (the pipeline decodes in the DiT's dtype), through the `ace-step` backend: a fresh
120 s window and a continuation (20 s of context repainted into 100 s new), 8 steps without
guidance (turbo).

Usage: .venv/bin/python bench/music_gpu.py [--models small,medium,ace-step] [--runs 2] [--compile]
       [--json OUT]
       .venv/bin/python bench/music_gpu.py --quick  # CPU check of this script (scaled down)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_args import ROOT, add_quick, print_provenance, print_table, random_weights, seconds_of

sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

T5_BASE = dict(d_model=768, d_ff=3072, d_kv=64, num_layers=12, num_heads=12, vocab_size=32128)
ENCODEC_32K = dict(sampling_rate=32000, audio_channels=1, num_filters=64, hidden_size=128,
                   upsampling_ratios=[8, 5, 4, 4], codebook_size=2048, target_bandwidths=[2.2],
                   num_lstm_layers=2, num_residual_layers=1, chunk_length_s=None,
                   normalize=False, compress=2, use_causal_conv=False, pad_mode="reflect",
                   norm_type="weight_norm")
DECODERS = {
    "small": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                  ffn_dim=4096),
    "medium": dict(hidden_size=1536, num_hidden_layers=48, num_attention_heads=24,
                   ffn_dim=6144),
    "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, ffn_dim=64),
}
TINY_TEXT = dict(d_model=16, d_ff=32, d_kv=8, num_layers=1, num_heads=2, vocab_size=128)
PROMPT = "calm corporate ambient, soft piano, 80 bpm"


def build(size: str, device: str, dtype) -> tuple[object, object]:
    """A MusicGen model of `size` with random weights, and a processor around a small local
    tokenizer (the T5 vocabulary is not needed to time the model)."""
    import torch
    from tiny_diffusion import t5_tokenizer
    from transformers import (
        EncodecConfig,
        EncodecFeatureExtractor,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        MusicgenProcessor,
        T5Config,
    )

    text = T5Config(**(TINY_TEXT if size == "tiny" else T5_BASE))
    decoder = MusicgenDecoderConfig(vocab_size=2048, num_codebooks=4, pad_token_id=2048,
                                    bos_token_id=2048, max_position_embeddings=2048,
                                    **DECODERS[size])
    config = MusicgenConfig(text_encoder=text.to_dict(),
                            audio_encoder=EncodecConfig(**ENCODEC_32K).to_dict(),
                            decoder=decoder.to_dict())
    model = random_weights(lambda: MusicgenForConditionalGeneration(config), device, dtype)
    with torch.no_grad():   # random codebooks: zeros would make every code the same sound
        for layer in model.audio_encoder.quantizer.layers:
            layer.codebook.embed.normal_()
    generation = model.generation_config
    generation.decoder_start_token_id = generation.pad_token_id = 2048
    processor = MusicgenProcessor(EncodecFeatureExtractor(feature_size=1, sampling_rate=32000),
                                  t5_tokenizer())
    return model, processor


ACE_STEP = {"xl": dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                      encoder_hidden_size=2048),
            "tiny": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=8)}


def build_ace_step(size: str, device: str, dtype, work: Path) -> object:
    """An ACE-Step 1.5 pipeline of `size` with random weights; --quick: the tests' tiny one
    loaded through `from_pretrained`."""
    from diffusers import AceStepPipeline, AutoencoderOobleck, FlowMatchEulerDiscreteScheduler
    from diffusers.models.transformers.ace_step_transformer import AceStepTransformer1DModel
    from diffusers.pipelines.ace_step import AceStepConditionEncoder
    from tiny_diffusion import build_ace_step as build_tiny
    from tiny_diffusion import qwen_tokenizer
    from transformers import Qwen3Config, Qwen3Model

    if size == "tiny":
        return AceStepPipeline.from_pretrained(str(build_tiny(work / "ace-step")))
    dit = ACE_STEP[size]
    encoder_width = dit["encoder_hidden_size"]
    transformer = random_weights(lambda: AceStepTransformer1DModel(**dit, is_turbo=True),
                                 device, dtype)
    condition = random_weights(lambda: AceStepConditionEncoder(
        hidden_size=encoder_width, intermediate_size=encoder_width * 3, text_hidden_dim=1024),
        device, dtype)
    text = random_weights(lambda: Qwen3Model(Qwen3Config(
        hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
        num_key_value_heads=8, head_dim=128, vocab_size=320)), device, dtype)
    vae = random_weights(lambda: AutoencoderOobleck(
        encoder_hidden_size=128, downsampling_ratios=[2, 4, 4, 6, 10],
        channel_multiples=[1, 2, 4, 8, 16], decoder_channels=128, decoder_input_channels=64,
        audio_channels=2, sampling_rate=48000), device, dtype)
    return AceStepPipeline(vae=vae, text_encoder=text, tokenizer=qwen_tokenizer(),
                           transformer=transformer, condition_encoder=condition,
                           scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1,
                                                                     shift=1.0))


def run_ace_step(args: argparse.Namespace) -> dict:
    import torch

    from stages.music.acestep import AceStepBackend, AceStepOptions

    device = "cuda" if torch.cuda.is_available() and not args.quick else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    size = "tiny" if args.quick else "xl"
    window, context = (10.0, 4.0) if args.quick else (120.0, 20.0)
    work = Path(tempfile.mkdtemp(prefix="sopreel-bench-ace-"))
    started = time.perf_counter()
    pipe = build_ace_step(size, device, dtype, work)
    backend = AceStepBackend(AceStepOptions(model=f"random/ace-step-{size}", window_s=window,
                                            context_s=context, license="n/a", device=device))
    backend.use_pipeline(pipe)
    built = time.perf_counter() - started

    return measured(f"ace-step-{size}", pipe.transformer, dtype, False, built,
                    windows_timed(backend, work, window, context, args.runs, device), device)


def run(size: str, args: argparse.Namespace) -> dict:
    import torch

    from stages.music.musicgen import MusicgenBackend, MusicgenOptions

    device = "cuda" if torch.cuda.is_available() and not args.quick else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    window, context = (4.0, 1.0) if args.quick else (30.0, 10.0)
    started = time.perf_counter()
    model, processor = build(size, device, dtype)
    if args.compile:    # CUDA graphs through transformers' static cache
        model.generation_config.cache_implementation = "static"
        model.decoder.forward = torch.compile(model.decoder.forward, mode="reduce-overhead")
    backend = MusicgenBackend(MusicgenOptions(model=f"random/musicgen-{size}", window_s=window,
                                              context_s=context, license="n/a"))
    backend.use_model(model, processor)
    built = time.perf_counter() - started
    work = Path(tempfile.mkdtemp(prefix="sopreel-bench-music-"))

    # A continuation has a longer prompt: a compiled model compiles again for it, once.
    return measured(size, model.decoder, dtype, args.compile, built,
                    windows_timed(backend, work, window, context, args.runs, device,
                                  warm_continuation=True), device)


def measured(name: str, decoder, dtype, compiled: bool, built: float, figures: dict,
             device: str) -> dict:
    """One model's row: what ran, on what, and its window timings."""
    import torch

    result = {"model": name, "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
              "dtype": str(dtype).removeprefix("torch."), "compile": compiled,
              "decoder_params_m": round(sum(p.numel() for p in decoder.parameters()) / 1e6),
              "build_s": round(built, 1), **figures}
    if device == "cuda":
        result["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
    return result


def windows_timed(backend, work: Path, window: float, context: float, runs: int, device: str,
                  warm_continuation: bool = False) -> dict:
    """A warm-up window, then `runs` fresh windows and `runs` continuations (of the warm-up's
    tail), each as seconds and seconds of new music per second."""
    from stages.music import MusicRequest, cut_tail

    def timed(request: MusicRequest, out: Path) -> float:
        return seconds_of(lambda: backend.generate(request, out), device)

    first = timed(MusicRequest(prompt=PROMPT, seed=0), work / "warm.wav")
    cut_tail(work / "warm.wav", context, work / "tail.wav")
    if warm_continuation:
        timed(MusicRequest(prompt=PROMPT, seed=0, continue_from=work / "tail.wav"),
              work / "c.wav")
    fresh = [timed(MusicRequest(prompt=PROMPT, seed=k), work / f"w{k}.wav") for k in range(runs)]
    carried = [timed(MusicRequest(prompt=PROMPT, seed=k, continue_from=work / "tail.wav"),
                     work / f"c{k}.wav") for k in range(runs)]
    figures: dict = {"first_s": round(first, 2)}
    for name, times, new in (("fresh", fresh, window), ("continued", carried, window - context)):
        median = statistics.median(times)
        figures[name] = {"new_s": new, "median_s": round(median, 2),
                         "runs": [round(t, 2) for t in times],
                         "x_real_time": round(new / median, 2)}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="small,medium,ace-step")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--compile", action="store_true",
                        help="static cache + torch.compile (CUDA graphs)")
    add_quick(parser)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    print_provenance()
    sizes = ["tiny", "ace-step"] if args.quick else args.models.split(",")
    results = [run_ace_step(args) if size == "ace-step" else run(size, args) for size in sizes]
    print(json.dumps(results, indent=1), flush=True)
    print_table(["model", "window", "new s", "s (median)", "x real time"],
                [[r["model"], name, r[name]["new_s"], r[name]["median_s"],
                  r[name]["x_real_time"]] for r in results for name in ("fresh", "continued")])
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
