#!/usr/bin/env python3
"""Convert the FID Inception-v3 weights to a labelgan extractor file.

    python tools/convert_inception.py pt_inception-2015-12-05-6726825d.pth inception_v3_fid.safetensors

The input is the state dict pytorch-fid (and torch-fidelity, clean-fid) use: the
TensorFlow 2015-12-05 Inception graph ported to PyTorch, 1008 classes. Download it
yourself (pytorch-fid prints its URL, FID_WEIGHTS_URL in pytorch_fid/inception.py);
this script reads a local file and writes every tensor under its own name as float32,
dropping BatchNorm's num_batches_tracked counters, with the metadata labelgan reads:

    labelgan_extractor = inception_v3_fid

Then `labelgan metrics --extractor inception_v3_fid.safetensors ...` computes FID, KID,
precision/recall on the 2048-d pool3 features and the Inception Score on the 1008-way
softmax. Needs torch and safetensors (pip install torch safetensors).
"""
import sys

import torch
from safetensors.torch import save_file


def convert(src, dst):
    state = torch.load(src, map_location="cpu", weights_only=True)
    if "state_dict" in state:
        state = state["state_dict"]
    out = {
        k: v.detach().to(torch.float32).contiguous()
        for k, v in state.items()
        if not k.endswith("num_batches_tracked")
    }
    if out.get("fc.weight") is None or out["fc.weight"].shape != (1008, 2048):
        raise SystemExit(f"{src}: no fc.weight [1008, 2048]: not the FID Inception-v3 state dict")
    save_file(out, dst, metadata={"labelgan_extractor": "inception_v3_fid"})
    print(f"wrote {dst}: {len(out)} tensors, {sum(v.numel() for v in out.values()):,} parameters")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    convert(sys.argv[1], sys.argv[2])
