"""The `diffusers` images backend on tiny random-weight SD 1.5, SDXL and FLUX.1 pipelines.

Each pipeline is saved to a folder with `save_pretrained` and loaded back through the same
`from_pretrained` call a user's model id takes; images are drawn on the CPU at 64x64.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner
from conftest import TINY_PROFILE, base_script, ffprobe, make_photo, write_script
from PIL import Image
from safetensors.torch import save_file
from tiny_diffusion import build_flux, build_sd, build_sd_lora, build_sdxl

from flows.cli import main
from stages.errors import ProfileError, SopreelError
from stages.images import BACKENDS, ImageRequest, scene_seed
from stages.images.diffusers import DiffusersBackend, checkpoint_family
from stages.profile import load_profile
from stages.style import load_style

BUILDERS = {"sd": build_sd, "sdxl": build_sdxl, "flux": build_flux}
PIPELINES = {"sd": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline",
             "flux": "FluxPipeline"}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-diffusion")
    models = {family: build(root / family) for family, build in BUILDERS.items()}
    models["lora"] = build_sd_lora(models["sd"], root / "brand-lora")
    return models


def request(seed: int = 5, visual: str = "a forklift by a loading dock") -> ImageRequest:
    return ImageRequest(scene_id="dock", step=1, steps=1, visual=visual, seed=seed,
                        style=load_style("clean-industrial"))


def backend(model: Path | str, **options) -> DiffusersBackend:
    chosen = BACKENDS.get("diffusers")(
        BACKENDS.get("diffusers").Options(model=str(model), width=64, height=64, steps=2,
                                          **options))
    chosen.load()
    return chosen


def draw(chosen: DiffusersBackend, out: Path, **kwargs) -> tuple[dict, str]:
    facts = chosen.generate(request(**kwargs), out)
    return facts, hashlib.sha256(out.read_bytes()).hexdigest()


@pytest.mark.parametrize("family", ["sd", "sdxl", "flux"])
def test_each_family_loads_from_its_folder_and_draws_reproducibly(tiny_models, family, tmp_path):
    chosen = backend(tiny_models[family])
    steps_seen: list[float] = []
    facts = chosen.generate(request(), tmp_path / "a.png", steps_seen.append)
    with Image.open(tmp_path / "a.png") as image:
        assert image.format == "PNG" and image.size == (64, 64)
    assert facts["pipeline"] == PIPELINES[family]
    assert facts["model"] == str(tiny_models[family]) and len(facts["sha256"]) == 64
    assert (facts["seed"], facts["steps"], facts["width"], facts["height"]) == (5, 2, 64, 64)
    assert steps_seen == [0.5, 1.0]             # progress after every denoising step
    _, same = draw(chosen, tmp_path / "b.png")
    _, other = draw(chosen, tmp_path / "c.png", seed=6)
    first = hashlib.sha256((tmp_path / "a.png").read_bytes()).hexdigest()
    assert same == first and other != first     # the seed alone decides the picture
    chosen.close()


def test_style_prompt_and_negative_prompt_reach_the_pipeline(tiny_models):
    style = load_style("clean-industrial")
    sd = backend(tiny_models["sd"], negative_prompt="cartoon")
    arguments = sd._arguments(sd._pipeline(), request(), None)
    assert arguments["prompt"] == style.prompt("a forklift by a loading dock")
    assert arguments["prompt"].startswith(style.prompt_prefix)
    assert arguments["negative_prompt"] == f"{style.negative_prompt}, cartoon"
    flux = backend(tiny_models["flux"], guidance=0.0, max_sequence_length=64)
    arguments = flux._arguments(flux._pipeline(), request(), None)
    assert "negative_prompt" not in arguments   # FLUX is guidance-distilled
    assert arguments["guidance_scale"] == 0.0 and arguments["max_sequence_length"] == 64


def test_scheduler_by_sampler_name_and_refused_when_it_does_not_fit(tiny_models, tmp_path):
    sd = backend(tiny_models["sd"], scheduler="dpm++_2m_karras")
    facts, _ = draw(sd, tmp_path / "a.png")
    assert facts["scheduler"] == "DPMSolverMultistepScheduler"
    assert sd._pipeline().scheduler.config.use_karras_sigmas is True
    flux = backend(tiny_models["flux"], scheduler="euler_a")
    with pytest.raises(SopreelError, match=r"does not work with FluxPipeline; it takes: "
                                           r".*FlowMatchEulerDiscreteScheduler"):
        draw(flux, tmp_path / "b.png")


def test_a_brand_lora_changes_the_image_by_its_weight(tiny_models, tmp_path):
    _, plain = draw(backend(tiny_models["sd"]), tmp_path / "plain.png")
    facts, styled = draw(backend(tiny_models["sd"], lora={"model": str(tiny_models["lora"]),
                                                          "weight": 0.9}), tmp_path / "lora.png")
    _, off = draw(backend(tiny_models["sd"], lora={"model": str(tiny_models["lora"]),
                                                   "weight": 0.0}), tmp_path / "off.png")
    assert styled != plain and off == plain
    assert facts["lora"]["weight"] == 0.9 and len(facts["lora"]["sha256"]) == 64


def test_pickle_weights_are_refused_unless_the_profile_allows_them(tiny_models, tmp_path):
    from diffusers import StableDiffusionPipeline

    pickled = tmp_path / "pickled-sd"
    StableDiffusionPipeline.from_pretrained(tiny_models["sd"]).save_pretrained(
        pickled, safe_serialization=False)
    assert list((pickled / "unet").glob("*.bin")) and not list((pickled / "unet").glob("*.safe*"))
    with pytest.raises(SopreelError, match="Only safetensors weights are loaded; set "
                                           "`allow_pickle: true`"):
        draw(backend(pickled), tmp_path / "a.png")
    facts, _ = draw(backend(pickled, allow_pickle=True), tmp_path / "b.png")
    assert facts["pipeline"] == "StableDiffusionPipeline"

    checkpoint = tmp_path / "models" / "Stable-diffusion" / "old.ckpt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"not loaded")
    with pytest.raises(SopreelError, match=r"old.ckpt is a '.ckpt' file, which is loaded with "
                                           "Python's pickle and can run code"):
        backend(checkpoint)
    lora = build_sd_lora(tiny_models["sd"], tmp_path / "lora-bin", safe=False)
    with pytest.raises(SopreelError, match=r"Cannot load the LoRA .* Only \.safetensors LoRAs"):
        draw(backend(tiny_models["sd"], lora={"model": str(lora)}), tmp_path / "c.png")


def test_a_single_checkpoint_file_is_recognised_by_its_tensor_names(tmp_path):
    names = {"sd": "model.diffusion_model.input_blocks.1.0.in_layers.0.weight",
             "sdxl": "conditioner.embedders.1.model.ln_final.weight",
             "flux": "double_blocks.0.img_attn.qkv.weight"}
    for family, name in names.items():
        path = tmp_path / f"{family}.safetensors"
        save_file({name: torch.zeros(1)}, str(path))
        assert checkpoint_family(path) == family
    save_file({"something.else": torch.zeros(1)}, str(tmp_path / "odd.safetensors"))
    with pytest.raises(SopreelError, match=re.escape("Set `pipeline: sd|sdxl|flux`")):
        checkpoint_family(tmp_path / "odd.safetensors")
    # Read where it lies, with the layout of `config`: a file that does not match it is a clear
    # error, not a traceback; the file's sha256 keys its images.
    chosen = backend(tmp_path / "sd.safetensors", config=str(tmp_path / "missing-layout"))
    assert chosen.identity()["weights"]["sha256"] == hashlib.sha256(
        (tmp_path / "sd.safetensors").read_bytes()).hexdigest()
    with pytest.raises(SopreelError, match="is read with the layout of `config`"):
        draw(chosen, tmp_path / "a.png")


def test_model_locations_and_options_are_checked(tmp_path):
    with pytest.raises(SopreelError, match="neither a file or folder on this machine"):
        backend(tmp_path / "nowhere.safetensors")
    (tmp_path / "not-a-pipeline").mkdir()
    with pytest.raises(SopreelError, match=r"has no model_index\.json"):
        backend(tmp_path / "not-a-pipeline")
    profile = tmp_path / "p.yaml"
    profile.write_text(yaml.safe_dump({**TINY_PROFILE, "images": {
        "backend": "diffusers", "model": "org/model", "scheduler": "eulr", "width": 1004,
        "offload": "everything"}}, sort_keys=False), encoding="utf-8")
    with pytest.raises(ProfileError) as error:
        load_profile(str(profile))
    text = str(error.value)
    assert "images.scheduler" in text and "euler_a" in text
    assert "images.width" in text and "multiple of 8" in text
    assert "images.offload" in text and "'model'" in text


def test_loading_waits_for_the_first_image_to_make(tiny_models):
    """A build whose images are all cached never reads the weights."""
    chosen = backend(tiny_models["flux"])
    assert chosen._slot.model is None and chosen.identity()["weights"]["files"] > 10
    chosen.close()


@pytest.mark.usefixtures("prefect_server")
def test_a_profile_naming_a_local_model_folder_builds_end_to_end(tiny_models, tmp_path):
    """As a new user would: a profile file, `sopreel build`, then look at the manifest."""
    model = tiny_models["sdxl"]
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in model.rglob("*")}
    profile = tmp_path / "my-studio.yaml"
    profile.write_text(yaml.safe_dump({**TINY_PROFILE, "images": {
        "backend": "diffusers", "model": str(model), "steps": 3, "width": 96, "height": 64,
        "guidance": 4.0, "license": "CreativeML Open RAIL++-M"}}), encoding="utf-8")
    photo = make_photo(tmp_path / "photos" / "lock.jpg", (300, 200))
    script = base_script(music=None)
    script["scenes"][1]["image"] = str(photo.relative_to(tmp_path))
    path = write_script(tmp_path, script)
    out = tmp_path / "out"
    args = ["build", str(path), "--profile", str(profile), "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output

    manifest = json.loads((out / "test-sop" / "manifest.json").read_text(encoding="utf-8"))
    generated, supplied = (scene["assets"][0] for scene in manifest["scenes"])
    assert generated["backend"] == "diffusers" and generated["model"] == str(model)
    assert generated["seed"] == scene_seed("test-sop", "isolate")
    assert generated["info"]["steps"] == 3
    assert (generated["info"]["width"], generated["info"]["height"]) == (96, 64)
    assert generated["info"]["pipeline"] == "StableDiffusionXLPipeline"
    assert len(generated["info"]["sha256"]) == 64 and generated["info"]["guidance"] == 4.0
    assert supplied["backend"] == "file"            # a supplied photo is never generated
    with Image.open(out / "test-sop" / generated["path"]) as image:
        assert image.size == (96, 64)
    assert {"backend": "diffusers", "model": str(model),
            "license": "CreativeML Open RAIL++-M", "commercial": True} in manifest["licenses"]
    assert any("CLIP reads the first 77" in w for w in manifest["warnings"])
    video = out / "test-sop" / "en" / "video.mp4"
    assert float(ffprobe(video)["format"]["duration"]) > 3

    # The model folder is read where it is: nothing renamed, moved, rewritten or copied.
    assert before == {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in model.rglob("*")}
    assert not list(out.rglob("*.safetensors"))

    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    manifest = json.loads((out / "test-sop" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["scenes"][0]["assets"][0]["cached"] is True
    assert os.path.getsize(out / "test-sop" / generated["path"]) > 0


def test_a_large_checkpoint_is_hashed_once_across_runs(tmp_path, monkeypatch):
    from stages import assets

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(assets, "LARGE_FILE_BYTES", 1024)
    checkpoint = tmp_path / "sdxl.safetensors"
    checkpoint.write_bytes(os.urandom(4096))
    digest = assets.file_sha256(checkpoint)
    assert digest == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert digest in (tmp_path / "cache" / "sopreel" / "sha256.json").read_text()
    monkeypatch.setattr(assets, "_digests", {})          # as in a new process
    monkeypatch.setattr(assets, "_hash_file", lambda path: pytest.fail("hashed again"))
    assert assets.file_sha256(checkpoint) == digest
    checkpoint.write_bytes(os.urandom(4096))             # changed: hashed again
    monkeypatch.setattr(assets, "_hash_file", lambda path: "new")
    assert assets.file_sha256(checkpoint) == "new"
