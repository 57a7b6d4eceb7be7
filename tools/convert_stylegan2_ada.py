#!/usr/bin/env python3
"""Convert an official StyleGAN2-ADA network pickle to a labelgan safetensors file.

The output holds the `G_ema` state dict under the official key names (float32, or
float16 with --half) and, in the safetensors metadata, `init_kwargs`: the generator's
constructor arguments as JSON, exactly as `G.init_kwargs`. labelgan reads the
architecture from the tensor shapes and the two settings shapes cannot tell (mapping
lr multiplier, conv_clamp) from `init_kwargs`.

The pickles embed the official classes, so the official repository must be importable:

    git clone https://github.com/NVlabs/stylegan2-ada-pytorch
    pip install torch safetensors numpy
    python tools/convert_stylegan2_ada.py ffhq.pkl ffhq.safetensors \
        --repo stylegan2-ada-pytorch --reference ffhq_ref.safetensors

Old TensorFlow pickles work too (the official `legacy.py` converts them on load; their
`conv_clamp` is none). `--reference` also writes `z` for a few seeds and the official
outputs (`ws`, `img`, psi 1, const noise) so that you can check labelgan against the
official code on your own model:

    labelgan generate --weights ffhq.safetensors --latents ffhq_ref.safetensors --out ours.safetensors
    python tools/convert_stylegan2_ada.py --compare ffhq_ref.safetensors ours.safetensors
"""
import argparse
import json
import os
import sys


def load_g_ema(pkl, repo):
    if repo:
        sys.path.insert(0, os.path.abspath(repo))
    try:
        import dnnlib  # noqa: F401  (the pickle needs it importable)
        import legacy
    except ImportError as e:
        sys.exit(f"error: cannot import the official stylegan2-ada-pytorch code ({e}); "
                 "pass --repo PATH_TO_CLONE")
    import dnnlib
    with dnnlib.util.open_url(pkl) as f:
        G = legacy.load_network_pkl(f)["G_ema"]
    return G.eval().requires_grad_(False).cpu()


def to_plain(x):
    """EasyDict and friends to plain JSON values."""
    if isinstance(x, dict):
        return {str(k): to_plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_plain(v) for v in x]
    return x


def convert(args):
    import torch
    from safetensors.torch import save_file

    G = load_g_ema(args.pkl, args.repo)
    dtype = torch.float16 if args.half else torch.float32
    sd = {k: v.detach().to(dtype).contiguous() for k, v in G.state_dict().items()}
    meta = {"init_kwargs": json.dumps(to_plain(G.init_kwargs))}
    save_file(sd, args.out, metadata=meta)
    print(f"wrote {len(sd)} tensors to {args.out}; init_kwargs = {meta['init_kwargs']}")

    if args.reference:
        torch.manual_seed(0)
        z = torch.randn([args.reference_count, G.z_dim])
        c = torch.zeros([args.reference_count, G.c_dim])
        if G.c_dim:
            c[:, 0] = 1
        G32 = G.float()
        with torch.no_grad():
            ws = G32.mapping(z, c, truncation_psi=1)
            img = G32.synthesis(ws, noise_mode="const", force_fp32=True)
        out = {"z": z.contiguous(), "ws": ws.contiguous(), "img": img.contiguous()}
        if G.c_dim:
            out["c"] = c.contiguous()
        # `labelgan generate --latents` takes z (and c) or ws, not both: keep ws apart.
        save_file({k: v for k, v in out.items() if k != "ws"}, args.reference)
        save_file({"ws": ws.contiguous(), "img": img.contiguous()},
                  args.reference.replace(".safetensors", "") + "_ws.safetensors")
        print(f"wrote reference outputs for {args.reference_count} latents to {args.reference}")


def compare(a, b):
    from safetensors.numpy import load_file
    ref, ours = load_file(a), load_file(b)
    import numpy as np
    for k in ("ws", "img"):
        if k in ref and k in ours:
            print(f"{k}: max abs error {float(np.abs(ref[k] - ours[k]).max()):.3e}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("pkl", nargs="?", help="official network pickle (path or URL)")
    p.add_argument("out", nargs="?", help="output .safetensors")
    p.add_argument("--repo", help="path to a clone of NVlabs/stylegan2-ada-pytorch")
    p.add_argument("--half", action="store_true", help="store float16 (half the size)")
    p.add_argument("--reference", help="also write reference z/img for a parity check here")
    p.add_argument("--reference-count", type=int, default=4)
    p.add_argument("--compare", nargs=2, metavar=("REF", "OURS"),
                   help="compare a --reference file with `labelgan generate --out` output")
    args = p.parse_args()
    if args.compare:
        compare(*args.compare)
    elif args.pkl and args.out:
        convert(args)
    else:
        p.error("give PKL OUT, or --compare REF OURS")


if __name__ == "__main__":
    main()
