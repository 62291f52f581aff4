"""GPU benchmark: one denoising step of the real-size Wan2.1-I2V-14B transformer at 480p.

The transformer is built from Wan2.1-I2V-14B's architecture (40 layers, width 5120, 40 heads,
FFN 13824, UMT5 text width 4096, CLIP-H image width 1280) with random weights, directly on the
GPU in bf16: nothing is downloaded, and the arithmetic per step is the real model's. Inputs are
a 480x832, 81-frame clip's latents (21 x 60 x 104, patches of 1x2x2: 32,760 tokens), 512 text
tokens and 257 image tokens. A guided step runs the transformer twice (conditional and
unconditional), as `WanImageToVideoPipeline` does; an unguided one once.

The floor: FLOPs per step counted from the shapes (below; about 3.3 PFLOP guided) at a
sustained 800 TFLOP/s of dense bf16, about 4.2 s. Published anchors: 366 s for a 40-step 480p
clip on one H200 with the official code (about 9 s per step), 14 s with a 4-step distilled
model.

Usage: .venv/bin/python bench/animate_gpu.py [--runs 3] [--compile] [--attention NAME]
       [--json OUT]
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
TINY = dict(num_attention_heads=2, attention_head_dim=16, text_dim=32, ffn_dim=64,
            num_layers=2, image_dim=16, added_kv_proj_dim=32, rope_max_seq_len=64)
SHAPE_480P = {"frames": 81, "height": 480, "width": 832, "text": 512, "image": 257}
SHAPE_TINY = {"frames": 9, "height": 64, "width": 96, "text": 16, "image": 8}
FLOOR_TFLOPS = 800


def tokens(shape: dict) -> int:
    latent_frames = (shape["frames"] - 1) // 4 + 1
    return latent_frames * (shape["height"] // 16) * (shape["width"] // 16)


def flops_per_forward(config: dict, shape: dict) -> float:
    """Multiply-adds x 2 of one transformer call: projections, attention, FFN, per layer."""
    n, d = tokens(shape), config["num_attention_heads"] * config["attention_head_dim"]
    context = shape["text"] + shape["image"]
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


def run(args: argparse.Namespace) -> dict:
    import torch

    device = "cuda" if torch.cuda.is_available() and not args.quick else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    config = {**WAN_I2V_14B, **(TINY if args.quick else {})}
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
              "timestep": torch.tensor([500], device=device),
              "encoder_hidden_states": noise(1, shape["text"], config["text_dim"]),
              "encoder_hidden_states_image": noise(1, shape["image"], config["image_dim"]),
              "return_dict": False}

    def calls(count: int) -> None:
        with torch.inference_mode():
            for _ in range(count):
                model(**inputs)

    def step(guided: bool) -> float:
        return seconds_of(lambda: calls(2 if guided else 1), device)

    forward = flops_per_forward(config, shape)
    result = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
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
    if device == "cuda":
        result["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="compile the repeated blocks")
    parser.add_argument("--attention", help="a diffusers attention backend (e.g. _native_cudnn)")
    add_quick(parser)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    print_provenance()
    result = run(args)
    print(json.dumps(result, indent=1), flush=True)
    print_table(["step", "PFLOP", "s (median)", "TFLOP/s", "floor s", "x floor"],
                [[kind, r["pflop"], r["median_s"], r["tflops"], r["floor_s"], r["x_floor"]]
                 for kind, r in ((kind, result[kind]) for kind in ("unguided", "guided"))])
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
