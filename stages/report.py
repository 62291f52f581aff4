"""Assemble the manifest from what a build made (DESIGN.md, "Outputs")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stages import voices
from stages.assets import Asset
from stages.compose import ComposeResult
from stages.costs import spent
from stages.disclosure import source_type_uri, texts_for
from stages.licenses import allows_commercial
from stages.manifest import AssetEntry, Manifest, OutputEntry, SceneEntry
from stages.multitrack import MultitrackResult
from stages.plan import BuildPlan

ADAPTERS = ("lora", "lora_2")   # weights on top of a model, each with its own licence

def disclosure(plan: BuildPlan, narrations: dict[str, list[Asset]]) -> str:
    stages = plan.profile.stages
    cloned = [lang for lang, assets in narrations.items() if _cloned(assets)]
    voice = (f"the cloned voice '{plan.loaded.script.voice}' (with the speaker's recorded "
             f"consent) in {', '.join(cloned)}" if cloned else "a stock synthetic voice")
    return (f"Synthetic media made with sopreel from the script '{plan.loaded.script.id}': "
            f"images by {stages['images'].backend}, motion by {stages['animate'].backend}, "
            f"narration by {stages['narrate'].backend} in {voice}, "
            f"music by {stages['music'].backend if plan.loaded.script.music else 'none'}.")


def _cloned(assets: list[Asset]) -> bool:
    return any(a.info.get("cloned") for a in assets)


def build_manifest(plan: BuildPlan, stills: list[Asset], clips: list[Asset],
                   narrations: dict[str, list[Asset]], bed: Asset | None,
                   videos: dict[str, ComposeResult],
                   notices: dict[str, Asset | None] | None = None,
                   multitrack: MultitrackResult | None = None) -> Manifest:
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
                          reading_speed=result.reading, cached=result.cached,
                          **_marks(result))
        for lang, result in videos.items()}
    spoken = {lang: AssetEntry.of(asset, root) for lang, asset in (notices or {}).items()
              if asset is not None}
    every = [*stills, *clips, *(a for assets in narrations.values() for a in assets),
             *([bed] if bed else []), *(a for a in (notices or {}).values() if a)]
    script = plan.loaded
    licenses = sorted({(a.info.get("backend", "?"), a.info.get("model") or "",
                        a.info.get("license") or "") for a in every if a.info.get("license")}
                      | {(f"{a.info.get('backend', '?')} {name}", adapter["model"],
                          adapter["license"]) for a in every for name in ADAPTERS
                         if isinstance(adapter := a.info.get(name), dict)
                         and adapter.get("license")}
                      | {("translate", origin["model"], origin["license"])
                         for lang, origin in script.origins.items()
                         if lang in videos and origin.get("license")})
    return Manifest(
        script={"id": script.script.id, "sha256": script.sha256, "path": str(script.path),
                "title": script.script.title, "language": script.script.language,
                **({"imported": script.script.imported.model_dump(exclude={"rewrite": {"notes"}})}
                   if script.script.imported else {})},
        profile=plan.profile.describe(),
        outputs=outputs,
        scenes=scenes,
        music=AssetEntry.of(bed, root) if bed else None,
        voice=_voice_entry(plan, narrations),
        translations={lang: origin for lang, origin in script.origins.items() if lang in videos},
        licenses=[{"backend": b, "model": m, "license": lic,
                   "commercial": allows_commercial(lic)} for b, m, lic in licenses],
        disclosure=disclosure(plan, narrations),
        digital_source_type=next((o.digital_source_type for o in outputs.values()), None),
        notices=spoken,
        multitrack=_multitrack_entry(multitrack, root) if multitrack else None,
        use={"purpose": plan.use, "commercial": plan.commercial},
        cost=_cost(plan, every),
        warnings=[*script.warnings, *_asset_warnings(scenes),
                  *_voice_warnings(plan, narrations),
                  *_reading_warnings(videos), *_trust_warnings(plan, licenses)],
    )


def _cost(plan: BuildPlan, every: list[Asset]) -> dict[str, Any] | None:
    """At hosted services: the estimate the build started with, and what it spent."""
    made = spent(every)
    if plan.cost_estimate is None and not made["services"]:
        return None
    return {"estimate": plan.cost_estimate, "spent": made}


def _multitrack_entry(result: MultitrackResult, root: Path) -> dict[str, Any]:
    """The multi-language file: its tracks in order (the first the default) and its marks."""
    return {"video": result.video.relative_to(root).as_posix(), "languages": result.languages,
            "default": result.languages[0], "duration_s": result.duration_s,
            "loudness_lufs": {lang: level.get("integrated_lufs")
                              for lang, level in result.loudness.items()},
            "cached": result.cached, **_marks(result)}


def record_cloned_videos(plan: BuildPlan, narrations: dict[str, list[Asset]],
                         videos: dict[str, ComposeResult],
                         multitrack: MultitrackResult | None = None) -> None:
    """Sign into the consent ledger each video a cloned voice went into (once per file); the
    multi-language file under the languages it holds in that voice."""
    cloned = {lang: videos[lang].video for lang, assets in narrations.items()
              if _cloned(assets) and lang in videos}
    if multitrack and cloned:
        cloned[",".join(cloned)] = multitrack.video
    if plan.enrolled_voice and cloned:
        record = voices.load_voice(plan.voices_dir, plan.loaded.script.voice)
        voices.record_videos(plan.voices_dir, record, plan.use, plan.loaded.script.id, cloned)


def _marks(result: ComposeResult | MultitrackResult) -> dict[str, Any]:
    """What the video carries to say it is synthetic and where it came from."""
    marks = result.marks
    term = marks.get("digital_source_type")
    return {"digital_source_type": source_type_uri(term) if term else None,
            "notice": marks.get("notice"), "tags": marks.get("tags", {}),
            "provenance": marks.get("provenance")}


def _trust_warnings(plan: BuildPlan, licenses: list[tuple[str, str, str]]) -> list[str]:
    """Disclosure turned off, a notice not in the video's language, non-commercial weights."""
    options = plan.profile.disclosure
    warnings = [f"the profile turned off the AI disclosure's {part} ({plan.profile.path}); "
                "synthetic video must be marked (EU AI Act Article 50, GB 45438-2025)"
                for part in options.off()]
    if options.notice:
        warnings += [note for lang in plan.languages
                     if (note := texts_for(lang, options)[1])]
    if not plan.commercial:
        barred = [f"{model} ({lic})" for _, model, lic in licenses
                  if allows_commercial(lic) is False]
        if barred:
            warnings.append("not for commercial use: made with weights whose licence forbids "
                            f"it: {', '.join(barred)}; build with --use commercial to be "
                            "stopped before that happens")
    return warnings


