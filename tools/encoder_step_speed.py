"""The encoder's stage (a) training step in PyTorch: labelgan's encoder
(`crates/inversion/src/encoder.rs`: a 3x3 stem of 32, per halving a residual block of two
3x3 convs with a 1x1 skip where the width changes, leaky ReLU 0.2, `1/sqrt(2)` join and
2x2 average pooling, widths 32, 64, 128, 128 at 64 px, a 1x1 conv to 32 and a linear
layer to `num_ws * w_dim` offsets from `w_avg`) on the official generator at the toy
sizes (64 px, z = w = 256, 4 mapping layers, channel base 1024, channel max 64): mixed
latents (probability 0.5), images with random noise and no gradient, latent MSE, Adam
5e-4. The counterpart of `cargo run --release --example encoder_speed`; prints one JSON line.

    python tools/encoder_step_speed.py --official PATH/TO/stylegan2-ada-pytorch [--threads 2] [--steps 10]
"""
import argparse, json, math, sys

p = argparse.ArgumentParser()
p.add_argument("--official", required=True)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--batch", type=int, default=16)
p.add_argument("--steps", type=int, default=10)
p.add_argument("--warmup", type=int, default=2)
a = p.parse_args()
sys.path.insert(0, a.official)
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from training.networks import Generator  # noqa: E402
from timing import seconds_per_step  # noqa: E402

torch.set_num_threads(a.threads)
torch.manual_seed(0)
G = Generator(z_dim=256, c_dim=0, w_dim=256, img_resolution=64, img_channels=3,
              mapping_kwargs=dict(num_layers=4),
              synthesis_kwargs=dict(channel_base=1024, channel_max=64, num_fp16_res=0, conv_clamp=None))
G = G.eval().requires_grad_(False)
num_ws, w_dim = G.num_ws, G.w_dim


class Block(nn.Module):
    def __init__(self, cin, c):
        super().__init__()
        self.conv0 = nn.Conv2d(cin, c, 3, padding=1)
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.skip = nn.Conv2d(cin, c, 1) if c != cin else None

    def forward(self, x):
        h = self.conv1(F.leaky_relu(self.conv0(x), 0.2))
        s = self.skip(x) if self.skip is not None else x
        return F.avg_pool2d(F.leaky_relu(h + s, 0.2) / math.sqrt(2), 2)


class Encoder(nn.Module):
    def __init__(self, widths=(32, 64, 128, 128), stem=32, head=32):
        super().__init__()
        self.stem = nn.Conv2d(3, stem, 3, padding=1)
        blocks, cin = [], stem
        for c in widths:
            blocks.append(Block(cin, c))
            cin = c
        self.blocks = nn.ModuleList(blocks)
        self.head_conv = nn.Conv2d(cin, head, 1)
        self.head_fc = nn.Linear(head * 16, num_ws * w_dim)
        self.register_buffer("w_avg", G.mapping.w_avg.clone())

    def forward(self, x):
        x = F.leaky_relu(self.stem(x), 0.2)
        for b in self.blocks:
            x = b(x)
        h = F.leaky_relu(self.head_conv(x), 0.2).flatten(1)
        return self.head_fc(h).view(-1, num_ws, w_dim) + self.w_avg


E = Encoder()
opt = torch.optim.Adam(E.parameters(), lr=5e-4)


def step(_i):
    n = a.batch
    with torch.no_grad():
        w = G.mapping(torch.randn(2 * n, 256), None)
        wa, wb = w[:n], w[n:]
        cut = torch.randint(1, num_ws, (n, 1, 1))
        mix = (torch.rand(n, 1, 1) < 0.5) & (torch.arange(num_ws).view(1, -1, 1) >= cut)
        ws = torch.where(mix, wb, wa)
        img = G.synthesis(ws, noise_mode="random")
    loss = (E(img) - ws).square().mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


s = seconds_per_step(step, a.steps, a.warmup)
print(json.dumps({"framework": "pytorch", "resolution": 64, "batch": a.batch, "steps": a.steps,
                  "threads": torch.get_num_threads(), "seconds_per_step": s, "images_per_second": a.batch / s}))
