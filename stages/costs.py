"""Money at hosted services: what a build will cost before anything is sent, and what it spent.

`estimate_cost` walks the plan as the build will, asking the asset store (without making
anything) which stills, narrations and clips are already made: those cost nothing. The rest
is priced per request from the price table (`stages.cloud`). A clip's length is known from its
narrations once they are made; before that it is estimated from the text at a speaking pace,
and a chain of segments partly made is priced whole, so the estimate errs high, never low.

`check_budget` refuses a build past `--max-cost` or the profile's `budget` before any request.
`spent` sums what the assets made by this build cost, with the usage each API reported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from stages import animate, languages
from stages.animate import chain
from stages.assets import Asset
from stages.cloud import Cost, ServiceBackend, price_table, summed
from stages.compose import footage_seconds
from stages.errors import NotCached, SopreelError
from stages.narrate import NarrationRequest
from stages.narrate.speech import speakable
from stages.plan import (
    BuildPlan,
    ScenePlan,
    image_request,
    make_clip,
    make_image,
    make_narration,
    narration_sentences,
    narrator_for,
    stage_backend,
)
from stages.profile import REGISTRIES
from stages.registry import LoadedBackends

# Characters a narrator speaks in a second, by writing system: slow enough that a clip's
# length, and so its price, is not under-estimated before the narration exists.
SPEAKING_CPS = {"latin": 13.0, "han": 4.0, "thai": 10.0}


@dataclass
class ServiceTotal:
    """One service's part of a build: money, how much of what, and requests new or reused."""

    usd: float = 0.0
    quantity: float = 0.0
    unit: str = ""
    new: int = 0
    cached: int = 0

    def add(self, cost: Cost, cached: bool = False) -> None:
        self.unit = cost.unit
        if cached:
            self.cached += 1
            return
        self.usd = round(self.usd + cost.usd, 6)
        self.quantity += cost.quantity
        self.new += 1


@dataclass
class CostEstimate:
    services: dict[str, ServiceTotal] = field(default_factory=dict)

    @property
    def total_usd(self) -> float:
        return round(sum(line.usd for line in self.services.values()), 4)

    def line(self, service: str) -> ServiceTotal:
        return self.services.setdefault(service, ServiceTotal())

    def describe(self) -> list[str]:
        """For a person: one line per service, then the total."""
        if not self.services:
            return []
        lines = [f"  {name}: ${line.usd:.2f} ({_quantity(line)}, {line.new} new"
                 + (f", {line.cached} already made" if line.cached else "") + ")"
                 for name, line in sorted(self.services.items())]
        return [f"Estimated cost at hosted services (prices of {price_table().as_of}, "
                f"templates/prices.yaml): ${self.total_usd:.2f}", *lines]

    def record(self) -> dict[str, Any]:
        return {"total_usd": self.total_usd, "currency": price_table().currency,
                "prices_as_of": price_table().as_of.isoformat(),
                "services": {name: vars(line).copy() for name, line in self.services.items()}}


def _quantity(line: ServiceTotal) -> str:
    amount = f"{line.quantity:,.0f}" if line.quantity >= 10 else f"{line.quantity:g}"
    return f"{amount} {line.unit}{'' if line.quantity == 1 else 's'}"


def paid_stages(plan: BuildPlan) -> set[str]:
    """The stages whose backend (or a narrator route) is a hosted service."""
    return {stage for stage in REGISTRIES for choice in plan.profile.choices(stage)
            if issubclass(REGISTRIES[stage].get(choice.backend), ServiceBackend)}


def estimate_cost(plan: BuildPlan) -> CostEstimate:
    """What the build would spend at each hosted service, reused assets free."""
    estimate = CostEstimate()
    paid = paid_stages(plan)
    if not paid:
        return estimate
    peek, loaded = plan.peeking(), LoadedBackends()
    try:
        if "images" in paid:
            _estimate_images(peek, loaded, estimate)
        if "narrate" in paid:
            _estimate_narration(peek, loaded, estimate)
        if "animate" in paid:
            _estimate_clips(peek, loaded, estimate)
    finally:
        for stage in REGISTRIES:
            loaded.release(stage)
    return estimate


def _estimate_images(plan: BuildPlan, loaded: LoadedBackends, estimate: CostEstimate) -> None:
    backend = stage_backend(plan, "images", loaded)
    line = estimate.line(backend.price_service)
    for scene in plan.scenes:
        if scene.photo is None:
            line.add(backend.cost(image_request(plan, scene)), cached=_made(
                lambda s=scene: make_image(plan, s, loaded)))


