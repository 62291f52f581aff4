"""The build plan, and the steps that turn it into assets.

`plan_build` decides everything a build will make, from the validated script and profile,
before any media work. Each `make_*` step then produces one asset through the content-addressed
`AssetStore`: the recipe (backend identity plus the step's inputs, files by content) is the
cache key, so unchanged inputs are never recomputed. Steps know nothing of Prefect; flows call
them from tasks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stages import animate, images, languages, music, narrate, voices
from stages.animate import chain
from stages.assets import (
    Asset,
    AssetStore,
    file_sha256,
    recipe_key,
    sweep_temporaries,
    write_text_atomic,
)
from stages.cloud import summed
from stages.compose import (
    ComposeJob,
    ComposeResult,
    Notice,
    SceneInput,
    compose,
    footage_seconds,
    notice_seconds,
    video_seconds,
)
from stages.disclosure import (
    TRAINED,
    DisclosureText,
    Pictures,
    mp4_tags,
    strongest,
    texts_for,
    video_source_type,
)
from stages.errors import ConsentError, NotCached, SopreelError, Work, first_line, reported
from stages.languages import Language
from stages.licenses import WeightsUse, parse_use, refuse_noncommercial
from stages.manifest import built_languages, unreadable_manifest
from stages.multitrack import (
    MULTITRACK_NAME,
    MultitrackResult,
    compose_multitrack,
    picture_job,
    track_order,
)
from stages.music.bed import windows_needed
from stages.paths import voices_dir
from stages.profile import REGISTRIES, Profile
from stages.provenance import Ingredient, Signing, sign_mp4, signing_from
from stages.registry import Backend, LoadedBackends
from stages.script import LoadedScript, load_script
from stages.style import Style, load_style
from stages.text import split_sentences
from stages.timeline import SentenceTiming

COMPOSE_VERSION = 6   # bump when compose changes what it makes from the same inputs
MULTITRACK_VERSION = 1   # and this when the multi-language file does
BED_STEP_S = 10       # music beds are made in whole steps of this many seconds


@dataclass(frozen=True)
class ScenePlan:
    index: int
    id: str
    visual: str
    photo: Path | None
    motion: str | None
    seed: int


@dataclass(frozen=True)
class BuildPlan:
    loaded: LoadedScript
    profile: Profile
    style: Style
    out_dir: Path
    scenes: list[ScenePlan]
    languages: list[str]
    use: str = voices.DEFAULT_USE   # what the video is for: a cloned voice's consent must cover it
    voices_dir: Path = dataclasses.field(default_factory=voices_dir)
    voicing: dict[str, narrate.VoicePlan] = dataclasses.field(default_factory=dict)
    commercial: bool = False        # only weights licensed for commercial use
    signing: Signing | None = None  # who signs the videos' Content Credentials, if anyone
    peek: bool = False              # steps only look in the cache (see `peeking`)
    cost_estimate: dict[str, Any] | None = None   # at hosted services (`stages.costs`)

    @property
    def enrolled_voice(self) -> bool:
        """The script names an enrolled voice (not 'stock'): its consent gates the build."""
        return self.loaded.script.voice != "stock"

    @property
    def store(self) -> AssetStore:
        return AssetStore(self.out_dir / "assets", making=not self.peek)

    def peeking(self) -> BuildPlan:
        """This plan with steps that only look in the cache: a step whose asset (or video) is
        already made returns it, with every check it makes (consent included), and one that
        would have to make something raises `NotCached` instead, without loading a model."""
        return dataclasses.replace(self, peek=True)

    def sweep(self) -> int:
        """Delete what a killed build left half-written: temporary assets, videos and compose
        folders (only those unchanged for an hour, so never a running build's)."""
        return sweep_temporaries(self.out_dir) if self.out_dir.is_dir() else 0

    def sentences(self, scene: ScenePlan, language: str) -> tuple[str, ...]:
        text = self.loaded.lines(language)[scene.index].narration
        return tuple(split_sentences(text, languages.get(language)))

    def disclosure_text(self, language: str) -> DisclosureText:
        return texts_for(language, self.profile.disclosure, self.pictures)[0]

    @property
    def pictures(self) -> Pictures:
        """What the video's pictures are, for the notice: a scene shows a real photo when a
        supplied photo is only moved by the camera, not animated by a trained model."""
        choice = self.profile.stages["animate"]
        remade = REGISTRIES["animate"].get(choice.backend).source_type == TRAINED
        synthetic = [scene.photo is None or remade for scene in self.scenes]
        return "generated" if all(synthetic) else "mixed" if any(synthetic) else "photos"

    def work(self, stage: str, scene: ScenePlan | None = None, language: str | None = None,
             notice: bool = False) -> Work:
        """One item of a stage's work, named in a failure; its traceback goes to logs/."""
        choice = (self.profile.narrator(language) if stage == "narrate" and language
                  else self.profile.stages.get(stage))
        return Work(stage=stage, backend=choice.backend if choice else "ffmpeg",
                    scene=scene.id if scene else ("ai-notice" if notice else None),
                    language=language, logs=self.out_dir / "logs")

    @property
    def speaks_notice(self) -> bool:
        """The videos open with the AI notice read aloud (so narrate makes it)."""
        return self.profile.disclosure.notice and self.profile.disclosure.spoken


def load_for_build(script: str | Path, languages: list[str] | None, out_root: Path,
                   voices_folder: str | Path | None = None,
                   allow_unreviewed: bool = False) -> LoadedScript:
    """The script, with the languages a build of it makes.

    Those asked for; and when the build's manifest.json is damaged, also the languages an
    earlier build left videos for: the manifest held their entries, and building them again
    from the cache (nothing is remade) writes it whole."""
    def load(only: list[str] | None) -> LoadedScript:
        return load_script(script, only_languages=only, voices=voices_folder,
                           allow_unreviewed=allow_unreviewed)

    loaded = load(languages)
    out_dir = out_root / loaded.script.id
    damage = unreadable_manifest(out_dir)
    if damage is None:
        return loaded
    lost = [lang for lang in built_languages(out_dir) if lang not in loaded.languages]
    again = f"; {', '.join(lost)} built again from the cache" if lost else ""
    if lost:
        try:
            loaded = load([*loaded.languages, *lost])
        except SopreelError as exc:
            again = f"; {', '.join(lost)} could not be built again ({first_line(exc)})"
    loaded.warnings.append(f"manifest.json could not be read ({damage}); written anew{again}")
    return loaded


def plan_build(loaded: LoadedScript, profile: Profile, out_root: Path,
               use: str = voices.DEFAULT_USE, voices_folder: str | Path | None = None) -> BuildPlan:
    """Everything the build will make; refuses at once what consent, the narrator or the
    models' licences forbid.

    `use` is the video's purpose (a cloned voice's consent must cover it), optionally with
    `commercial` (`training,commercial`), which, like `commercial: true` in the profile, admits
    only weights licensed for commercial use."""
    script = loaded.script
    purpose, commercial = parse_use(use)
    seed = getattr(profile.stages["images"].options, "seed", None)
    scenes = [ScenePlan(index=i, id=scene.id, visual=scene.visual or scene.caption or scene.id,
                        photo=loaded.image_paths.get(scene.id), motion=scene.motion,
                        seed=seed if seed is not None else images.scene_seed(script.id, scene.id))
              for i, scene in enumerate(script.scenes)]
    plan = BuildPlan(loaded=loaded, profile=profile, style=load_style(script.style),
                     out_dir=out_root / script.id, scenes=scenes, languages=loaded.languages,
                     use=purpose, voices_dir=voices_dir(voices_folder),
                     commercial=commercial or profile.commercial,
                     signing=signing_from(profile.provenance, profile.path.parent))
    plan = dataclasses.replace(plan, voicing=check_voice(plan))
    if plan.commercial:
        refuse_noncommercial(weights_used(plan), "--use commercial" if commercial else
                             f"commercial: true in {profile.path}")
    return plan


def weights_used(plan: BuildPlan) -> list[WeightsUse]:
    """Every set of model weights the build would use, with its licence: a stage's backend
    only where the script needs it (no image model when every scene has a photo, no music
    model for a supplied file), and machine translators of the languages built."""
    script = plan.loaded.script
    needed = {"images": any(scene.photo is None for scene in plan.scenes), "animate": True,
              "narrate": True,
              "music": script.music is not None and plan.loaded.music_path is None}
    used = []
    for stage, choice in plan.profile.stages.items():
        if needed.get(stage) and stage != "narrate":
            backend = REGISTRIES[stage].get(choice.backend)(choice.options)
            used += [WeightsUse(stage, model, license)
                     for model, license in backend.weights(plan.languages)]
    for language in plan.languages:   # each language's narrator, once per set of weights
        used += [WeightsUse("narrate", model, license) for model, license
                 in narrator_for(plan, language).weights([language])
                 if WeightsUse("narrate", model, license) not in used]
    used += [WeightsUse(f"translate ({lang})", origin["model"],
                        origin.get("license") or "unknown")
             for lang, origin in plan.loaded.origins.items()
             if origin.get("source") == "machine" and lang in plan.languages]
    return used


def check_voice(plan: BuildPlan) -> dict[str, narrate.VoicePlan]:
    """Before any work: consent covers every language, and the narrator can speak each one.

    Returns how each language will be spoken. The same consent check runs again before every
    narration (`make_narration`), so a revocation during a long build still stops it.
    """
    refused: dict[str, str] = {}
    if plan.enrolled_voice:
        for language in plan.languages:
            try:
                voices.check_consent(plan.voices_dir, plan.loaded.script.voice, language, plan.use)
            except ConsentError as exc:
                refused[language] = str(exc)
    if refused:
        allowed = [lang for lang in plan.languages if lang not in refused]
        hint = (f"build only --lang {','.join(allowed)}, " if allowed else "") + (
            "record new consent, or use voice: stock")
        raise ConsentError("\n".join([*dict.fromkeys(refused.values()),   # once each
                                      f"Nothing was built: {hint}."]))
    narrators = {lang: narrator_for(plan, lang) for lang in plan.languages}
    voicing = {lang: narrator.voice_plan(lang, plan.enrolled_voice)
               for lang, narrator in narrators.items()}
    if any(v.clones for v in voicing.values()):   # every synthesis is signed into the ledger
        voices.require_signing(plan.voices_dir)
        voice = plan.loaded.script.voice
        untold = [lang for lang, narrator in narrators.items()
                  if voicing[lang].clones and narrator.needs_reference_text]
        record = voices.load_voice(plan.voices_dir, voice)
        for lang, narrator in narrators.items():
            if voicing[lang].clones and narrator.links_voice:
                linked_voice(record, narrator.links_voice, lang)
        if untold and voices.reference_text(plan.voices_dir, record) is None:
            raise SopreelError(
                f"Voice '{voice}': the {narrators[untold[0]].name} narrator of "
                f"{', '.join(untold)} clones from the reference recording and its transcript, "
                f"and none was recorded. Add it: sopreel voices transcript {voice} --text "
                "\"<the words spoken in the reference>\"")
    return voicing


def linked_voice(record: voices.VoiceRecord, service: str, language: str) -> str:
    """The id of the clone `service` keeps of this person, linked to their enrolment."""
    if service not in record.services:
        raise SopreelError(
            f"Voice '{record.id}': the {service} narrator of {language} speaks the clone "
            f"{service} keeps of this person, and none is linked to the enrolment. Link it: "
            f"sopreel voices link {record.id} --service {service} --voice-id <its voice id>")
    return record.services[service]


def narrator_for(plan: BuildPlan, language: str,
                 loaded: LoadedBackends | None = None) -> narrate.NarrateBackend:
    """The narrator the profile routes `language` to: the loaded one (shared by every task
    that asks) given `loaded`, else a fresh one for planning (no weights read)."""
    choice = plan.profile.narrator(language)
    if loaded is None:
        return narrate.BACKENDS.get(choice.backend)(choice.options)
    return loaded.get(narrate.BACKENDS, choice.backend, choice.options)


def loads_model(plan: BuildPlan, stage: str) -> bool:
    """The stage's backend holds model weights in memory (it needs the GPU to itself)."""
    return any(REGISTRIES[stage].get(choice.backend).loads_model
               for choice in plan.profile.choices(stage))


def stage_backend(plan: BuildPlan, stage: str, loaded: LoadedBackends) -> Any:
    """The loaded backend the profile chooses for `stage` (shared by every task that asks)."""
    choice = plan.profile.stages[stage]
    return loaded.get(REGISTRIES[stage], choice.backend, choice.options)


def _produce(plan: BuildPlan, stage: str, recipe: dict[str, Any], suffix: str,
             make: Callable[[Path], dict[str, Any]], backend: Backend | None,
             derived_from: tuple[Asset, ...] = (), **facts: Any) -> Asset:
    """Produce (or reuse) an asset and note what made it: a backend, or a supplied file.

    Its IPTC digital source type is the backend's, or that of the assets it was made from
    when one of those is more synthetic (a camera move over a generated image is generated)."""
    asset = plan.store.produce(stage, recipe, suffix, make)
    source_type = strongest(backend.source_type if backend else None,
                            *(a.info.get("digital_source_type") for a in derived_from))
    made_by = {"backend": backend.name if backend else "file",
               "model": backend.model if backend else None,
               "license": backend.license if backend else None,
               "digital_source_type": source_type}
    # What the backend reported wins: a narrator may hand a language to another model.
    return dataclasses.replace(asset, info={**made_by, **asset.info, **facts})


def _generate(plan: BuildPlan, stage: str, backend: Backend, request: Any, suffix: str,
              make: Callable[[Path], dict[str, Any]], derived_from: tuple[Asset, ...] = (),
              **facts: Any) -> Asset:
    """An asset a backend makes from a request, keyed by the backend's identity and request."""
    recipe = {"backend": backend.identity(), "request": request}
    return _produce(plan, stage, recipe, suffix, make, backend, derived_from, **facts)


def make_image(plan: BuildPlan, scene: ScenePlan, loaded: LoadedBackends,
               on_progress: Callable[[float], None] | None = None) -> Asset:
    """The scene's still: the supplied photo fitted to the frame, or the backend's image.

    `on_progress` hears how far a slow backend is through the image (0..1)."""
    backend: images.ImageBackend = stage_backend(plan, "images", loaded)
    size = backend.options.width, backend.options.height
    if scene.photo is not None:
        photo, colour = scene.photo, plan.style.colors.background
        fit = plan.profile.compose.filling
        recipe = {"photo": photo, "size": size, "background": colour, "fit": fit, "version": 1}
        return _produce(plan, "images", recipe, ".png",
                        lambda out: images.fit_photo(photo, out, *size, colour, fit), None,
                        seed=None)
    request = image_request(plan, scene)
    with reported(plan.work("images", scene)):
        return _generate(plan, "images", backend, request, ".png",
                         lambda out: backend.generate(request, out, on_progress),
                         seed=scene.seed)


def image_request(plan: BuildPlan, scene: ScenePlan) -> images.ImageRequest:
    return images.ImageRequest(scene_id=scene.id, step=scene.index + 1, steps=len(plan.scenes),
                               visual=scene.visual, style=plan.style, seed=scene.seed)


def make_clip(plan: BuildPlan, scene: ScenePlan, image: Asset, narrations: list[Asset],
              loaded: LoadedBackends,
              on_progress: Callable[[float], None] | None = None) -> Asset:
    """The scene's clip, long enough for its longest narration (`narrations`: one per language).

    Segments are chained from the still, each starting from the last frame of the one before,
    then joined at the compose frame rate (`stages.animate.chain`). Each segment is an asset of
    its own, so a longer dub later adds segments and remakes none."""
    backend: animate.AnimateBackend = stage_backend(plan, "animate", loaded)
    options: animate.AnimateOptions = backend.options   # type: ignore[assignment]
    compose_options = plan.profile.compose
    last = scene.index == len(plan.scenes) - 1
    target = max(footage_seconds(compose_options, float(n.info["seconds"]), last)
                 for n in narrations)
    coverage = chain.plan_coverage(target, options.frames, options.fps, options.max_segments,
                                   compose_options.max_slowdown)
    with reported(plan.work("animate", scene)):
        segments, coverage = _chain(plan, backend, scene, image, target, coverage, on_progress)
        return _join(plan, backend, segments, coverage)


def _chain(plan: BuildPlan, backend: animate.AnimateBackend, scene: ScenePlan, image: Asset,
           target: float, coverage: chain.Coverage,
           on_progress: Callable[[float], None] | None) -> tuple[list[Asset], chain.Coverage]:
    """Segments from the still until they cover `target` seconds, each starting from the last
    frame of the one before; the coverage as planned again from the first real segment."""
    options: animate.AnimateOptions = backend.options   # type: ignore[assignment]
    compose_options = plan.profile.compose
    prompt = plan.style.prompt(scene.motion or scene.visual)
    negative = plan.style.negative(getattr(options, "negative_prompt", ""))
    segments: list[Asset] = []
    start = image.path
    while len(segments) < coverage.segments:
        done = len(segments)
        request = animate.ClipRequest(image=start, motion=scene.motion, prompt=prompt,
                                      negative_prompt=negative, seed=scene.seed + done)
        report = _share(on_progress, done, coverage.segments)
        segment = _generate(plan, "animate", backend, request, ".mp4",
                            lambda out, r=request, p=report: backend.animate(r, out, p),
                            derived_from=(image,), seed=request.seed)
        segments.append(segment)
        if done == 0:   # the backend's real segment (a model may drop frames): plan again
            coverage = chain.plan_coverage(
                target, int(segment.info["frames"]), float(segment.info["fps"]),
                options.max_segments, compose_options.max_slowdown,
                overlap=1 if segment.info.get("starts_with_image", True) else 0)
        if len(segments) < coverage.segments:
            start = _last_frame(plan, segment).path
    return segments, coverage


def _share(on_progress: Callable[[float], None] | None, index: int,
           count: int) -> Callable[[float], None] | None:
    """Progress through one of `count` parts reported as progress through the whole."""
    if on_progress is None:
        return None
    return lambda fraction: on_progress((index + fraction) / count)


def _last_frame(plan: BuildPlan, segment: Asset) -> Asset:
    frames = int(segment.info["frames"])
    return _produce(plan, "animate", {"last_frame_of": segment.path, "frames": frames,
                                      "version": 1}, ".png",
                    lambda out: chain.last_frame(segment.path, frames, out), None, (segment,))


def _join(plan: BuildPlan, backend: animate.AnimateBackend, segments: list[Asset],
          coverage: chain.Coverage) -> Asset:
    """The segments as one clip of the scene's length at the compose frame rate (or the one
    segment as it is, when compose can fit it alone)."""
    first = segments[0]
    facts = {"coverage": coverage.describe(),
             "segments": [{"path": s.path.relative_to(plan.out_dir).as_posix(),
                           "seed": s.info.get("seed")} for s in segments]}
    fps = plan.profile.compose.fps
    if not chain.needs_join(coverage, fps):
        return dataclasses.replace(first, info={**first.info, **facts})
    options: animate.AnimateOptions = backend.options   # type: ignore[assignment]
    recipe = {"join": [s.path for s in segments], "coverage": coverage, "fps": fps,
              "retime": options.retime, "crf": options.crf, "version": 1}
    size = {"width": first.info["width"], "height": first.info["height"]}
    # The model's facts (pipeline, weights, steps) carry over; the segment's own do not.
    made = {key: value for key, value in first.info.items()
            if key not in ("backend", "model", "license", "fps", "frames", "seconds", "seed",
                           "starts_with_image", "cost", "usage", "job", "resumed")}
    new = [s for s in segments if not s.cached and s.info.get("cost")]
    if new:   # what the segments made for this clip cost (a reused one costs nothing)
        facts["cost"] = summed([s.info["cost"] for s in new])
        facts["usage"] = summed([s.info.get("usage") or {} for s in new])
    return _produce(plan, "animate", recipe, ".mp4",
                    lambda out: chain.join_segments([s.path for s in segments], coverage, fps,
                                                    options.retime, out, options.crf) | size,
                    backend, tuple(segments), **made, **facts)


def narration_sentences(plan: BuildPlan, scene: ScenePlan | None,
                        language: str) -> tuple[str, ...]:
    """What is said: the scene's narration, or with no scene the AI notice."""
    if scene is None:
        text = plan.disclosure_text(language).notice
        return tuple(split_sentences(text, languages.get(language)))
    return plan.sentences(scene, language)


def make_narration(plan: BuildPlan, scene: ScenePlan | None, language: str,
                   loaded: LoadedBackends) -> Asset:
    """One scene's narration, or with no scene the AI notice the video opens with, in the
    same voice. A cloned voice passes the consent gate first, every time, even when the
    narration is already cached: consent can be revoked between two builds."""
    sentences = narration_sentences(plan, scene, language)
    backend = narrator_for(plan, language, loaded)
    reference, reference_text, similarity, record, service_voice = None, None, None, None, None
    gate = None
    if plan.enrolled_voice:
        def gate() -> voices.VoiceRecord:
            return voices.check_consent(plan.voices_dir, plan.loaded.script.voice, language,
                                        plan.use)

        record = gate()
        if plan.voicing[language].clones and backend.links_voice:   # a clone a service keeps
            service_voice = linked_voice(record, backend.links_voice, language)
        elif plan.voicing[language].clones:   # a backend that clones must score the speakers
            if plan.peek:   # with its model: that is work for the task
                raise NotCached(f"speaker similarity for {plan.loaded.script.voice}")
            folder = voices.voice_folder(plan.voices_dir, record.id)
            reference = folder / record.reference.file
            if backend.needs_reference_text:
                reference_text = voices.reference_text(plan.voices_dir, record)
            similarity = backend.same_speaker_score(reference,
                                                    folder / record.consent.recording.file)
            threshold = backend.options.speaker_similarity  # type: ignore[attr-defined]
            voices.check_same_speaker(record, similarity or 0.0, threshold)
    request = narrate.NarrationRequest(sentences=sentences, language=language,
                                       voice=plan.loaded.script.voice, reference=reference,
                                       reference_text=reference_text,
                                       service_voice=service_voice)
    def make(out: Path) -> dict[str, Any]:
        """The narration, and for a clone how much it sounds like the enrolled reference
        (the consent check's speaker encoder): evidence the voice heard is the person's."""
        info = backend.narrate(request, out, gate)
        if reference is not None and info.get("cloned"):
            score = backend.same_speaker_score(reference, out)
            info["output_similarity"] = None if score is None else round(score, 4)
        return info

    with reported(plan.work("narrate", scene, language, notice=scene is None)):
        asset = _generate(plan, "narrate", backend, request, ".wav", make, language=language,
                          similarity=None if similarity is None else round(similarity, 4),
                          **({"notice": True} if scene is None else {}))
    if record is not None and plan.voicing[language].clones and not asset.cached \
            and asset.info.get("cloned"):
        voices.record_synthesis(plan.voices_dir, record, language, plan.use,
                                plan.loaded.script.id, scene.id if scene else "notice",
                                asset.sha256)
    return asset


def timeline_narrations(plan: BuildPlan, voices: list[Asset],
                        notice: Asset | None) -> list[float]:
    """The narration length of every slot of one language's video, the AI notice's card
    first (`compose.video_seconds` turns them into the video's length)."""
    lengths = [float(n.info["seconds"]) for n in voices]
    disclosure = plan.profile.disclosure
    if not disclosure.notice:
        return lengths
    spoken = float(notice.info["seconds"]) if notice else 0.0
    return [notice_seconds(spoken, disclosure.seconds, plan.profile.compose), *lengths]


def make_music(plan: BuildPlan, narrations: dict[str, list[Asset]], loaded: LoadedBackends,
               on_progress: Callable[[float], None] | None = None,
               notices: dict[str, Asset | None] | None = None) -> Asset | None:
    """The build's music bed, as long as its longest video (`narrations`: each language's, one
    per scene; `notices`: each language's spoken AI notice): none, the supplied file, or the
    backend's pieces for the prompt.

    Every piece is an asset of its own, so a longer video (a slower dub) adds pieces and remakes
    none. The bed is made in whole steps of BED_STEP_S (compose cuts and fades it at each
    video's end), so an edit that makes a video a little longer or shorter reuses it."""
    script = plan.loaded.script
    if script.music is None:
        return None
    notices = notices or {}
    longest = max(video_seconds(plan.profile.compose,
                                timeline_narrations(plan, voices, notices.get(lang)))
                  for lang, voices in narrations.items())
    seconds = math.ceil(longest / BED_STEP_S) * BED_STEP_S
    choice = plan.profile.stages["music"]
    options: music.MusicOptions = choice.options   # type: ignore[assignment]
    source = plan.loaded.music_path
    if source is not None:
        pieces = [_produce(plan, "music", {"file": source, "version": 1}, ".wav",
                           lambda out: music.prepare_file(source, out), None)]
        backend = None
    else:
        backend = stage_backend(plan, "music", loaded)
        with reported(plan.work("music")):
            pieces = _music_pieces(plan, backend, longest, on_progress)
    crossfade = options.crossfade_s
    recipe = {"bed": [p.path for p in pieces], "seconds": seconds, "crossfade_s": crossfade,
              "version": 1}
    # What made the pieces (backend named by `_produce`), not the first piece's own length.
    first = {k: v for k, v in pieces[0].info.items()
             if k not in ("backend", "seconds", "context_s")}
    return _produce(plan, "music", recipe, ".wav",
                    lambda out: music.make_bed([(p.path, p.info) for p in pieces], seconds,
                                               crossfade, out),
                    backend, tuple(pieces), **first, prompt=None if source else script.music,
                    pieces=[{"path": p.path.relative_to(plan.out_dir).as_posix(),
                             "seed": p.info.get("seed")} for p in pieces])


def _music_pieces(plan: BuildPlan, backend: music.MusicBackend, seconds: float,
                  on_progress: Callable[[float], None] | None) -> list[Asset]:
    """The backend's first piece and, for a backend that continues, windows each carrying on
    from the end of the one before until together they last `seconds`."""
    options: music.MusicOptions = backend.options   # type: ignore[assignment]
    continuing = isinstance(options, music.ContinuingOptions) and options.extend == "continue"
    count = (windows_needed(seconds, options.window_s, options.context_s)  # type: ignore
             if continuing else 1)
    seed = options.seed
    if seed is None:
        seed = images.scene_seed(plan.loaded.script.id, "music")
    pieces: list[Asset] = []
    start = None
    while True:
        request = music.MusicRequest(prompt=plan.loaded.script.music or "",
                                     seed=seed + len(pieces), continue_from=start)
        report = _share(on_progress, len(pieces), max(count, len(pieces) + 1))
        piece = _generate(plan, "music", backend, request, ".wav",
                          lambda out, r=request, p=report: backend.generate(r, out, p),
                          seed=request.seed)
        pieces.append(piece)
        covered = sum(float(p.info["seconds"]) - float(p.info.get("context_s", 0))
                      for p in pieces)
        if not continuing or covered >= seconds - 1e-6:
            return pieces
        start = _music_tail(plan, piece, options.context_s).path  # type: ignore[attr-defined]


def _music_tail(plan: BuildPlan, piece: Asset, seconds: float) -> Asset:
    return _produce(plan, "music", {"tail_of": piece.path, "seconds": seconds, "version": 1},
                    ".wav", lambda out: music.cut_tail(piece.path, seconds, out), None, (piece,))


def compose_job(plan: BuildPlan, language: str, stills: list[Asset], clips: list[Asset],
                narrations: list[Asset], bed: Asset | None,
                notice: Asset | None = None) -> ComposeJob:
    """What compose makes one language's video from: the scenes' clips and narrations, the
    AI notice (`notice`: read aloud), the corner label and the disclosure tags."""
    lang: Language = languages.get(language)
    lines = plan.loaded.lines(language)
    scenes = [SceneInput(clip=clip.path, clip_seconds=float(clip.info["seconds"]),
                         narration=voice.path, narration_seconds=float(voice.info["seconds"]),
                         sentences=[SentenceTiming(**s) for s in voice.info["sentences"]],
                         caption=text.caption, clip_size=_size(clip.info))
              for clip, voice, text in zip(clips, narrations, lines, strict=True)]
    title = plan.loaded.title(language)
    disclosure, text = plan.profile.disclosure, plan.disclosure_text(language)
    made_of = _made_of(stills, clips, narrations, bed, notice)
    script = plan.loaded.script
    return ComposeJob(
        language=lang, title=title, scenes=scenes, style=plan.style,
        options=plan.profile.compose, music=bed.path if bed else None,
        notice=Notice(text.notice, notice.path if notice else None,
                      float(notice.info["seconds"]) if notice else 0.0,
                      disclosure.seconds) if disclosure.notice else None,
        label=text.label if disclosure.label else None,
        metadata={**mp4_tags(title=title or script.title, notice=text.notice,
                             source_type=_source_type(made_of), producer=disclosure.producer,
                             produce_id=_produce_id(script.id, language, made_of)),
                  "language": lang.iso639_2})


def _made_of(stills: list[Asset], clips: list[Asset], narrations: list[Asset],
             bed: Asset | None, notice: Asset | None) -> list[Asset]:
    return [*stills, *clips, *narrations, *([bed] if bed else []), *([notice] if notice else [])]


def _source_type(assets: list[Asset]) -> str:
    return video_source_type([a.info.get("digital_source_type") for a in assets])


def make_video(plan: BuildPlan, language: str, stills: list[Asset], clips: list[Asset],
               narrations: list[Asset], bed: Asset | None, notice: Asset | None = None,
               on_progress=None) -> ComposeResult:
    """Compose one language's video (`compose_job`), and sign it when a signer is set.

    The finished files are stamped with the key of everything they were made from, so an
    unchanged build is not encoded again (the result then says `cached`).
    """
    job = compose_job(plan, language, stills, clips, narrations, bed, notice)
    made_of = _made_of(stills, clips, narrations, bed, notice)
    title = job.title or plan.loaded.script.title
    out_dir = plan.out_dir / language
    paths = _paths(out_dir)
    done, key, marks = _finished(plan, "compose", {"job": job}, made_of, out_dir / ".compose.json",
                                 paths, f"the {language} video", job)
    if done:
        return ComposeResult(**{**done["result"], **paths}, cached=True)
    with reported(plan.work("compose", language=language)):
        result = compose(job, out_dir, plan.store, on_progress=on_progress,
                         seal=_sealer(plan, marks, f"{title} ({language})", made_of))
    result = dataclasses.replace(result, marks=marks)
    _stamp(out_dir / ".compose.json", key, paths,
           {"duration_s": result.duration_s, "cues": result.cues, "loudness": result.loudness,
            "reading": result.reading, "marks": marks})
    return result


def make_multitrack(plan: BuildPlan, stills: list[Asset], clips: list[Asset],
                    narrations: dict[str, list[Asset]], bed: Asset | None,
                    notices: dict[str, Asset | None],
                    on_progress: Callable[[float], None] | None = None) -> MultitrackResult:
    """One MP4 with every language of the build (`stages.multitrack`): the script's language
    first and the default; stamped and signed like a one-language video."""
    script = plan.loaded.script
    order = track_order(plan.languages,
                        script.language if script.language in plan.languages
                        else plan.languages[0])
    jobs = {lang: compose_job(plan, lang, stills, clips, narrations[lang], bed,
                              notices.get(lang)) for lang in order}
    made_of = _made_of(stills, clips, [a for lang in order for a in narrations[lang]], bed,
                       None) + [a for a in notices.values() if a]
    out = plan.out_dir / MULTITRACK_NAME
    notice = " / ".join(dict.fromkeys(job.notice.text for job in jobs.values() if job.notice))
    picture = dataclasses.replace(picture_job(jobs, order), metadata=mp4_tags(
        title=script.title, notice=notice, source_type=_source_type(made_of),
        producer=plan.profile.disclosure.producer,
        produce_id=_produce_id(script.id, "+".join(order), made_of)))
    done, key, marks = _finished(plan, "multitrack", {"jobs": jobs, "order": order,
                                                      "multitrack": MULTITRACK_VERSION},
                                 made_of, plan.out_dir / ".multitrack.json", {"video": out},
                                 "the multi-language video", picture)
    if done:
        return MultitrackResult(video=out, cached=True, **done["result"])
    with reported(plan.work("compose", language="all")):
        result = compose_multitrack(jobs, picture, out, plan.store, on_progress,
                                    seal=_sealer(plan, marks, f"{script.title} (all languages)",
                                                 made_of))
    facts = {"languages": result.languages, "duration_s": result.duration_s,
             "loudness": result.loudness, "marks": marks}
    _stamp(plan.out_dir / ".multitrack.json", key, {"video": out}, facts)
    return dataclasses.replace(result, marks=marks)


def _finished(plan: BuildPlan, what: str, recipe: dict[str, Any], made_of: list[Asset],
              stamp: Path, paths: dict[str, Path], named: str,
              job: ComposeJob) -> tuple[dict | None, str, dict[str, Any]]:
    """A finished video's stamp when its files are there, unchanged, and made from exactly
    this recipe (then nothing is encoded again); the recipe's key; the marks it will carry."""
    signing = plan.signing
    key = recipe_key(what, {**recipe, "version": COMPOSE_VERSION,
                            "signing": signing.identity() if signing else None,
                            "ingredients": [a.path for a in made_of] if signing else None})
    previous = _read_stamp(stamp)
    if previous and previous["key"] == key and _intact(paths, previous):
        return previous, key, {}
    if plan.peek:
        raise NotCached(named)
    notice = job.notice
    marks: dict[str, Any] = {"digital_source_type": _source_type(made_of), "tags": job.metadata,
                             "notice": {"text": notice.text, "spoken": notice.narration is not None,
                                        "label": job.label} if notice else None}
    return None, key, marks


def _sealer(plan: BuildPlan, marks: dict[str, Any], title: str,
            made_of: list[Asset]) -> Callable[[Path], None]:
    """Signs a finished video: the very last step, since any later remux would strip it."""
    def seal(video: Path) -> None:
        if plan.signing:
            marks["provenance"] = sign_mp4(
                video, plan.signing, title=title, source_type=_source_type(made_of),
                ingredients=_ingredients(made_of), generator=_version())
    return seal


def _stamp(stamp: Path, key: str, paths: dict[str, Path], facts: dict[str, Any]) -> None:
    files = {name: file_sha256(path) for name, path in paths.items()}
    write_text_atomic(stamp, json.dumps({"key": key, "files": files, "result": facts}, indent=1))


def _produce_id(script_id: str, language: str, assets: list[Asset]) -> str:
    """GB 45438's content ID: the same for the same content, whatever else the script holds."""
    digest = hashlib.sha256("".join(a.key for a in assets).encode()).hexdigest()
    return f"sopreel:{script_id}:{language}:{digest[:16]}"


def _ingredients(assets: list[Asset]) -> list[Ingredient]:
    """Every file the video was made from, named for a person reading the credentials."""
    found = []
    for asset in {a.path: a for a in assets}.values():   # a still may serve twice
        made = asset.info.get("model") or asset.info.get("backend", "file")
        what = "AI notice" if asset.info.get("notice") else asset.stage
        found.append(Ingredient(
            path=asset.path, title=f"{what} {asset.path.name}",
            source_type=asset.info.get("digital_source_type"),
            description=f"{what} by {asset.info.get('backend', 'file')} ({made})"
                        + (f", {asset.info['language']}" if asset.info.get("language") else "")))
    return found


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sopreel")
    except PackageNotFoundError:
        return "dev"


def _size(info: dict) -> tuple[int, int] | None:
    return (info["width"], info["height"]) if "width" in info and "height" in info else None


def _paths(out_dir: Path) -> dict[str, Path]:
    return {"video": out_dir / "video.mp4", "srt": out_dir / "subtitles.srt",
            "vtt": out_dir / "subtitles.vtt"}


def _read_stamp(stamp: Path) -> dict | None:
    try:
        return json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _intact(paths: dict[str, Path], stamp: dict) -> bool:
    """The stamped files are all there and unchanged."""
    return all(paths[name].is_file() and file_sha256(paths[name]) == digest
               for name, digest in stamp.get("files", {}).items())
