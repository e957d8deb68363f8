"""From raw tar members to a sample that can be bucketed: metadata checks and the aspect template.

These checks are cheap (JSON parse and the image header only; pixels are decoded later, for the
batch), and they alone decide which bucket, and therefore which batch, a sample joins. A resumed
reader replays them without decoding any pixels and lands on exactly the same batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .images import looks_complete, open_image
from .metadata import MetadataError, caption_fields, parse_json_object
from .stats import ReaderCounters
from .tar_stream import IMAGE_EXTENSIONS, RawSample


@dataclass(frozen=True)
class Sample:
    key: str
    url: str
    image: bytes  # still encoded
    width: int
    height: int
    template: float  # the nearest allowed aspect template (h / w)
    long_caption: str
    short_caption: str | None
    spec: dict[str, Any] | None


def nearest_allowed_template(h_div_w: float, templates: Sequence[float]) -> float:
    return min(templates, key=lambda t: (abs(t - h_div_w), t))


def prepare_sample(raw: RawSample, templates: Sequence[float], counters: ReaderCounters) -> Sample | None:
    """The checked sample, or None (counted under its skip reason) if it cannot be trained on."""
    key, url = raw["__key__"], raw["__url__"]
    where = f"{url} sample {key!r}"
    image_bytes = next((raw[ext] for ext in IMAGE_EXTENSIONS if ext in raw), None)
    if image_bytes is None:
        counters.skip("missing_image", where)
        return None
    if "json" not in raw and "txt" not in raw:
        counters.skip("missing_json", where)
        return None
    try:
        metadata = parse_json_object(raw["json"]) if "json" in raw else {}
        captions = caption_fields(metadata, raw.get("txt"))
    except MetadataError as error:
        counters.skip(error.reason, where, str(error))
        return None
    try:
        with open_image(image_bytes) as image:
            width, height, image_format = image.width, image.height, image.format
    except Exception as error:  # noqa: BLE001 - Pillow raises many types for malformed headers
        counters.skip("bad_image", where, error)
        return None
    if width < 1 or height < 1:
        counters.skip("bad_image", where, f"size {width}x{height}")
        return None
    if not looks_complete(image_bytes, image_format):
        counters.skip("bad_image", where, f"truncated {image_format} data")
        return None
    spec = metadata.get("spec")
    return Sample(
        key=key,
        url=url,
        image=image_bytes,
        width=width,
        height=height,
        template=nearest_allowed_template(height / width, templates),
        long_caption=captions.long,
        short_caption=captions.short,
        spec=spec if isinstance(spec, dict) else None,
    )
