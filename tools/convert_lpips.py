"""Convert LPIPS weights to one safetensors file that `labelgan-lpips` loads.

LPIPS = an ImageNet backbone (torchvision's vgg16, alexnet or squeezenet1_1) plus the
learned 1x1 "lin" weights that ship inside the PyPI `lpips` package
(lpips/weights/v0.1/{vgg,alex,squeeze}.pth). The output uses the lpips module's own
state-dict names: `scaling_layer.shift|scale`, `net.slice{k}.{index}...` (torchvision's
layer index kept), `lin{k}.model.1.weight`, with metadata `net`.

    pip install torch torchvision lpips safetensors
    # from files you have:
    python tools/convert_lpips.py --net vgg --backbone vgg16-397923af.pth --out lpips_vgg.safetensors
    # or let torchvision fetch the backbone (needs internet):
    python tools/convert_lpips.py --net vgg --download --out lpips_vgg.safetensors

`--lin` defaults to the weights inside the installed `lpips` package. `--check` then
compares the package's LPIPS with the converted weights on random images and prints
the distances, for a side-by-side check with `labelgan lpips --pairs`.
"""
import argparse, json, os, sys

import torch
from safetensors.torch import save_file

# torchvision `features` index -> LPIPS slice, per backbone (lpips/pretrained_networks.py).
SLICES = {
    "vgg": [(0, 4), (4, 9), (9, 16), (16, 23), (23, 30)],
    "alex": [(0, 2), (2, 5), (5, 8), (8, 10), (10, 12)],
    "squeeze": [(0, 2), (2, 5), (5, 8), (8, 10), (10, 11), (11, 12), (12, 13)],
}
TV_NAMES = {"vgg": "vgg16", "alex": "alexnet", "squeeze": "squeezenet1_1"}


def slice_of(net, index):
    for k, (a, b) in enumerate(SLICES[net], start=1):
        if a <= index < b:
            return k
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--net", choices=sorted(SLICES), required=True)
    p.add_argument("--backbone", help="torchvision state dict (.pth) of the backbone")
    p.add_argument("--download", action="store_true", help="fetch the ImageNet backbone with torchvision")
    p.add_argument("--lin", help="lin weights (.pth); default: the installed lpips package's v0.1 weights")
    p.add_argument("--out", required=True)
    p.add_argument("--check", action="store_true", help="print the package's distances on random images")
    a = p.parse_args()

    if a.backbone:
        sd = torch.load(a.backbone, map_location="cpu", weights_only=True)
    elif a.download:
        import torchvision
        sd = getattr(torchvision.models, TV_NAMES[a.net])(weights="DEFAULT").state_dict()
    else:
        sys.exit("error: give --backbone FILE or --download")
    if a.lin is None:
        import lpips
        a.lin = os.path.join(os.path.dirname(lpips.__file__), "weights", "v0.1", f"{a.net}.pth")
    lin = torch.load(a.lin, map_location="cpu", weights_only=True)

    out = {
        "scaling_layer.shift": torch.tensor([-.030, -.088, -.188]).reshape(1, 3, 1, 1),
        "scaling_layer.scale": torch.tensor([.458, .448, .450]).reshape(1, 3, 1, 1),
    }
    for key, t in sd.items():
        if not key.startswith("features."):
            continue  # classifier layers are not used
        rest = key[len("features."):]
        index = int(rest.split(".")[0])
        k = slice_of(a.net, index)
        if k is None:
            continue
        out[f"net.slice{k}.{rest}"] = t.float().contiguous()
    for key, t in lin.items():
        out[key] = t.float().contiguous()
    n_lin = len(SLICES[a.net])
    missing = [f"lin{k}.model.1.weight" for k in range(n_lin) if f"lin{k}.model.1.weight" not in out]
    if missing:
        sys.exit(f"error: {a.lin} lacks {missing}")
    save_file(out, a.out, metadata={"net": a.net, "format": "labelgan-lpips"})
    print(f"wrote {a.out}: {len(out)} tensors, net {a.net}")

    if a.check:
        import lpips
        m = lpips.LPIPS(net=a.net, pretrained=True, pnet_rand=True, verbose=False).eval()
        own = {k: v for k, v in out.items()}
        missing, unexpected = m.load_state_dict(own, strict=False)
        missing = [k for k in missing if not k.startswith("lins.")]
        if missing:
            sys.exit(f"error: the package model lacks {missing}")
        torch.manual_seed(0)
        x0, x1 = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
        with torch.no_grad():
            d = m(x0, x1).flatten()
        pairs = a.out + ".pairs.safetensors"
        save_file({"x0": x0, "x1": x1, "distance": d}, pairs)
        print(json.dumps({"pairs": pairs, "distance": d.tolist()}))


if __name__ == "__main__":
    main()