def _voice_entry(plan: BuildPlan, narrations: dict[str, list[Asset]]) -> dict[str, Any]:
    """Who spoke each language, and for a cloned voice the consent that allowed it."""
    spoken = {lang: {"narrator": assets[0].info.get("backend"),
                     "voice": assets[0].info.get("voice"), "cloned": _cloned(assets),
                     "model": assets[0].info.get("model"),
                     "license": assets[0].info.get("license"),
                     "output_similarity": _output_similarity(assets),
                     "similarity_threshold": _threshold(plan, lang)}
              for lang, assets in narrations.items()}
    entry: dict[str, Any] = {"id": plan.loaded.script.voice, "use": plan.use, "spoken": spoken}
    if not plan.enrolled_voice:
        return {**entry, "consent": "not required: stock voices are not clones of a person"}
    record = voices.load_voice(plan.voices_dir, plan.loaded.script.voice)
    scores = [a.info["similarity"] for assets in narrations.values() for a in assets
              if a.info.get("similarity") is not None]
    thresholds = [_threshold(plan, lang) for lang in narrations]
    threshold = max((t for t in thresholds if t is not None), default=None)
    return {**entry, **record.describe(),
            "consent": "recorded consent, checked before every synthesis and every reuse",
            "similarity": {"score": min(scores), "threshold": threshold} if scores else None}


def _output_similarity(assets: list[Asset]) -> float | None:
    """The least any cloned narration of a language sounds like the enrolled reference."""
    scores = [a.info["output_similarity"] for a in assets
              if a.info.get("output_similarity") is not None]
    return min(scores) if scores else None


def _voice_warnings(plan: BuildPlan, narrations: dict[str, list[Asset]]) -> list[str]:
    if not plan.enrolled_voice:
        return []
    voice = plan.loaded.script.voice
    return [f"voice {voice!r}, {lang}: spoken by the {assets[0].info.get('voice')}, not a clone"
            for lang, assets in narrations.items() if not _cloned(assets)] + [
        f"voice {voice!r}, {lang}: the cloned narration sounds little like the enrolled "
        f"reference (speaker similarity {score:.4f}, under {threshold:g}); listen to it before "
        "publishing" for lang, assets in narrations.items()
        if (threshold := _threshold(plan, lang)) is not None
        and (score := _output_similarity(assets)) is not None and score < threshold]


def _threshold(plan: BuildPlan, language: str) -> float | None:
    """The speaker similarity the narrator of `language` asks of a clone (its own encoder's
    scale: XTTS's and WavLM's scores differ)."""
    return getattr(plan.profile.narrator(language).options, "speaker_similarity", None)


def _asset_warnings(scenes: list[SceneEntry]) -> list[str]:
    """What a backend noticed about one scene's asset (a prompt too long for the model...)."""
    return [f"scene {scene.id}, {entry.stage}: {entry.info['warning']}"
            for scene in scenes for entry in scene.assets if entry.info.get("warning")]


def _reading_warnings(videos: dict[str, ComposeResult]) -> list[str]:
    return [f"{lang} subtitles: cue {cue['index']} at {cue['start']:.1f} s reads at "
            f"{cue['cps']:g} characters/s (limit {cue['limit_cps']:g}): {cue['text']}"
            for lang, result in videos.items()
            for cue in result.reading.get("slow_cues", [])]