def _estimate_narration(plan: BuildPlan, loaded: LoadedBackends,
                        estimate: CostEstimate) -> None:
    for language in plan.languages:
        narrator = narrator_for(plan, language, loaded)
        if not isinstance(narrator, ServiceBackend):
            continue
        line = estimate.line(narrator.price_service)
        for scene in _spoken(plan):
            request = NarrationRequest(sentences=narration_sentences(plan, scene, language),
                                       language=language)
            line.add(narrator.cost(request), cached=_made(
                lambda s=scene, lang=language: make_narration(plan, s, lang, loaded)))


def _spoken(plan: BuildPlan) -> list[ScenePlan | None]:
    """Every scene, and None for the AI notice when it is read aloud."""
    return [*plan.scenes, *([None] if plan.speaks_notice else [])]


def _estimate_clips(plan: BuildPlan, loaded: LoadedBackends, estimate: CostEstimate) -> None:
    backend = stage_backend(plan, "animate", loaded)
    options: animate.AnimateOptions = backend.options
    line = estimate.line(backend.price_service)
    compose = plan.profile.compose
    for scene in plan.scenes:
        voices = [_narration(plan, scene, language, loaded) for language in plan.languages]
        last = scene.index == len(plan.scenes) - 1
        target = max(footage_seconds(compose, seconds, last) for seconds, _ in voices)
        still = _found(lambda s=scene: make_image(plan, s, loaded))
        made = [asset for _, asset in voices]
        request = animate.ClipRequest(image=still.path if still else plan.out_dir / "none")
        segment = backend.cost(request)
        if still is not None and all(made) and _made(
                lambda s=scene, i=still, n=made: make_clip(plan, s, i, n, loaded)):
            line.add(segment, cached=True)
            continue
        coverage = chain.plan_coverage(target, options.frames, options.fps,
                                       options.max_segments, compose.max_slowdown, overlap=0)
        line.add(Cost(segment.service, round(segment.usd * coverage.segments, 6),
                      segment.quantity * coverage.segments, segment.unit))


def _narration(plan: BuildPlan, scene: ScenePlan, language: str,
               loaded: LoadedBackends) -> tuple[float, Asset | None]:
    """The scene's narration length in `language`: measured if it is made, else estimated."""
    made = _found(lambda: make_narration(plan, scene, language, loaded))
    if made is not None:
        return float(made.info["seconds"]), made
    pace = SPEAKING_CPS[languages.get(language).writing]
    sentences = narration_sentences(plan, scene, language)
    spoken = sum(len(speakable(s, language)) for s in sentences) / pace
    return spoken + 0.3 * (len(sentences) - 1), None


def _found(make: Any) -> Asset | None:
    try:
        return make()
    except NotCached:
        return None


def _made(make: Any) -> bool:
    return _found(make) is not None


def check_budget(estimate: CostEstimate, limits: Iterable[tuple[float | None, str]]) -> None:
    """Refuse, before any request, a build whose estimate passes a limit."""
    for limit, source in limits:
        if limit is not None and estimate.total_usd > limit + 1e-9:
            raise SopreelError("\n".join([
                f"This build would cost about ${estimate.total_usd:.2f} at hosted services, "
                f"more than {source} (${limit:.2f}). Nothing was sent.", *estimate.describe(),
                "Build fewer languages (--lang), use supplied photos or the draft profile for "
                "a preview, or raise the limit."]))


def priced(plan: BuildPlan, max_cost: float | None) -> tuple[BuildPlan, CostEstimate]:
    """The plan with its estimate recorded, or a refusal when the estimate passes
    `max_cost` (--max-cost) or the profile's budget."""
    estimate = estimate_cost(plan)
    profile = plan.profile
    check_budget(estimate, [(max_cost, "--max-cost"),
                            (profile.budget, f"the budget in {profile.path.name}")])
    record = estimate.record() if estimate.services else None
    return dataclasses.replace(plan, cost_estimate=record), estimate


def spent(assets: Iterable[Asset]) -> dict[str, Any]:
    """What the assets this build made (not reused) cost, per service, and the usage the
    services reported for them."""
    made = CostEstimate()
    usage: dict[str, dict[str, float]] = {}
    for asset in {a.path: a for a in assets}.values():
        cost = asset.info.get("cost")
        if asset.cached or not cost:
            continue
        made.line(cost["service"]).add(Cost(**cost))
        usage[cost["service"]] = summed([usage.get(cost["service"], {}),
                                         asset.info.get("usage") or {}])
    return {"total_usd": made.total_usd,
            "services": {name: {k: v for k, v in vars(line).items() if k != "cached"}
                         for name, line in made.services.items()},
            "usage": usage}
