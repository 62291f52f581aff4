"""Assemble the manifest from what a build made (DESIGN.md, "Outputs")."""

from __future__ import annotations

from stages import narrate
from stages.assets import Asset
from stages.compose import ComposeResult
from stages.manifest import AssetEntry, Manifest, OutputEntry, SceneEntry
from stages.plan import BuildPlan


def disclosure(plan: BuildPlan) -> str:
    stages = plan.profile.stages
    voice = "a stock synthetic voice" if not _clones(plan) else (
        f"the cloned voice '{plan.loaded.script.voice}'")
    return (f"Synthetic media made with sopreel from the script '{plan.loaded.script.id}': "
            f"images by {stages['images'].backend}, motion by {stages['animate'].backend}, "
            f"narration by {stages['narrate'].backend} in {voice}, "
            f"music by {stages['music'].backend if plan.loaded.script.music else 'none'}.")


def _clones(plan: BuildPlan) -> bool:
    backend = narrate.BACKENDS.get(plan.profile.stages["narrate"].backend)
    return plan.loaded.script.voice != "stock" and backend.clones_voices


def build_manifest(plan: BuildPlan, stills: list[Asset], clips: list[Asset],
                   narrations: dict[str, list[Asset]], bed: Asset | None,
                   videos: dict[str, ComposeResult]) -> Manifest:
    root = plan.out_dir
    scenes = []
    for index, scene in enumerate(plan.scenes):
        assets = [stills[index], clips[index], *(narrations[lang][index] for lang in narrations)]
        scenes.append(SceneEntry(id=scene.id, assets=[AssetEntry.of(a, root) for a in assets]))
    outputs = {
        lang: OutputEntry(video=result.video.relative_to(root).as_posix(),
                          srt=result.srt.relative_to(root).as_posix(),
                          vtt=result.vtt.relative_to(root).as_posix(),
                          duration_s=result.duration_s, cues=result.cues,
                          loudness_lufs=result.loudness.get("integrated_lufs"),
                          true_peak_dbtp=result.loudness.get("true_peak_dbtp"),
                          cached=result.cached)
        for lang, result in videos.items()}
    every = [*stills, *clips, *(a for assets in narrations.values() for a in assets),
             *([bed] if bed else [])]
    licenses = sorted({(a.info.get("backend", "?"), a.info.get("model") or "",
                        a.info.get("license") or "") for a in every if a.info.get("license")})
    script = plan.loaded
    return Manifest(
        script={"id": script.script.id, "sha256": script.sha256, "path": str(script.path),
                "title": script.script.title, "language": script.script.language},
        profile=plan.profile.describe(),
        outputs=outputs,
        scenes=scenes,
        music=AssetEntry.of(bed, root) if bed else None,
        voice={"id": script.script.voice,
               "consent": "not required: stock voices are not clones of a person"
               if script.script.voice == "stock" else "see voices/ consent record"},
        licenses=[{"backend": b, "model": m, "license": lic} for b, m, lic in licenses],
        disclosure=disclosure(plan),
        warnings=[*script.warnings, *_voice_warnings(plan)],
    )


def _voice_warnings(plan: BuildPlan) -> list[str]:
    voice, backend = plan.loaded.script.voice, plan.profile.stages["narrate"].backend
    if voice != "stock" and not _clones(plan):
        return [f"voice {voice!r}: the {backend} narrator does not clone voices, so this "
                "build speaks with the stock voice"]
    return []
