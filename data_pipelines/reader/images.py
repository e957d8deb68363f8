"""Image decoding straight to the bucket size: JPEG draft-mode decoding, reduce + Lanczos, center crop.

For JPEG, ``Image.draft`` makes libjpeg decode at 1/2, 1/4 or 1/8 scale (DCT scaling) when the
target is that much smaller, which is most of the decode time saved. The crop is folded into the
resize (``box=``) and ``reducing_gap`` lets Pillow box-reduce by an integer factor before the
Lanczos pass, which is indistinguishable from a full Lanczos resize at a gap of 3.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
from PIL import Image

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP")  # never let Pillow pick e.g. EPS (runs Ghostscript)
REDUCING_GAP = 3.0


def open_image(data: bytes) -> Image.Image:
    """A lazily opened image (header read only); raises for unknown formats."""
    return Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)


def looks_complete(data: bytes, image_format: str | None) -> bool:
    """Cheap check that an encoded image was not cut short (the usual damage in copied shards).

    JPEG: no start-of-scan marker after the last end-of-image marker (0xFF 0xD9 and 0xFF 0xDA
    cannot occur inside entropy-coded data; an embedded thumbnail ends before the main scan);
    PNG: an IEND chunk; WebP: the RIFF length fits in the data.
    """
    if image_format == "JPEG":
        end = data.rfind(b"\xff\xd9")
        return end > 0 and data.find(b"\xff\xda") >= 0 and data.find(b"\xff\xda", end) == -1
    if image_format == "PNG":
        return data.rfind(b"IEND") > 8
    if image_format == "WEBP":
        return len(data) >= 12 and int.from_bytes(data[4:8], "little") + 8 <= len(data)
    return False


def cover_crop_box(width: int, height: int, target_w: int, target_h: int) -> tuple[float, float, float, float]:
    """The centered source box with the target's aspect ratio that covers as much of the image as possible."""
    scale = max(target_w / width, target_h / height)
    box_w, box_h = target_w / scale, target_h / scale
    left, top = (width - box_w) / 2, (height - box_h) / 2
    return left, top, left + box_w, top + box_h


def decode_to_size(data: bytes, size_hw: tuple[int, int]) -> np.ndarray:
    """The image resized (Lanczos) and center-cropped to ``size_hw``, as uint8 (H, W, 3)."""
    target_h, target_w = size_hw
    with open_image(data) as image:
        if image.format == "JPEG":
            scale = max(target_w / image.width, target_h / image.height)
            image.draft("RGB", (math.ceil(image.width * scale), math.ceil(image.height * scale)))
        if image.mode != "RGB":
            image = image.convert("RGB")
        box = cover_crop_box(image.width, image.height, target_w, target_h)
        resized = image.resize((target_w, target_h), Image.Resampling.LANCZOS, box=box, reducing_gap=REDUCING_GAP)
    return np.asarray(resized, dtype=np.uint8)


def to_unit_range(images: list[np.ndarray]) -> torch.Tensor:
    """uint8 (H, W, 3) arrays -> float32 (B, 3, H, W) in [-1, 1]."""
    stacked = torch.from_numpy(np.stack(images))
    batch = torch.empty((stacked.shape[0], 3, stacked.shape[1], stacked.shape[2]), dtype=torch.float32)
    batch.copy_(stacked.permute(0, 3, 1, 2))
    return batch.div_(127.5).sub_(1.0)
