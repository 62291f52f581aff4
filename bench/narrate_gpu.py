"""GPU benchmark: seconds of speech per second of compute, OmniVoice cloning in four languages.

The model is built at OmniVoice's size with random weights, directly on the GPU in bf16: a
Qwen3-0.6B backbone (1024 wide, 28 layers, 16 query and 8 key-value heads of 128; the model
card's 0.6B), 8 audio codebooks of 1025 tokens, and the HiggsAudioV2 tokenizer at its default
size (DAC acoustic model, HuBERT-base semantic model, 25 frames per second, 24 kHz). Nothing is
downloaded, and the work per step is the real model's: the length of speech comes from
OmniVoice's duration estimator, not from the (random) weights. Each language's narration runs
through the sopreel backend as a build does: a clone prompt from a reference recording and its
transcript, one sentence at a time, 32 unmasking steps with classifier-free guidance (2.0).
"x real time" is seconds of speech per second of wall time.

Usage: .venv/bin/python bench/narrate_gpu.py [--runs 2] [--steps 32] [--json OUT]
       .venv/bin/python bench/narrate_gpu.py --quick  # CPU check of this script (tiny model)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_args import ROOT, add_quick, print_provenance, print_table, random_weights, seconds_of

sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

QWEN3_0_6B = dict(vocab_size=151936, hidden_size=1024, intermediate_size=3072,
                  num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
                  head_dim=128, max_position_embeddings=40960, tie_word_embeddings=True)
CODEC_25HZ = {"downsampling_ratios": [8, 5, 4, 2, 3], "upsampling_ratios": [8, 5, 4, 2, 3]}
SENTENCES = {
    "en": ("Walk around the forklift before every shift.",
           "Check the tyres, the forks and the chains, and report any damage at once.",
           "Never carry a passenger on the forks."),
    "zh-CN": ("每班开始前，请绕叉车检查一周。", "检查轮胎、货叉和链条，发现损坏立即报告。",
              "绝不允许任何人站在货叉上。"),
    "th": ("เดินตรวจรอบรถยกก่อนเริ่มงานทุกกะ", "ตรวจยาง งา และโซ่ หากพบความเสียหายให้รายงานทันที",
           "ห้ามให้ใครยืนบนงาเด็ดขาด"),
    "vi": ("Đi một vòng quanh xe nâng trước mỗi ca làm việc.",
           "Kiểm tra lốp, càng nâng và xích, báo cáo hư hỏng ngay lập tức.",
           "Tuyệt đối không chở người trên càng nâng."),
}
REFERENCE_TEXT = "Good morning. This is how I sound when I explain a safety procedure."


def build(device: str, dtype, work: Path, quick: bool):
    """OmniVoice at its real size (random weights, on the device), or the tests' tiny one
    loaded through `from_pretrained` for --quick."""
    import torch
    from omnivoice import OmniVoice, OmniVoiceConfig
    from omnivoice.utils.duration import RuleDurationEstimator
    from tiny_omnivoice import CONTROL_TOKENS, build_omnivoice
    from transformers import (
        AutoFeatureExtractor,
        AutoTokenizer,
        DacFeatureExtractor,
        HiggsAudioV2TokenizerConfig,
        HiggsAudioV2TokenizerModel,
        Qwen3Config,
    )

    folder = build_omnivoice(work / "tiny")   # its tokenizer serves both sizes
    if quick:
        return OmniVoice.from_pretrained(str(folder), device_map=device)
    config = OmniVoiceConfig(llm_config=Qwen3Config(**QWEN3_0_6B).to_dict())
    model = random_weights(lambda: OmniVoice(config), device, dtype)
    codec = HiggsAudioV2TokenizerConfig(acoustic_model_config=CODEC_25HZ,
                                        target_bandwidths=[0.5, 1, 1.5, 2])
    model.audio_tokenizer = random_weights(lambda: HiggsAudioV2TokenizerModel(codec), device,
                                           torch.float32)
    model.text_tokenizer = AutoTokenizer.from_pretrained(str(folder))
    assert set(CONTROL_TOKENS) <= set(model.text_tokenizer.get_vocab())
    DacFeatureExtractor(sampling_rate=24000, hop_length=960).save_pretrained(work / "fe")
    model.feature_extractor = AutoFeatureExtractor.from_pretrained(str(work / "fe"))
    model.sampling_rate = 24000
    model.duration_estimator = RuleDurationEstimator()
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=32)
    add_quick(parser)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    print_provenance()

    import torch

    from stages.media import read_wav
    from stages.narrate import NarrationRequest
    from stages.narrate.omnivoice import OmniVoiceBackend, OmniVoiceOptions

    device = "cuda" if torch.cuda.is_available() and not args.quick else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    work = Path(tempfile.mkdtemp(prefix="sopreel-bench-narrate-"))
    model = build(device, dtype, work, args.quick)
    reference = work / "reference.wav"
    subprocess.run(["espeak-ng", "-w", str(reference), REFERENCE_TEXT], check=True)
    steps = 4 if args.quick else args.steps
    backend = OmniVoiceBackend(OmniVoiceOptions(model="random/omnivoice", license="n/a",
                                                steps=steps, device=device))
    backend.use_model(model)
    languages = ["en"] if args.quick else list(SENTENCES)
    runs = 1 if args.quick else args.runs
    results = []
    for language in languages:
        request = NarrationRequest(sentences=SENTENCES[language], language=language,
                                   voice="bench", reference=reference,
                                   reference_text=REFERENCE_TEXT)
        out = work / f"{language}.wav"
        first = seconds_of(lambda r=request, o=out: backend.narrate(r, o), device)
        times = [seconds_of(lambda r=request, o=out: backend.narrate(r, o), device)
                 for _ in range(runs)]
        samples, rate = read_wav(out)
        speech = len(samples) / rate
        median = statistics.median(times)
        results.append({"language": language, "sentences": len(SENTENCES[language]),
                        "speech_s": round(speech, 2), "first_s": round(first, 2),
                        "median_s": round(median, 2), "runs": [round(t, 2) for t in times],
                        "x_real_time": round(speech / median, 2)})
    summary = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
               "dtype": str(dtype).removeprefix("torch."), "steps": steps,
               "backbone_params_m": round(sum(p.numel() for p in model.llm.parameters()) / 1e6),
               "languages": results}
    if device == "cuda":
        summary["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
    print(json.dumps(summary, indent=1), flush=True)
    print_table(["language", "sentences", "speech s", "s (median)", "x real time"],
                [[r["language"], r["sentences"], r["speech_s"], r["median_s"], r["x_real_time"]]
                 for r in results])
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
