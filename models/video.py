"""Video: decode with PyAV, OCR only the frames where the picture changed, merge captions into segments.

    reading = read_video("clip.mp4", get_engine())
    reading.segments    # [Segment(start, end, text, lines), ...] — one per caption shown
    reading.ocr_calls   # a static clip costs one

Change detection runs on a small grey thumbnail of a frame every `check_every` seconds: its map of strong
edges is compared with the previous check's, block by block, in the blocks dense enough with edges to be
text. A caption that appears, changes or leaves changes most of them; a moving background changes few. An abrupt change is OCR'd once the picture has settled (so
a fading caption is read whole), never sooner than `min_interval` after the last OCR call; a picture that
has drifted far from the last one read is re-read after `max_interval`; an unchanged one never is.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path

import av
import numpy as np

from .errors import DurationExceeded, InputError, LimitExceeded
from .image import Reading, read_image
from .ocr import OcrEngine
from .settings import Limits, settings


@dataclass(frozen=True)
class Sampling:
    check_every: float = 0.1  # seconds between frames whose thumbnail is compared (decoding is every frame)
    min_interval: float = 0.5  # never two OCR calls closer than this
    max_interval: float = 5.0  # re-read a drifting picture this often even without a clear change
    settle: float = 0.2  # wait up to this long after a change for the picture to stop changing
    thumb_width: int = 320
    edge_threshold: int = 40  # grey-level step that counts as an edge
    block: int = 8  # thumbnail pixels per side of a comparison block
    text_density: float = 0.4  # share of edge pixels that makes a block text-like
    block_change: float = 0.3  # share of a block's edges that must differ for the block to have changed
    change_ratio: float = 0.2  # share of text-like blocks that changed = a new caption
    same_text: float = 0.8  # texts at least this similar are one caption


@dataclass
class Segment:
    start: float
    end: float
    text: str
    reading: Reading  # the OCR of the frame that represents the segment
    frame_time: float

    def to_dict(self) -> dict:
        return {
            "start": round(self.start, 2),
            "end": round(self.end, 2),
            "text": self.text,
            "frame_time": round(self.frame_time, 2),
        }


@dataclass
class VideoReading:
    segments: list[Segment]
    duration: float
    width: int
    height: int
    frames_decoded: int = 0
    ocr_calls: int = 0
    samples: list[float] = field(default_factory=list)  # the times OCR'd
    truncated: str | None = None  # set when decoding stopped early: what was read is still scored

    @property
    def transcript(self) -> str:
        return "\n".join(s.text for s in self.segments)


def open_video(source: str | Path | bytes, max_bytes: int | None = None) -> av.container.InputContainer:
    """Open a container and its first video stream, or raise InputError saying what is wrong with it."""
    max_bytes = settings().limits.max_video_bytes if max_bytes is None else max_bytes
    if isinstance(source, bytes):
        if not source:
            raise InputError("video is empty (0 bytes)")
        if len(source) > max_bytes:
            raise LimitExceeded(
                f"video is {len(source):,} bytes; the limit is {max_bytes:,} (FANZHA_MAX_VIDEO_BYTES)"
            )
        target: str | io.BytesIO = io.BytesIO(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise InputError(f"no such file: {path}")
        if path.stat().st_size > max_bytes:
            raise LimitExceeded(
                f"video is {path.stat().st_size:,} bytes; the limit is {max_bytes:,} (FANZHA_MAX_VIDEO_BYTES)"
            )
        target = str(path)
    try:
        container = av.open(target, mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, ValueError, OSError) as e:
        raise InputError(f"not a readable video: {_ffmpeg_message(e)}") from None
    if not container.streams.video:
        container.close()
        raise InputError("the file has no video stream")
    return container


def _ffmpeg_message(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e)


def _duration(container, stream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def _edges(gray: np.ndarray, threshold: int) -> np.ndarray:
    g = gray.astype(np.int16)
    edges = np.zeros(g.shape, dtype=bool)
    edges[:, 1:] |= np.abs(np.diff(g, axis=1)) > threshold
    edges[1:, :] |= np.abs(np.diff(g, axis=0)) > threshold
    return edges


def _block_mean(mask: np.ndarray, block: int) -> np.ndarray:
    h, w = (mask.shape[0] // block) * block, (mask.shape[1] // block) * block
    return mask[:h, :w].reshape(h // block, block, w // block, block).mean(axis=(1, 3))


def _text_change(a: np.ndarray, b: np.ndarray, sampling: Sampling) -> float:
    """Share of text-like blocks (dense strong edges, in either map) whose edge pattern changed.

    Text is dense with sharp edges; the border of a moving shape or a drifting gradient is not, so only
    blocks dense enough to be text are compared, and a block counts as changed when a good part of its
    edges differ. A caption appearing, changing or leaving scores near 1, a moving background near 0.
    """
    block = sampling.block
    text = (_block_mean(a, block) >= sampling.text_density) | (_block_mean(b, block) >= sampling.text_density)
    n_text = np.count_nonzero(text)
    if n_text < 2:
        return 0.0
    differ = _block_mean(a ^ b, block) > sampling.block_change * np.maximum(_block_mean(a | b, block), 1e-6)
    return np.count_nonzero(differ & text) / n_text


def iter_changed_frames(
    container,
    sampling: Sampling = Sampling(),
    stats: dict | None = None,
    max_seconds: float | None = None,
    limits: Limits | None = None,
) -> Iterator[tuple[float, np.ndarray]]:
    """(time the picture changed, RGB frame) for each frame worth OCR'ing; enforces the duration/size/frame limits as it goes.

    Thumbnails are compared every `check_every` seconds. An abrupt change between two checks (a caption
    appears, changes or leaves; a cut) is read once the picture has settled; a picture that has drifted
    far from the last one read is re-read after `max_interval`; an unchanged picture is never re-read.
    The limits default to the settings' (FANZHA_MAX_VIDEO_*).
    """
    limits = limits or settings().limits
    max_seconds = limits.max_video_seconds if max_seconds is None else max_seconds
    max_pixels, max_frames = limits.max_video_pixels, limits.max_video_frames
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # frame + slice threads inside FFmpeg's decoder
    if stream.width * stream.height > max_pixels:
        raise LimitExceeded(
            f"video is {stream.width}×{stream.height}; the limit is {max_pixels:,} pixels per frame "
            "(FANZHA_MAX_VIDEO_PIXELS)"
        )
    thumb_h = max(2, round(sampling.thumb_width * stream.height / max(1, stream.width)))
    stats = stats if stats is not None else {}
    stats["frames_decoded"] = 0
    ref_edges = prev_edges = None  # the last frame read by OCR / the previous checked frame
    last_ocr = last_check = -1e9
    pending_since: float | None = None  # an abrupt change was seen; waiting for the picture to settle
    try:
        for frame in container.decode(stream):
            stats["frames_decoded"] += 1
            if stats["frames_decoded"] > max_frames:
                raise LimitExceeded(f"video has more than {max_frames:,} frames (FANZHA_MAX_VIDEO_FRAMES)")
            raw_t = (
                float(frame.time)
                if frame.time is not None
                else stats["frames_decoded"] / float(stream.average_rate or 25)
            )
            start = stats.setdefault(
                "first_time", raw_t
            )  # timelines start at 0 (a TS cut may start at 700 s)
            t = raw_t - start
            stats["last_time"] = t
            if t > max_seconds:  # checked on the frames too: a stream may declare no duration, or a false one
                raise DurationExceeded(f"video is longer than {max_seconds:g} s")
            if frame.width * frame.height > max_pixels:  # a stream may change resolution mid-way
                raise LimitExceeded(
                    f"video frame at {t:.1f} s is {frame.width}×{frame.height}; the limit is "
                    f"{max_pixels:,} pixels per frame (FANZHA_MAX_VIDEO_PIXELS)"
                )
            if t - last_check < sampling.check_every:
                continue
            last_check = t
            edges = _edges(
                frame.to_ndarray(width=sampling.thumb_width, height=thumb_h, format="gray"),
                sampling.edge_threshold,
            )
            step = _text_change(prev_edges, edges, sampling) if prev_edges is not None else 0.0
            prev_edges = edges
            if ref_edges is None:
                take = True
            else:
                if step >= sampling.change_ratio and pending_since is None:
                    pending_since = t
                if pending_since is not None:
                    settled = step < sampling.change_ratio / 2 or t - pending_since >= sampling.settle
                    take = settled and t - last_ocr >= sampling.min_interval
                else:
                    take = (
                        t - last_ocr >= sampling.max_interval
                        and _text_change(ref_edges, edges, sampling) >= sampling.change_ratio
                    )
            if take:
                # the picture changed when the change was first seen; it is read once it has settled
                changed_at, pending_since = (pending_since if pending_since is not None else t), None
                ref_edges, last_ocr = edges, t
                yield changed_at, frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError as e:
        if stats["frames_decoded"] == 0:
            raise InputError(f"video cannot be decoded: {_ffmpeg_message(e)}") from None
        # a truncated upload: keep what was decoded and say so
        stats["truncated"] = f"decoding stopped after {stats['frames_decoded']} frames: {_ffmpeg_message(e)}"


def _squash(text: str) -> str:
    return "".join(text.split())


def read_video(
    source: str | Path | bytes,
    engine: OcrEngine,
    sampling: Sampling = Sampling(),
    max_seconds: float | None = None,
    limits: Limits | None = None,
) -> VideoReading:
    """Sample changed frames, OCR them, merge the same caption across frames into timed segments.

    `max_seconds` (never more than FANZHA_MAX_VIDEO_SECONDS) refuses longer videos before any frame is decoded;
    `limits` default to the settings'."""
    limits = limits or settings().limits
    container = open_video(source, limits.max_video_bytes)
    try:
        stream = container.streams.video[0]
        # some containers count the duration from 0 although the first frame is later (a cut from a broadcast)
        start = container.start_time / av.time_base if container.start_time else 0.0
        duration = max(0.0, _duration(container, stream) - start)
        ceiling = limits.max_video_seconds
        limit = ceiling if max_seconds is None else min(max_seconds, ceiling)
        if duration > limit:
            raise DurationExceeded(
                f"video is {duration:.1f} s; the limit is {limit:g} s"
                + (" (FANZHA_MAX_VIDEO_SECONDS)" if limit == ceiling else "")
            )
        reading = VideoReading([], duration, stream.width, stream.height)
        stats: dict = {}
        current: Segment | None = None
        for t, rgb in iter_changed_frames(container, sampling, stats, limit, limits):
            frame_reading = read_image(rgb, engine, frame=True)
            reading.ocr_calls += 1
            reading.samples.append(t)
            text = frame_reading.text
            if (
                current is not None
                and SequenceMatcher(None, _squash(current.text), _squash(text)).ratio() >= sampling.same_text
            ):
                if _mean_confidence(frame_reading) > _mean_confidence(current.reading):
                    current.text, current.reading, current.frame_time = text, frame_reading, t
                continue
            if current is not None:
                current.end = t
            current = Segment(t, t, text, frame_reading, t) if text else None
            if current is not None:
                reading.segments.append(current)
        reading.frames_decoded = stats.get("frames_decoded", 0)
        if reading.frames_decoded == 0:
            raise InputError("video has no decodable frames")
        end = max(duration, stats.get("last_time", 0.0))  # a header without a duration: the stream's own end
        if current is not None:
            current.end = end
        reading.duration = duration or end
        reading.truncated = stats.get("truncated")
        last = stats.get("last_time", 0.0)
        if reading.truncated is None and duration and last < duration - 1.0:
            # the container promised more than the stream held: an upload cut short
            reading.truncated = (
                f"the stream ends at {last:.1f} s of the {duration:.1f} s the container declares"
            )
        return reading
    finally:
        container.close()


def _mean_confidence(reading: Reading) -> float:
    return sum(line.confidence for line in reading.lines) / len(reading.lines) if reading.lines else 0.0
