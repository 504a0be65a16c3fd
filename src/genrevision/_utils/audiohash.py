"""A digest of a file's audio data that tags do not change.

Writing a genre rewrites a file's tag region (ID3v2/ID3v1/APEv2 in an MP3, the
metadata blocks of a FLAC, the comment packet of an Ogg stream, the ``moov``
metadata of an MP4, the ``id3 ``/``LIST`` chunks of a WAV or AIFF), so a hash
of the whole file would change and a prediction cache keyed by it would
recompute every tagged song. :func:`audio_digest` hashes only the audio
stream: the MPEG frames, the FLAC STREAMINFO block and frames, every Ogg
packet but the comment header, the MP4 ``mdat`` atoms, the WAV/AIFF format
and sample chunks. Other files are hashed whole.

It is also the check that tagging never touched the audio: the digest is
the same before and after.
"""
from __future__ import annotations

import hashlib
import os
import struct

from .files import open_regular

__all__ = ["audio_digest", "audio_ranges", "iff_chunks"]

_CHUNK = 1 << 20


def audio_digest(path) -> str:
    """SHA-1 of the audio data of ``path`` (tags left out), prefixed by the container's name.

    Raises FileNotFoundError, :class:`~genrevision._utils.files.NotRegularFile` or another OSError.
    """
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        kind, pieces = _layout(f, size)
        h = hashlib.sha1(f"audio-v1:{kind}".encode())
        if kind == "ogg":
            for packet in _ogg_audio_packets(f):
                h.update(struct.pack("<Q", len(packet)))
                h.update(packet)
        else:
            for start, stop in pieces:
                h.update(struct.pack("<Q", stop - start))  # lengths, not offsets: a tag may grow in front
                f.seek(start)
                left = stop - start
                while left > 0:
                    chunk = f.read(min(_CHUNK, left))
                    if not chunk:
                        break
                    h.update(chunk)
                    left -= len(chunk)
    return f"{kind}-{h.hexdigest()}"


def audio_ranges(path) -> tuple[str, list[tuple[int, int]]]:
    """(container name, byte ranges holding audio) of ``path``; Ogg gives no ranges (it is hashed by packet)."""
    with open_regular(path) as f:
        kind, pieces = _layout(f, os.fstat(f.fileno()).st_size)
    return kind, pieces


def _layout(f, size: int) -> tuple[str, list[tuple[int, int]]]:
    head = f.read(12)
    if head[:4] == b"OggS":
        return "ogg", []
    if head[:4] == b"RIFF" and head[8:12] in (b"WAVE", b"RF64"):
        return "wav", iff_chunks(f, size, 12, "<I", {b"fmt ", b"data"}) or [(0, size)]
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff", iff_chunks(f, size, 12, ">I", {b"COMM", b"SSND"}) or [(0, size)]
    if head[4:8] == b"ftyp":
        return "mp4", _mdat(f, size) or [(0, size)]
    start = _skip_id3v2(f, 0, size)
    f.seek(start)
    if f.read(4) == b"fLaC":
        return "flac", _flac(f, start, size)
    f.seek(start)
    sync = f.read(2)
    end = _strip_trailing_tags(f, start, size)
    mpeg = len(sync) == 2 and sync[0] == 0xFF and sync[1] & 0xE0 == 0xE0
    return ("mpeg" if mpeg or start or end != size else "file"), [(start, end)]


def _skip_id3v2(f, pos: int, size: int) -> int:
    # One or more ID3v2 tags in front (a header, a syncsafe size, maybe a footer).
    while pos + 10 <= size:
        f.seek(pos)
        h = f.read(10)
        if h[:3] != b"ID3" or any(b & 0x80 for b in h[6:10]):
            break
        n = (h[6] << 21) | (h[7] << 14) | (h[8] << 7) | h[9]
        pos += 10 + n + (10 if h[5] & 0x10 else 0)
    return min(pos, size)


def _strip_trailing_tags(f, start: int, end: int) -> int:
    # ID3v1 (128 bytes "TAG...") and an APEv2 tag (footer "APETAGEX") at the end, in either order.
    for _ in range(3):
        if end - start >= 128:
            f.seek(end - 128)
            if f.read(3) == b"TAG":
                end -= 128
                continue
        if end - start >= 32:
            f.seek(end - 32)
            foot = f.read(32)
            if foot[:8] == b"APETAGEX":
                n, flags = struct.unpack("<I", foot[12:16])[0], struct.unpack("<I", foot[20:24])[0]
                end -= n + (32 if flags & 0x80000000 else 0)
                continue
        break
    return max(start, end)


def _flac(f, start: int, size: int) -> list[tuple[int, int]]:
    # STREAMINFO (what the audio is) and everything after the last metadata block (the frames).
    pos, pieces = start + 4, []
    while pos + 4 <= size:
        f.seek(pos)
        h = f.read(4)
        last, kind, n = h[0] & 0x80, h[0] & 0x7F, int.from_bytes(h[1:4], "big")
        if kind == 0:
            pieces.append((pos + 4, min(size, pos + 4 + n)))
        pos += 4 + n
        if last:
            break
    end = _strip_trailing_tags(f, min(pos, size), size)
    return pieces + [(min(pos, size), end)]


def iff_chunks(f, size: int, pos: int, fmt: str, keep: set) -> list[tuple[int, int]]:
    """(start, stop) byte ranges of the chunks whose 4-byte ids are in ``keep``, walking the chunks
    of an IFF-style file (RIFF/WAVE: ``fmt="<I"``; AIFF: ``">I"``) of ``size`` bytes from ``pos``."""
    out = []
    while pos + 8 <= size:
        f.seek(pos)
        h = f.read(8)
        n = struct.unpack(fmt, h[4:8])[0]
        if h[:4] in keep:
            out.append((pos, min(size, pos + 8 + n)))
        pos += 8 + n + (n & 1)  # chunks are padded to an even length
    return out


def _mdat(f, size: int) -> list[tuple[int, int]]:
    pos, out = 0, []
    while pos + 8 <= size:
        f.seek(pos)
        h = f.read(8)
        n, name, head = struct.unpack(">I", h[:4])[0], h[4:8], 8
        if n == 1:
            n, head = struct.unpack(">Q", f.read(8))[0], 16
        elif n == 0:
            n = size - pos
        if n < head:
            break
        if name == b"mdat":
            out.append((pos + head, min(size, pos + n)))
        pos += n
    return out


def _ogg_audio_packets(f):
    """Every packet of every logical stream but the Vorbis and Opus comment headers."""
    f.seek(0)
    partial: dict[int, bytearray] = {}
    while True:
        h = f.read(27)
        if len(h) < 27 or h[:4] != b"OggS":
            return
        serial = struct.unpack("<I", h[14:18])[0]
        lacing = f.read(h[26])
        data = f.read(sum(lacing))
        buf = partial.setdefault(serial, bytearray())
        pos = 0
        for lace in lacing:
            buf += data[pos : pos + lace]
            pos += lace
            if lace < 255:
                packet = bytes(buf)
                buf.clear()
                if packet[:7] != b"\x03vorbis" and packet[:8] != b"OpusTags":
                    yield packet
