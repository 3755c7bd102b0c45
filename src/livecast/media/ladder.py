"""Which renditions a stream gets: tier policy, never upscaling, and the node's capacity.

Pure functions, so the policy is testable without ffmpeg. The decision and its reason are
written to ``StreamInfo.health["transcode"]`` for the creator dashboard: a broadcaster whose
viewers only get "source" deserves to know why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from livecast.config import Rendition

DEFAULT_FPS = 30


@dataclass(frozen=True)
class PlannedRendition:
    """A rendition as this stream will really produce it (fps capped, name adjusted)."""

    name: str
    height: int  # 0 for passthrough and audio-only
    fps: int
    video_kbps: int
    audio_kbps: int
    passthrough: bool = False
    audio_only: bool = False
    cost: int = 0

    @property
    def transcoded(self) -> bool:
        return not (self.passthrough or self.audio_only)


@dataclass(frozen=True)
class LadderPlan:
    renditions: tuple[PlannedRendition, ...]
    decision: str  # full | tier | degraded | passthrough
    reason: str

    @property
    def cost(self) -> int:
        return sum(r.cost for r in self.renditions)

    def health(self) -> dict[str, object]:
        return {"renditions": [r.name for r in self.renditions], "decision": self.decision, "reason": self.reason}


def _adapt(r: Rendition, src_height: int, src_fps: int) -> PlannedRendition | None:
    if r.audio_only:
        return PlannedRendition(r.name, 0, 0, 0, r.audio_kbps, audio_only=True, cost=r.cost)
    if r.height == 0:
        return PlannedRendition(r.name, 0, src_fps, r.video_kbps, r.audio_kbps, passthrough=True, cost=r.cost)
    if src_height and r.height > src_height:
        return None  # never upscale
    fps = min(r.fps or src_fps, src_fps) if src_fps else (r.fps or DEFAULT_FPS)
    name = f"{r.height}p{fps}" if r.name == f"{r.height}p{r.fps}" else r.name
    return PlannedRendition(name, r.height, fps, r.video_kbps, r.audio_kbps, cost=r.cost)


def plan_ladder(
    ladder: Sequence[Rendition],
    *,
    is_partner: bool,
    non_partner_names: Sequence[str],
    source_height: int,
    source_fps: float,
    has_audio: bool = True,
    has_video: bool = True,
    used: int = 0,
    capacity: int = 0,
) -> LadderPlan:
    """Choose this stream's renditions given what the node already spends (``used``).

    Partners get the whole ladder; others get ``non_partner_names``. Non-partners may only
    spend the half of the capacity that is not reserved for partners, so a late partner still
    finds room. When the cost does not fit, the most expensive rendition goes first, then
    every transcode (passthrough only).
    """
    src_fps = round(source_fps) if source_fps else 0
    wanted = [r for r in ladder if is_partner or r.name in non_partner_names]
    plans: list[PlannedRendition] = []
    for r in wanted:
        p = _adapt(r, source_height, src_fps)
        if p is None:
            continue
        if p.audio_only and not has_audio:
            continue
        if not p.audio_only and not has_video:
            continue
        if any(q.name == p.name for q in plans):
            continue
        plans.append(p)
    decision = "full" if is_partner else "tier"
    reasons = ["partner: full ladder" if is_partner else "non-partner: " + ",".join(non_partner_names)]
    skipped = [r.name for r in wanted if r.height and source_height and r.height > source_height]
    if skipped:
        reasons.append(f"source is {source_height}p: no upscale to {','.join(skipped)}")
    budget = capacity - used if is_partner else capacity - capacity // 2 - used
    if sum(p.cost for p in plans) > budget:
        transcodes = sorted((p for p in plans if p.transcoded), key=lambda p: (p.cost, p.height), reverse=True)
        if transcodes:
            plans.remove(transcodes[0])
            decision = "degraded"
            reasons.append(f"node transcode capacity {used}/{capacity} in use: dropped {transcodes[0].name}")
        if sum(p.cost for p in plans) > budget or not any(p.transcoded for p in plans):
            plans = [p for p in plans if not p.transcoded]
            decision = "passthrough"
            reasons.append(f"node transcode capacity {used}/{capacity} in use: passthrough only")
    order = sorted(plans, key=lambda p: (p.audio_only, not p.passthrough, -p.height))
    return LadderPlan(tuple(order), decision, "; ".join(reasons))
