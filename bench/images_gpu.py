"""GPU benchmark: seconds per 1024x1024 image for SDXL (30 steps) and FLUX.1 (4 and 28 steps).

The pipelines are built from the real architectures' configs (the `config.json` files of
stabilityai/stable-diffusion-xl-base-1.0 and black-forest-labs/FLUX.1-dev/-schnell, copied
below) with random weights, directly on the GPU in bf16: nothing is downloaded, and the work
per image is the real work (text encoders, every denoising step, VAE decode), so the timing is
the real model's. Each image goes through sopreel's own `diffusers` images backend, as a build
runs it, with and without `torch.compile` of the denoiser.

Published anchors: SDXL 30 steps 2.4 s on an A100 with compile and int8; FLUX.1-dev 28 steps
4.2 s on an H100, compiled, bf16.

Usage: .venv/bin/python bench/images_gpu.py [--only sdxl,flux-schnell,flux-dev] [--runs 3]
       [--no-compile] [--json OUT]
       .venv/bin/python bench/images_gpu.py --quick  # CPU check of this script (scaled down)
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bench_args import add_quick, print_provenance, print_table, seconds_of  # noqa: E402

CONFIGS = {   # from the models' config.json files
    "clip_l": dict(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                   num_attention_heads=12, num_hidden_layers=12, max_position_embeddings=77,
                   hidden_act="quick_gelu", projection_dim=768),
    "clip_bigg": dict(vocab_size=49408, hidden_size=1280, intermediate_size=5120,
                      num_attention_heads=20, num_hidden_layers=32, max_position_embeddings=77,
                      hidden_act="gelu", projection_dim=1280),
    "t5_xxl": dict(vocab_size=32128, d_model=4096, d_ff=10240, d_kv=64, num_heads=64,
                   num_layers=24, feed_forward_proj="gated-gelu",
                   relative_attention_num_buckets=32, relative_attention_max_distance=128),
    "sdxl_unet": dict(addition_embed_type="text_time", addition_time_embed_dim=256,
                      attention_head_dim=[5, 10, 20], block_out_channels=[320, 640, 1280],
                      cross_attention_dim=2048, in_channels=4, out_channels=4,
                      layers_per_block=2, sample_size=128,
                      down_block_types=["DownBlock2D", "CrossAttnDownBlock2D",
                                        "CrossAttnDownBlock2D"],
                      up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
                      projection_class_embeddings_input_dim=2816,
                      transformer_layers_per_block=[1, 2, 10], use_linear_projection=True),
    "sdxl_vae": dict(block_out_channels=[128, 256, 512, 512], latent_channels=4,
                     layers_per_block=2, down_block_types=["DownEncoderBlock2D"] * 4,
                     up_block_types=["UpDecoderBlock2D"] * 4, sample_size=1024,
                     scaling_factor=0.13025, force_upcast=False),
    "flux_transformer": dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38,
                             attention_head_dim=128, num_attention_heads=24,
                             joint_attention_dim=4096, pooled_projection_dim=768,
                             axes_dims_rope=[16, 56, 56]),
    "flux_vae": dict(block_out_channels=[128, 256, 512, 512], latent_channels=16,
                     layers_per_block=2, down_block_types=["DownEncoderBlock2D"] * 4,
                     up_block_types=["UpDecoderBlock2D"] * 4, sample_size=1024,
                     use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.1159,
                     scaling_factor=0.3611),
}
# `--tiny`: the same architectures shrunk to run on a CPU in seconds (checks this script).
TINY = {
    "clip_l": dict(hidden_size=32, intermediate_size=37, num_attention_heads=4,
                   num_hidden_layers=2, projection_dim=32),
    "clip_bigg": dict(hidden_size=32, intermediate_size=37, num_attention_heads=4,
                      num_hidden_layers=2, projection_dim=32),
    "t5_xxl": dict(d_model=32, d_ff=37, d_kv=8, num_heads=4, num_layers=1),
    "sdxl_unet": dict(block_out_channels=[32, 64, 64], attention_head_dim=[2, 4, 8],
                      transformer_layers_per_block=[1, 1, 1], cross_attention_dim=64,
                      layers_per_block=1, addition_time_embed_dim=8,
                      projection_class_embeddings_input_dim=6 * 8 + 32),
    "sdxl_vae": dict(block_out_channels=[32] * 4, layers_per_block=1),
    "flux_transformer": dict(num_layers=1, num_single_layers=1, attention_head_dim=16,
                             num_attention_heads=2, joint_attention_dim=32,
                             pooled_projection_dim=32, axes_dims_rope=[4, 4, 8]),
    "flux_vae": dict(block_out_channels=[32] * 4, layers_per_block=1),
}

CASES = {   # name: (family, steps, guidance)
    "sdxl": ("sdxl", 30, 5.0),
    "flux-schnell": ("flux", 4, 0.0),
    "flux-dev": ("flux", 28, 3.5),
}


def build_pipeline(family: str, guidance_embeds: bool, tiny: bool) -> object:
    """A pipeline of the real architecture with random weights, made on the current device."""
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from tiny_diffusion import clip_tokenizer, t5_tokenizer
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        T5Config,
        T5EncoderModel,
    )

    def config(name: str) -> dict:
        return {**CONFIGS[name], **(TINY[name] if tiny else {})}

    clip_l = CLIPTextModel(CLIPTextConfig(**config("clip_l")))
    if family == "sdxl":
        return StableDiffusionXLPipeline(
            unet=UNet2DConditionModel(**config("sdxl_unet")),
            vae=AutoencoderKL(**config("sdxl_vae")),
            text_encoder=clip_l, tokenizer=clip_tokenizer(),
            text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**config("clip_bigg"))),
            tokenizer_2=clip_tokenizer(),
            scheduler=EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085,
                                             beta_end=0.012, timestep_spacing="leading",
                                             steps_offset=1))
    return FluxPipeline(
        transformer=FluxTransformer2DModel(**config("flux_transformer"),
                                           guidance_embeds=guidance_embeds),
        vae=AutoencoderKL(**config("flux_vae")),
        text_encoder=clip_l, tokenizer=clip_tokenizer(),
        text_encoder_2=T5EncoderModel(T5Config(**config("t5_xxl"))),
        tokenizer_2=t5_tokenizer(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True,
                                                  base_shift=0.5, max_shift=1.15,
                                                  base_image_seq_len=256,
                                                  max_image_seq_len=4096))


def run_case(name: str, compile_denoiser: bool, runs: int, size: int, tiny: bool,
             out: Path) -> dict:
    import torch

    from stages.images import ImageRequest
    from stages.images.diffusers import DiffusersBackend
    from stages.style import load_style

    family, steps, guidance = CASES[name]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    started = time.perf_counter()
    with torch.device(device):
        pipe = build_pipeline(family, guidance_embeds=name == "flux-dev", tiny=tiny)
    pipe.to(dtype=dtype)
    options = DiffusersBackend.Options(model=f"random-weights/{name}", width=size, height=size,
                                       steps=steps, guidance=guidance, compile=compile_denoiser,
                                       max_sequence_length=256 if family == "flux" else None)
    backend = DiffusersBackend(options)
    backend.use_pipeline(pipe)
    built = time.perf_counter() - started
    request = ImageRequest(scene_id="bench", step=1, steps=1, seed=1234,
                           visual="a forklift operator checking the forks in a warehouse",
                           style=load_style("clean-industrial"))

    def one() -> float:
        return seconds_of(lambda: backend.generate(request, out), device)

    first = one()               # warm-up: kernels chosen, and with compile the compilation
    times = [one() for _ in range(runs)]
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    backend.close()             # the next case needs the memory: the models are large
    pipe = None
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return {"case": name, "steps": steps, "size": size, "compile": compile_denoiser,
            "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "dtype": str(dtype).removeprefix("torch."), "build_s": round(built, 1),
            "first_s": round(first, 2), "median_s": round(statistics.median(times), 3),
            "runs": [round(t, 3) for t in times], "per_step_s": round(
                statistics.median(times) / steps, 4),
            "peak_gib": round(peak, 1) if peak else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(CASES))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled runs")
    add_quick(parser)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    print_provenance()
    size = 64 if args.quick else 1024
    out = Path("/tmp/sopreel-bench-image.png")
    results = []
    for name in args.only.split(","):
        for compiled in ([False] if args.no_compile or args.quick else [False, True]):
            result = run_case(name, compiled, 1 if args.quick else args.runs, size, args.quick,
                              out)
            results.append(result)
            print(json.dumps(result), flush=True)
    print_table(["case", "steps", "compile", "s/image (median)", "s/step", "first call",
                 "peak GiB"],
                [[r["case"], r["steps"], "yes" if r["compile"] else "no", r["median_s"],
                  r["per_step_s"], r["first_s"], r["peak_gib"]] for r in results])
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
