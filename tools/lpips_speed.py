"""LPIPS-VGG forward + backward with respect to the input, 256x256, batch 1, in PyTorch
with the `lpips` package (random backbone: pnet_rand=True, so nothing is downloaded;
the lin weights ship inside the package). The counterpart of
`cargo run --release --example lpips_speed`. Prints one JSON line.

    pip install torch lpips
    python tools/lpips_speed.py [--threads 2] [--size 256] [--device cuda]
"""
import argparse, json
import torch, lpips
from timing import median_seconds

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=2)
p.add_argument("--size", type=int, default=256)
p.add_argument("--repeats", type=int, default=5)
p.add_argument("--device", default="cpu")
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
dev = torch.device(a.device)
m = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False).eval().to(dev)
x0 = (torch.rand(1, 3, a.size, a.size) * 2 - 1).to(dev)
x1 = (torch.rand(1, 3, a.size, a.size) * 2 - 1).to(dev)
sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

def step():
    x = x0.clone().requires_grad_(True)
    m(x, x1).sum().backward()
    sync()
    return x.grad

s = median_seconds(step, a.repeats)
print(json.dumps({"impl": "pytorch-lpips", "device": a.device, "size": a.size, "threads": torch.get_num_threads(),
                  "s_fwd_bwd": round(s, 4)}))
