"""pytorch-fid's feature extraction speed on CPU, for comparison with ours (`gan-launch eval`).

Usage: python scripts/fid_bench.py [--num 200] [--batch 50] [--threads 2] [--resolution 32]
Random uint8 images at the given resolution go through pytorch-fid's InceptionV3 (pool3 block;
its resize to 299 and normalisation included) exactly as `get_activations` feeds them: /255,
float32. Weights are seeded random ones in the standard layout (speed does not depend on them).
"""
import argparse
import sys
import time

import torch

sys.path.insert(0, "scripts")
import fid_reference  # noqa: E402
import pytorch_fid.inception as fid_inception  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--num", type=int, default=200)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--resolution", type=int, default=32)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    state = fid_reference.random_state_dict(1234)
    fid_inception.load_state_dict_from_url = lambda *args, **kwargs: state
    model = fid_inception.InceptionV3([3]).eval()
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, [a.num, 3, a.resolution, a.resolution], generator=g, dtype=torch.uint8)
    with torch.no_grad():
        model(images[: a.batch].float() / 255)  # warm-up
        start = time.perf_counter()
        for i in range(0, a.num, a.batch):
            model(images[i : i + a.batch].float() / 255)
        secs = time.perf_counter() - start
    print(f"pytorch-fid {torch.__version__}: {a.num / secs:.1f} imgs/s ({a.num} images {a.resolution}x{a.resolution}, batch {a.batch}, {a.threads} threads)")


if __name__ == "__main__":
    main()
