"""Reference values for the FID Inception port: pytorch-fid's own InceptionV3 (pool3 block,
resize and normalisation included) run with seeded random weights on seeded random images.

Usage: python scripts/fid_reference.py OUT_DIR
Writes OUT_DIR/weights.pth (a state dict with torchvision's names, as the standard weights file)
and OUT_DIR/expected.pth ({"images": [N,3,H,W] in [0,1], "pool3": [N,2048], "logits": [N,1008]}).
The standard weights cannot be downloaded here, so pytorch-fid's loader is handed these instead;
everything else is pytorch-fid's code path. Needs the venv's torch 2.11.0 and pytorch-fid.
"""
import sys

import torch
import pytorch_fid.inception as fid_inception

assert torch.__version__.startswith("2.11.0"), torch.__version__


def random_state_dict(seed):
    """torchvision's Inception3 keys (the FID patches change forward passes, not parameters),
    with He-scaled conv weights and near-identity BN statistics so activations stay O(1)."""
    g = torch.Generator().manual_seed(seed)
    shapes = fid_inception._inception_v3(num_classes=1008, aux_logits=False, weights=None).state_dict()
    out = {}
    for name, t in shapes.items():
        if name.endswith("num_batches_tracked"):
            out[name] = t
        elif name.endswith("conv.weight"):
            fan_in = t[0].numel()
            out[name] = torch.randn(t.shape, generator=g) * (2.0 / fan_in) ** 0.5
        elif name.endswith("running_var") or name.endswith("bn.weight"):
            out[name] = 0.5 + torch.rand(t.shape, generator=g)
        elif name.endswith("running_mean") or name.endswith("bn.bias"):
            out[name] = 0.1 * torch.randn(t.shape, generator=g)
        else:  # fc.weight, fc.bias
            out[name] = 0.05 * torch.randn(t.shape, generator=g)
    return out


def main(out_dir):
    state = random_state_dict(1234)
    fid_inception.load_state_dict_from_url = lambda *args, **kwargs: state
    model = fid_inception.InceptionV3([fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    images = torch.rand([4, 3, 32, 32], generator=torch.Generator().manual_seed(99))
    with torch.no_grad():
        pool3 = model(images)[0].squeeze(-1).squeeze(-1)
    logits = pool3 @ state["fc.weight"].T
    torch.save(state, f"{out_dir}/weights.pth")
    torch.save({"images": images, "pool3": pool3, "logits": logits}, f"{out_dir}/expected.pth")


if __name__ == "__main__":
    main(sys.argv[1])
