"""A music bed of any length from the pieces a backend made: continued windows, or one loop.

Continuing: every window after the first opens by re-playing the last `context` samples of
the bed so far (the model decoded them together with what it added), so the two stretches
are nearly the same sound. The join crossfades inside that stretch, linearly: for correlated
audio an equal-power fade would swell by up to 3 dB.

Looping: a piece is played from a quiet point near its start to a quiet point near its end,
again and again, crossfading each seam with an equal-power fade (the two sides are different
sound). A piece the backend made to loop without a seam (the synth) is repeated as it is.

Fades in and out are compose's, at each video's own length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from stages.media import SAMPLE_RATE

QUIET_FRAME_S = 0.05   # loudness is compared in 50 ms frames when looking for a quiet point


@dataclass(frozen=True)
class Piece:
    """Stereo samples at SAMPLE_RATE, shape (count, 2)."""

    samples: np.ndarray
    context: int = 0          # samples at its start that re-play the end of the bed so far
    seamless: bool = False    # made to loop end-to-start without a crossfade


def windows_needed(seconds: float, window_s: float, context_s: float) -> int:
    """How many windows of `window_s` (each after the first re-playing `context_s`) cover
    `seconds`."""
    if seconds <= window_s:
        return 1
    return 1 + math.ceil((seconds - window_s) / (window_s - context_s) - 1e-9)


def join_continued(pieces: list[Piece], crossfade: int) -> np.ndarray:
    """The windows as one bed, each join a linear crossfade that ends where its context does."""
    bed = pieces[0].samples
    for piece in pieces[1:]:
        if piece.context == 0:
            raise ValueError("a continued window must re-play some of the bed before it")
        fade = min(crossfade, piece.context, len(bed))
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)[:, None]
        incoming = piece.samples[piece.context - fade:piece.context]
        bed = np.concatenate([bed[:len(bed) - fade],
                              bed[len(bed) - fade:] * (1 - ramp) + incoming * ramp,
                              piece.samples[piece.context:]])
    return bed


def quiet_point(samples: np.ndarray, start: int, end: int, rate: int = SAMPLE_RATE) -> int:
    """The start of the quietest 50 ms frame in samples[start:end]."""
    frame = max(1, round(QUIET_FRAME_S * rate))
    count = max(1, (end - start) // frame)
    frames = samples[start:start + count * frame].reshape(count, frame, -1)
    return start + int(np.argmin(np.mean(frames**2, axis=(1, 2)))) * frame


def loop_points(samples: np.ndarray, crossfade: int, rate: int = SAMPLE_RATE) -> tuple[int, int]:
    """(loop in, loop out): a quiet point in the first quarter and one in the last third,
    with room for the crossfade after the loop-out point."""
    count = len(samples)
    first = quiet_point(samples, 0, count // 4, rate)
    last_end = count - crossfade
    last_start = max(first + 2 * crossfade, count * 2 // 3)
    if last_end - last_start < round(QUIET_FRAME_S * rate):   # too short to choose: whole
        return 0, last_end
    return first, quiet_point(samples, last_start, last_end, rate)


def loop_to(piece: Piece, length: int, crossfade: int,
            rate: int = SAMPLE_RATE) -> tuple[np.ndarray, dict[str, float]]:
    """`length` samples of the piece played on and on; facts say where it loops."""
    samples = piece.samples
    if len(samples) >= length:
        return samples[:length], {}
    if piece.seamless:
        repeats = math.ceil(length / len(samples))
        return np.tile(samples, (repeats, 1))[:length], {"loop_in_s": 0.0,
                                                         "loop_out_s": len(samples) / rate}
    crossfade = min(crossfade, len(samples) // 4)
    loop_in, loop_out = loop_points(samples, crossfade, rate)
    turn = np.linspace(0.0, math.pi / 2, crossfade, dtype=np.float32)[:, None]
    seam = (samples[loop_out:loop_out + crossfade] * np.cos(turn)
            + samples[loop_in:loop_in + crossfade] * np.sin(turn))
    once_more = np.concatenate([seam, samples[loop_in + crossfade:loop_out]])
    repeats = math.ceil(max(0, length - loop_out) / len(once_more))
    bed = np.concatenate([samples[:loop_out], *([once_more] * repeats)])
    return bed[:length], {"loop_in_s": round(loop_in / rate, 3),
                          "loop_out_s": round(loop_out / rate, 3)}


def assemble(pieces: list[Piece], seconds: float, crossfade_s: float,
             rate: int = SAMPLE_RATE) -> tuple[np.ndarray, dict[str, object]]:
    """A bed of exactly `seconds` from one piece, or from windows that continue each other,
    and what was done to make it."""
    length, crossfade = round(seconds * rate), round(crossfade_s * rate)
    if len(pieces) > 1:
        joined = Piece(join_continued(pieces, crossfade))
        facts: dict[str, object] = {"method": f"{len(pieces)} windows continued"}
    else:
        joined, facts = pieces[0], {"method": "one piece"}
    bed, loop = loop_to(joined, length, crossfade, rate)
    if loop:
        facts = {"method": facts["method"] + ", looped", **loop}
    elif len(joined.samples) > length:
        facts = {"method": facts["method"] + ", trimmed",
                 "trimmed_s": round((len(joined.samples) - length) / rate, 3)}
    return bed, facts
