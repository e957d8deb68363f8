"""Checking an encoded image before it goes into a shard: it must be a JPEG, PNG or WebP that the
reader accepts (header, not cut short) and whose pixels decode completely. The bytes are stored
unchanged; only the size and the member extension are read off them."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from data_pipelines.reader.images import looks_complete, open_image

EXTENSION_OF_FORMAT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
# Formats the reader does not take, recognized only to name them in the skip count. The list is
# explicit so that Pillow never opens e.g. EPS (which runs Ghostscript).
_NAMED_OTHER_FORMATS = ("GIF", "BMP", "TIFF", "PPM", "TGA", "ICO")


class ImageRejected(ValueError):
    """An image that cannot go into a shard; ``reason`` is the writer's skip reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    extension: str  # shard member extension from the content, not the file name: jpg, png or webp

    @property
    def h_div_w(self) -> float:
        return self.height / self.width


def inspect_image(data: bytes) -> ImageInfo:
    """Size and member extension of an encoded image; ImageRejected if the reader could not use it."""
    try:
        image = open_image(data)
    except Exception as error:  # noqa: BLE001 - Pillow raises many types for unknown or damaged data
        raise ImageRejected(*_unreadable(data, error)) from None
    with image:
        image_format, (width, height) = image.format, image.size
        try:
            image.load()
        except Exception as error:  # noqa: BLE001 - includes DecompressionBombError for huge images
            raise ImageRejected("bad_image", f"{image_format} pixels do not decode: {error}") from None
    if width < 1 or height < 1:
        raise ImageRejected("bad_image", f"size {width}x{height}")
    if not looks_complete(data, image_format):
        raise ImageRejected("bad_image", f"{image_format} data is cut short")
    return ImageInfo(width, height, EXTENSION_OF_FORMAT[image_format])


def _unreadable(data: bytes, error: Exception) -> tuple[str, str]:
    try:
        with Image.open(io.BytesIO(data), formats=_NAMED_OTHER_FORMATS) as other:
            return "unsupported_format", f"{other.format} (the reader takes JPEG, PNG and WebP)"
    except Exception:  # noqa: BLE001 - not one of the named formats either
        return "bad_image", f"not a decodable image: {error}"
