"""Reference resizes for `data prepare --resize-filter`: what Pillow's `Image.resize` (the call
StyleGAN2-ADA's dataset_tool makes, with BOX or LANCZOS, and torchvision's Resize, with BILINEAR) gives for seeded random RGB squares.

Usage: .venv/bin/python scripts/make_resize_fixture.py src/data/testdata/pil_resize.json
Each source (a side and its channels-last RGB pixels, hex) lists its resizes (target side,
filter, expected pixels). The Rust resampler must reproduce them byte for byte.
"""
import json
import random
import sys

import PIL
from PIL import Image


def main():
    rng = random.Random(1234)
    sources = []
    for size, targets in [(32, [16, 8]), (37, [16, 8, 5]), (48, [18])]:
        pixels = bytes(rng.randrange(256) for _ in range(size * size * 3))
        image = Image.frombytes("RGB", (size, size), pixels)
        resizes = []
        for target in targets:
            for name, resample in [("box", Image.BOX), ("lanczos", Image.LANCZOS), ("bilinear", Image.BILINEAR)]:
                out = image.resize((target, target), resample)
                resizes.append({"target": target, "filter": name, "expected": out.tobytes().hex()})
        sources.append({"size": size, "pixels": pixels.hex(), "resizes": resizes})
    with open(sys.argv[1], "w") as f:
        json.dump({"pillow": PIL.__version__, "sources": sources}, f)
        f.write("\n")


if __name__ == "__main__":
    main()
