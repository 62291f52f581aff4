"""GPU benchmark: denoising steps of the real-size Wan2.1-I2V-14B and Wan2.2-I2V-A14B
transformers at 480p, per step and per 81-frame clip, plain, distilled and with a cache hook.

Each transformer is built from its architecture (40 layers, width 5120, 40 heads, FFN 13824,
UMT5 text width 4096; Wan2.1 adds CLIP-H image tokens of width 1280; Wan2.2 A14B has two such
experts without image tokens, one of which runs at each step) with random weights, directly on
the GPU in bf16: nothing is downloaded, and the arithmetic per step is the real model's. Inputs
are a 480x832, 81-frame clip's latents (21 x 60 x 104, patches of 1x2x2: 32,760 tokens), 512
text tokens (and 257 image tokens for Wan2.1). A guided step runs the transformer twice
(conditional and unconditional), as `WanImageToVideoPipeline` does; an unguided one once.

Per clip (denoising only; the text encoder and VAE decode come on top): the model card's 40
guided steps, and the distilled setting of LightX2V's 4-step LoRAs (4 unguided steps). With a
cache hook: TaylorSeer (one step in 5 computed after the first 3, the rest predicted) over
`--cache-steps` unguided steps; its schedule, not the weights, decides how many steps run, so
random weights time it fairly (a first-block cache, which skips by how much the features
change, would not be timed fairly on random weights).

The floor: FLOPs per step counted from the shapes (below; about 3.3 PFLOP guided for Wan2.1)
at a sustained 800 TFLOP/s of dense bf16, about 4.2 s. Published anchors: 366 s for a 40-step
480p Wan2.1 clip on one H200 with the official code (about 9 s per step), 14 s with a 4-step
distilled model in FP8.

Usage: .venv/bin/python bench/animate_gpu.py [--models wan2.1,wan2.2] [--runs 3] [--compile]
       [--attention NAME] [--cache-steps 12] [--json OUT]
       .venv/bin/python bench/animate_gpu.py --quick  # CPU check of this script (scaled down)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from bench_args import add_quick, print_provenance, print_table, random_weights, seconds_of

WAN_I2V_14B = dict(patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128,
                   in_channels=36, out_channels=16, text_dim=4096, freq_dim=256,
                   ffn_dim=13824, num_layers=40, cross_attn_norm=True,
                   qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=1280,
                   added_kv_proj_dim=5120, rope_max_seq_len=1024)
MODELS = {"wan2.1": WAN_I2V_14B,   # Wan2.2 A14B: each expert is Wan2.1's without image tokens
          "wan2.2": {**WAN_I2V_14B, "image_dim": None, "added_kv_proj_dim": None}}
TINY = dict(num_attention_heads=2, attention_head_dim=16, text_dim=32, ffn_dim=64,
            num_layers=2, rope_max_seq_len=64)
TINY_IMAGE = dict(image_dim=16, added_kv_proj_dim=32)
CLIP_STEPS = {"model card (40 guided)": (40, True), "distilled (4 unguided)": (4, False)}
SHAPE_480P = {"frames": 81, "height": 480, "width": 832, "text": 512, "image": 257}
SHAPE_TINY = {"frames": 9, "height": 64, "width": 96, "text": 16, "image": 8}
FLOOR_TFLOPS = 800


def tokens(shape: dict) -> int:
    latent_frames = (shape["frames"] - 1) // 4 + 1
    return latent_frames * (shape["height"] // 16) * (shape["width"] // 16)


def flops_per_forward(config: dict, shape: dict) -> float:
    """Multiply-adds x 2 of one transformer call: projections, attention, FFN, per layer."""
    n, d = tokens(shape), config["num_attention_heads"] * config["attention_head_dim"]
    context = shape["text"] + (shape["image"] if config.get("image_dim") else 0)
    per_layer = (2 * n * d * d * 4                 # self-attention q, k, v, out
                 + 2 * 2 * n * n * d               # q·k and attention·v
                 + 2 * n * d * d * 2               # cross-attention q and out
                 + 2 * context * d * d * 4         # cross-attention k, v for text and image
                 + 2 * 2 * n * context * d         # attention over the context
                 + 2 * n * d * config["ffn_dim"] * 2)   # FFN up and down
    return per_layer * config["num_layers"]


def build(config: dict, device: str, dtype) -> object:
    """The transformer with random weights, made on the device without a float32 copy."""
    from diffusers import WanTransformer3DModel

    return random_weights(lambda: WanTransformer3DModel(**config), device, dtype)


def run(name: str, args: argparse.Namespace) -> dict:
    import torch

    device = "cuda" if torch.cuda.is_available() and not args.quick else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    config = MODELS[name]
    if args.quick:
        config = {**config, **TINY, **(TINY_IMAGE if config["image_dim"] else {})}
    shape = SHAPE_TINY if args.quick else SHAPE_480P
    started = time.perf_counter()
    model = build(config, device, dtype)
    if args.attention:
        model.set_attention_backend(args.attention)
    if args.compile:
        model.compile_repeated_blocks(fullgraph=True)
    built = time.perf_counter() - started
    generator = torch.Generator(device).manual_seed(0)
    latent_frames = (shape["frames"] - 1) // 4 + 1

    def noise(*size: int):
        return torch.randn(*size, generator=generator, device=device, dtype=dtype)

    inputs = {"hidden_states": noise(1, 36, latent_frames, shape["height"] // 8,
                                     shape["width"] // 8),
              "encoder_hidden_states": noise(1, shape["text"], config["text_dim"]),
              "return_dict": False}
    if config["image_dim"]:
        inputs["encoder_hidden_states_image"] = noise(1, shape["image"], config["image_dim"])

    def calls(count: int, timestep: int = 500) -> None:
        with torch.inference_mode():
            for _ in range(count):
                model(**inputs, timestep=torch.tensor([timestep], device=device))

    def step(guided: bool) -> float:
        return seconds_of(lambda: calls(2 if guided else 1), device)

    forward = flops_per_forward(config, shape)
    result = {"model": name, "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
              "dtype": str(dtype).removeprefix("torch."), "tokens": tokens(shape),
              "params_b": round(sum(p.numel() for p in model.parameters()) / 1e9, 2),
              "compile": args.compile, "attention": args.attention or "default",
              "build_s": round(built, 1)}
    for guided in (False, True):
        first = step(guided)
        times = [step(guided) for _ in range(args.runs)]
        median = statistics.median(times)
        flops = forward * (2 if guided else 1)
        floor = flops / (FLOOR_TFLOPS * 1e12)
        result["guided" if guided else "unguided"] = {
            "pflop": round(flops / 1e15, 3), "first_s": round(first, 2),
            "median_s": round(median, 3), "runs": [round(t, 3) for t in times],
            "tflops": round(flops / median / 1e12, 1), "floor_s": round(floor, 2),
            "x_floor": round(median / floor, 2)}
    result["clip"] = {setting: {
        "steps": steps, "s": round(steps * result["guided" if guided else "unguided"]["median_s"],
                                   1),
        "floor_s": round(steps * result["guided" if guided else "unguided"]["floor_s"], 1)}
        for setting, (steps, guided) in CLIP_STEPS.items()}
    result["cache"] = cached_steps(model, calls, 4 if args.quick else args.cache_steps, device)
    if device == "cuda":
        result["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
    return result


def cached_steps(model, calls, steps: int, device: str) -> dict:
    """`steps` unguided steps (timesteps falling as a sampler's do) with a TaylorSeer cache
    hook, against the same steps without it."""
    from diffusers import TaylorSeerCacheConfig

    timesteps = [round(1000 * (1 - k / steps)) for k in range(steps)]

    def loop() -> None:
        for timestep in timesteps:
            with model.cache_context("cond"):
                calls(1, timestep)

    plain = seconds_of(loop, device)
    model.enable_cache(TaylorSeerCacheConfig(cache_interval=5, disable_cache_before_step=3))
    loop()                                   # warm: the hook's first pass
    model._reset_stateful_cache()
    with_hook = seconds_of(loop, device)
    model.disable_cache()
    return {"hook": "TaylorSeer (interval 5, from step 3)", "steps": steps,
            "plain_s": round(plain, 2), "cached_s": round(with_hook, 2),
            "per_step_s": round(with_hook / steps, 3), "speedup": round(plain / with_hook, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="wan2.1,wan2.2")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="compile the repeated blocks")
    parser.add_argument("--attention", help="a diffusers attention backend (e.g. _native_cudnn)")
    parser.add_argument("--cache-steps", type=int, default=12,
                        help="unguided steps timed with and without the cache hook")
    add_quick(parser)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    print_provenance()
    results = []
    for name in args.models.split(","):
        results.append(run(name, args))
        _release()
    print(json.dumps(results, indent=1), flush=True)
    print_table(["model", "step", "PFLOP", "s (median)", "TFLOP/s", "floor s", "x floor"],
                [[r["model"], kind, r[kind]["pflop"], r[kind]["median_s"], r[kind]["tflops"],
                  r[kind]["floor_s"], r[kind]["x_floor"]]
                 for r in results for kind in ("unguided", "guided")])
    print_table(["model", "81-frame clip", "steps", "denoising s", "floor s"],
                [[r["model"], setting, c["steps"], c["s"], c["floor_s"]]
                 for r in results for setting, c in r["clip"].items()])
    print_table(["model", "cache hook", "steps", "plain s", "cached s", "speed-up"],
                [[r["model"], r["cache"]["hook"], r["cache"]["steps"], r["cache"]["plain_s"],
                  r["cache"]["cached_s"], r["cache"]["speedup"]] for r in results])
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def _release() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
