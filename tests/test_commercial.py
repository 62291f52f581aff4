"""A studio a company may use commercially: ACE-Step music, Wan2.2's two experts with
step-distillation LoRAs and a cache hook, the studio-commercial profile, each on tiny
random-weight models of the real families loaded through the same `from_pretrained` paths."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from conftest import TINY_PROFILE, base_script, ffprobe, make_photo, write_script
from tiny_diffusion import build_ace_step, build_flux, build_wan22_i2v, build_wan_lora

from flows.cli import main
from stages.animate import BACKENDS as ANIMATE
from stages.animate import ClipRequest
from stages.assets import file_sha256
from stages.errors import SopreelError
from stages.licenses import allows_commercial
from stages.media import SAMPLE_RATE, read_wav
from stages.music import MusicRequest, cut_tail
from stages.music.acestep import AceStepBackend, AceStepOptions
from stages.profile import load_profile


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("commercial")
    wan22 = build_wan22_i2v(root / "wan2.2-i2v")
    return {"ace": build_ace_step(root / "ace-step"), "wan22": wan22,
            "lora": build_wan_lora(wan22, root / "lightning-high", seed=3),
            "lora_2": build_wan_lora(wan22, root / "lightning-low", seed=4)}


def test_an_ace_step_window_and_a_continuation_that_repaints_after_its_context(tiny, tmp_path):
    backend = AceStepBackend(AceStepOptions(model=str(tiny["ace"]), window_s=10, context_s=4,
                                            device="cpu", license="Apache-2.0"))
    backend.load()
    seen: list[float] = []
    first = backend.generate(MusicRequest(prompt="calm piano", seed=1), tmp_path / "w0.wav",
                             seen.append)
    samples, rate = read_wav(tmp_path / "w0.wav", mono=False)
    assert rate == SAMPLE_RATE and samples.shape == (10 * SAMPLE_RATE, 2)
    assert first["seconds"] == 10 and first["context_s"] == 0 and first["turbo"] is True
    assert first["pipeline"] == "AceStepPipeline" and len(first["sha256"]) == 64
    assert seen[-1] == 1.0 and len(seen) == 8                     # progress per step
    backend.generate(MusicRequest(prompt="calm piano", seed=1), tmp_path / "again.wav")
    assert np.array_equal(read_wav(tmp_path / "again.wav", mono=False)[0], samples)
    cut_tail(tmp_path / "w0.wav", 4, tmp_path / "tail.wav")
    carried = backend.generate(MusicRequest(prompt="calm piano", seed=2,
                                            continue_from=tmp_path / "tail.wav"),
                               tmp_path / "w1.wav")
    assert carried["context_s"] == 4 and carried["seconds"] == 10
    backend.close()


def wan22(tiny: dict[str, Path], **options):
    chosen = ANIMATE.get("wan-i2v")(ANIMATE.get("wan-i2v").Options(
        model=str(tiny["wan22"]), width=64, height=48, frames=9, **options))
    chosen.load()
    return chosen


def test_wan22_two_experts_with_distillation_loras_and_a_cache_hook(tiny, tmp_path):
    still = make_photo(tmp_path / "still.png", (400, 300))
    request = ClipRequest(image=still, prompt="a forklift backs out slowly", seed=7)
    distilled = {"steps": 4, "guidance": 1.0, "guidance_2": 1.0,
                 "lora": {"model": str(tiny["lora"]), "license": "Apache-2.0",
                          "sha256": file_sha256(tiny["lora"])},
                 "lora_2": {"model": str(tiny["lora_2"]), "license": "Apache-2.0"}}
    chosen = wan22(tiny, **distilled)
    seen: list[float] = []
    facts = chosen.animate(request, tmp_path / "a.mp4", seen.append)
    assert facts["experts"] == 2 and facts["boundary_ratio"] == 0.9 and facts["steps"] == 4
    assert facts["lora"]["sha256"] == file_sha256(tiny["lora"])
    assert facts["lora_2"]["sha256"] == file_sha256(tiny["lora_2"])
    assert facts["lora_2"]["license"] == "Apache-2.0" and seen[-1] == 1.0
    assert int(ffprobe(tmp_path / "a.mp4")["streams"][0]["nb_frames"]) == 9
    assert ("Apache-2.0" in dict(chosen.weights(["en"])).values()
            and str(tiny["lora_2"]) in dict(chosen.weights(["en"])))
    chosen.close()

    plain = wan22(tiny, steps=4, guidance=1.0, guidance_2=1.0)
    plain.animate(request, tmp_path / "plain.mp4")
    assert decoded(tmp_path / "plain.mp4") != decoded(tmp_path / "a.mp4")   # the LoRAs act
    cached = wan22(tiny, **distilled, cache={"kind": "first-block", "threshold": 0.5})
    assert cached.identity() != chosen.identity()          # a cache hook changes the clip key
    facts = cached.animate(request, tmp_path / "cached.mp4")
    assert int(ffprobe(tmp_path / "cached.mp4")["streams"][0]["nb_frames"]) == 9
    taylor = wan22(tiny, steps=6, cache={"kind": "taylorseer", "interval": 2})
    taylor.animate(request, tmp_path / "taylor.mp4")

    with pytest.raises(SopreelError, match="is not the pinned one"):
        wan22(tiny, lora={"model": str(tiny["lora_2"]), "sha256": file_sha256(tiny["lora"])})


def test_a_second_expert_lora_on_a_one_expert_model_is_refused(tmp_path_factory, tiny,
                                                               tmp_path):
    from tiny_diffusion import build_wan_i2v

    wan21 = build_wan_i2v(tmp_path_factory.mktemp("wan21") / "wan2.1")
    chosen = ANIMATE.get("wan-i2v")(ANIMATE.get("wan-i2v").Options(
        model=str(wan21), width=64, height=48, frames=9, steps=2,
        lora_2={"model": str(tiny["lora_2"])}))
    chosen.load()
    still = make_photo(tmp_path / "still.png", (400, 300))
    with pytest.raises(SopreelError, match="second \\(low-noise\\) transformer; this model has "
                                           "none: use `lora`"):
        chosen.animate(ClipRequest(image=still, seed=1), tmp_path / "a.mp4")


def decoded(clip: Path) -> str:
    return subprocess.run(["ffmpeg", "-v", "error", "-i", str(clip), "-f", "md5", "-"],
                          capture_output=True, check=True, text=True).stdout.strip()


def test_the_studio_commercial_profile_passes_a_commercial_use_check_and_studio_does_not(
        tmp_path):
    profile = load_profile("studio-commercial")
    assert profile.commercial
    script = write_script(tmp_path, base_script(music="calm corporate ambient, soft piano"))
    result = CliRunner().invoke(main, ["validate", str(script), "--profile", "studio-commercial",
                                       "--use", "training,commercial"])
    assert result.exit_code == 0, result.output
    refused = CliRunner().invoke(main, ["validate", str(script), "--profile", "studio",
                                        "--use", "training,commercial"])
    assert refused.exit_code == 2
    assert "Coqui Public Model License" in refused.output and "CC-BY-NC-4.0" in refused.output
    table = yaml.safe_load((Path("templates") / "model_licenses.yaml").read_text())["models"]
    for model in ("black-forest-labs/FLUX.1-schnell", "Wan-AI/Wan2.2-I2V-A14B-Diffusers",
                  "lightx2v/Wan2.2-Lightning", "k2-fsa/OmniVoice",
                  "ACE-Step/acestep-v15-xl-turbo-diffusers"):
        assert allows_commercial(table[model]) is True, model


@pytest.mark.usefixtures("prefect_server")
def test_a_commercial_build_goes_through_every_real_backend(tiny, tiny_omnivoice_models,
                                                            tmp_path_factory, tmp_path):
    """studio-commercial's backends and options, its models swapped for tiny ones of the same
    families: FLUX images, Wan2.2 clips with both distillation LoRAs, OmniVoice's described
    voice, an ACE-Step bed; built for commercial use."""
    studio = yaml.safe_load(Path("templates/profiles/studio-commercial.yaml").read_text())
    flux = build_flux(tmp_path_factory.mktemp("flux") / "flux")
    small = {"license": "Apache-2.0", "device": "cpu"}
    profile = {
        **studio,
        "images": {**studio["images"], "model": str(flux), "width": 96, "height": 64,
                   "max_sequence_length": 32, **small},
        "animate": {**studio["animate"], "model": str(tiny["wan22"]), "width": 64,
                    "height": 48, "frames": 9, "retime": "blend", **small,
                    "lora": {"model": str(tiny["lora"]), "license": "Apache-2.0"},
                    "lora_2": {"model": str(tiny["lora_2"]), "license": "Apache-2.0"}},
        "narrate": {**studio["narrate"], "model": str(tiny_omnivoice_models["omnivoice"]),
                    "speaker_encoder": str(tiny_omnivoice_models["speaker_encoder"]),
                    "steps": 4, **small},
        "music": {**studio["music"], "model": str(tiny["ace"]), "window_s": 10,
                  "context_s": 4, **small},
        "compose": TINY_PROFILE["compose"]}
    path = tmp_path / "commercial.yaml"
    path.write_text(yaml.safe_dump(profile, allow_unicode=True), encoding="utf-8")
    script = write_script(tmp_path, base_script(music="calm corporate ambient, soft piano"))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", str(script), "--profile", str(path), "--out",
                                       str(out), "--use", "training,commercial"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "test-sop" / "manifest.json").read_text(encoding="utf-8"))
    image, clip = manifest["scenes"][0]["assets"][:2]
    assert image["backend"] == "diffusers" and image["info"]["pipeline"] == "FluxPipeline"
    assert clip["backend"] == "wan-i2v"
    assert clip["info"]["experts"] == 2 and clip["info"]["steps"] == 4
    assert clip["info"]["lora_2"]["model"] == str(tiny["lora_2"])
    assert manifest["voice"]["spoken"]["en"]["narrator"] == "omnivoice"
    assert manifest["music"]["backend"] == "ace-step"
    assert all(entry["commercial"] for entry in manifest["licenses"]), manifest["licenses"]
    assert {entry["model"] for entry in manifest["licenses"]} >= {
        str(flux), str(tiny["wan22"]), str(tiny["lora"]), str(tiny["lora_2"]),
        str(tiny_omnivoice_models["omnivoice"]), str(tiny["ace"])}
    video = ffprobe(out / "test-sop" / "en" / "video.mp4")
    assert float(video["format"]["duration"]) == pytest.approx(
        manifest["outputs"]["en"]["duration_s"], abs=0.1)
