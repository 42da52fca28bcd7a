"""Tiny test videos written with PyAV (shared by the tests in this folder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_video(path: Path, n_frames: int = 20, fps: int = 10, size: int = 32, codec: str = "libx264") -> Path:
    """A moving-square clip; returns ``path``."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "20", "bf": "0"}
        if codec == "libsvtav1":
            stream.options = {"preset": "12"}
        for k in range(n_frames):
            img = np.full((size, size, 3), 40, dtype=np.uint8)
            x = (k * 3) % (size - 8)
            img[8:16, x : x + 8] = 230
            img[..., 2] = (k * 10) % 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
