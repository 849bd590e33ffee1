"""PNG sample grids for people: one row per class, captioned on the left."""

from __future__ import annotations

import io

import torch
from PIL import Image, ImageDraw

CAPTION_CHARS = 14
PAD = 2


def grid_png(rows: list[tuple[str, torch.Tensor]], scale: int = 2) -> bytes:
    """Rows of uint8 images [n, C, H, W], each captioned by its string, as PNG bytes."""
    columns = max(images.shape[0] for _, images in rows)
    _, channels, height, width = rows[0][1].shape
    cell_h, cell_w = height * scale + PAD, width * scale + PAD
    captions = [caption[:CAPTION_CHARS] for caption, _ in rows]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    caption_width = 8 + int(max(measure.textlength(caption) for caption in captions))  # as wide as the longest
    canvas = Image.new("RGB", (caption_width + columns * cell_w + PAD, len(rows) * cell_h + PAD), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (caption, (_, images)) in enumerate(zip(captions, rows, strict=True)):
        top = PAD + r * cell_h
        draw.text((4, top + cell_h // 2 - 6), caption, fill="black")
        for c, image in enumerate(images):
            pixels = image.cpu().permute(1, 2, 0).numpy()
            tile = Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels)
            tile = tile.convert("RGB").resize((width * scale, height * scale), Image.NEAREST)
            canvas.paste(tile, (caption_width + PAD + c * cell_w, top))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()
