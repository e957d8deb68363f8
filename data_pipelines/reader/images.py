"""Image decoding straight to the bucket size: DCT-scaled JPEG decoding, reduce + Lanczos, center crop.

JPEGs are decoded by libjpeg-turbo through ``simplejpeg`` at 1/2, 1/4 or 1/8 scale (DCT scaling)
when the target is that much smaller: the scale Pillow's draft mode (``Image.draft``) picks, and
the same pixels, bit for bit; simplejpeg skips Pillow's file object and mode handling. Draft mode
is a few levels from a full decode on average (``PIXEL_TOLERANCE``, checked by
tests/data_pipelines/test_reader_pixels.py and printed by benchmarks/data_throughput.py). libjpeg-turbo's
other M/8 scales (7/8 .. 3/8) would be ~17% faster on these sources but are further from the full
decode (NOTES.md). A JPEG simplejpeg refuses (CMYK, recoverable damage) goes through Pillow's
draft mode instead, the path of every PNG and WebP. The crop is folded into the
resize (``box=``: only the center crop is resampled) and ``reducing_gap`` lets Pillow box-reduce by
an integer factor before the Lanczos pass, which is indistinguishable from a full Lanczos resize at
a gap of 3. Everything stays uint8; ``to_model_range`` makes the float [-1, 1] the model takes, on
the consumer's side (after the host-to-device copy, which moves a quarter of the bytes).
"""

from __future__ import annotations

import io
import math

import numpy as np
import simplejpeg
import torch
from PIL import Image

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP")  # never let Pillow pick e.g. EPS (runs Ghostscript)
REDUCING_GAP = 3.0
# How far the reader's pixels may be from reference_decode, in levels of 255: draft mode (DCT-scaled
# decoding) lowpasses differently from a full decode + Lanczos. On 300 crops of real photos draft mode
# gave a mean of 1.15 over all pixels and 9.6 for the worst image (fine foliage at a 2x reduction).
PIXEL_TOLERANCE = {"mean": 2.0, "image_mean": 16.0}


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
    left, top = max(0.0, (width - box_w) / 2), max(0.0, (height - box_h) / 2)  # never -1e-14
    return left, top, min(float(width), left + box_w), min(float(height), top + box_h)


def draft_scale(width: int, height: int, need_w: int, need_h: int) -> int:
    """The DCT scale denominator Pillow's draft mode picks: the largest of 8, 4, 2, 1 that keeps the
    decoded image at least ``need_w`` x ``need_h``."""
    fits = min(width // max(1, need_w), height // max(1, need_h))
    return next(scale for scale in (8, 4, 2, 1) if scale <= fits) if fits >= 1 else 1


def decode_jpeg_scaled(data: bytes, need_w: int, need_h: int) -> np.ndarray | None:
    """RGB uint8 (H, W, 3) of a JPEG decoded by libjpeg-turbo at draft mode's scale (bit-identical
    to Pillow's draft-mode decode), or None when simplejpeg cannot decode it so (the caller falls
    back to Pillow)."""
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
        if colorspace not in ("Gray", "YCbCr", "RGB"):
            return None  # CMYK / YCCK: Pillow converts those
        scale = draft_scale(width, height, need_w, need_h)
        decoded_w, decoded_h = -(-width // scale), -(-height // scale)
        # the smallest M/8 size >= decoded_w x decoded_h with width / size >= scale is exactly 1/scale
        array = simplejpeg.decode_jpeg(data, "RGB", min_width=decoded_w, min_height=decoded_h, min_factor=scale)
    except ValueError:  # simplejpeg's error for anything libjpeg-turbo reports, warnings included (strict)
        return None
    return array if array.shape == (decoded_h, decoded_w, 3) else None


def decode_to_size(data: bytes, size_hw: tuple[int, int], simd_jpeg: bool = True) -> np.ndarray:
    """The image resized (Lanczos) and center-cropped to ``size_hw``, as uint8 (H, W, 3).
    ``simd_jpeg=False``: Pillow's draft mode alone (the same pixels; the tests' comparison)."""
    target_h, target_w = size_hw
    with open_image(data) as image:
        scale = max(target_w / image.width, target_h / image.height)
        need_w, need_h = math.ceil(image.width * scale), math.ceil(image.height * scale)
        array = decode_jpeg_scaled(data, need_w, need_h) if simd_jpeg and image.format == "JPEG" else None
        if array is not None:
            source = Image.fromarray(array)
        else:
            if image.format == "JPEG":
                image.draft("RGB", (need_w, need_h))
            source = image if image.mode == "RGB" else image.convert("RGB")
        box = cover_crop_box(source.width, source.height, target_w, target_h)
        resized = source.resize((target_w, target_h), Image.Resampling.LANCZOS, box=box, reducing_gap=REDUCING_GAP)
    return np.asarray(resized, dtype=np.uint8)


def reference_decode(data: bytes, size_hw: tuple[int, int]) -> np.ndarray:
    """The slow reference the reader is checked against: Pillow's full-size decode (no draft mode),
    then one Lanczos resize of the whole image to cover ``size_hw`` and its center crop (uint8
    (H, W, 3)). The crop is Pillow's ``box=``, which resamples exactly the pixels a resize of the
    whole image would give inside the box, without the integer rounding of a separate crop."""
    target_h, target_w = size_hw
    with open_image(data) as image:
        full = image.convert("RGB")
    box = cover_crop_box(full.width, full.height, target_w, target_h)
    return np.asarray(full.resize((target_w, target_h), Image.Resampling.LANCZOS, box=box), dtype=np.uint8)


def pixel_difference(got: np.ndarray, want: np.ndarray) -> dict[str, float]:
    """Mean and max absolute difference of two uint8 images, in levels of 255."""
    if got.shape != want.shape:
        raise ValueError(f"shapes differ: {got.shape} vs {want.shape}")
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    return {"mean": float(diff.mean()), "max": int(diff.max())}


def stack_images(images: list[np.ndarray], shared: bool = False) -> torch.Tensor:
    """uint8 (H, W, 3) arrays -> one uint8 (B, 3, H, W) tensor (a channels-last view of a (B, H, W, 3)
    buffer, so nothing is transposed here). ``shared``: the buffer is made in shared memory, so a
    DataLoader worker hands it to the main process without another copy."""
    height, width = images[0].shape[:2]
    buffer = torch.empty((len(images), height, width, 3), dtype=torch.uint8)
    if shared:
        buffer.share_memory_()
    np.stack(images, out=buffer.numpy())
    return buffer.permute(0, 3, 1, 2)


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """The reader's uint8 (B, 3, H, W) batch -> contiguous float32 in [-1, 1] on the same device
    (x / 127.5 - 1, exactly what the reader produced before it kept uint8); float input is returned
    as it is. Call it after moving the batch to the device."""
    if images.dtype != torch.uint8:
        return images
    out = torch.empty(images.shape, dtype=torch.float32, device=images.device)
    out.copy_(images)
    return out.div_(127.5).sub_(1.0)


def to_unit_range(images: list[np.ndarray]) -> torch.Tensor:
    """uint8 (H, W, 3) arrays -> float32 (B, 3, H, W) in [-1, 1]."""
    return to_model_range(stack_images(images))
