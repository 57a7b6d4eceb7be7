"""The Compare GAN CIFAR ResNet of `crates/gan/src/resnet_cifar.rs`, trained in PyTorch
for speed: the same layers and widths (G: dense to 4x4, three up-blocks with
class-conditional batch norm, BN-ReLU-conv-tanh; D: two down-blocks and two plain
blocks with spectral norm, ReLU, sum over space, a dense logit plus a projection), the
hinge loss, Adam 2e-4 (0.5, 0.999), one D step per G step, on random real images.
The counterpart of `cargo run --release --example compare_gan_speed`; prints one JSON line.

    pip install torch
    python tools/compare_gan_speed.py [--threads 2] [--batch 64] [--g-width 256] [--d-width 128]
"""
import argparse, json
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import spectral_norm
from timing import seconds_per_step

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=2)
p.add_argument("--batch", type=int, default=64)
p.add_argument("--g-width", type=int, default=256)
p.add_argument("--d-width", type=int, default=128)
p.add_argument("--z-dim", type=int, default=128)
p.add_argument("--classes", type=int, default=10)
p.add_argument("--steps", type=int, default=10)
p.add_argument("--warmup", type=int, default=2)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)


class CondBN(nn.Module):
    """Batch norm without its own affine; gamma = 1 + y W, beta = y W'."""

    def __init__(self, c, k):
        super().__init__()
        self.bn = nn.BatchNorm2d(c, affine=False)
        self.gamma = nn.Linear(k, c, bias=False)
        self.beta = nn.Linear(k, c, bias=False)
        nn.init.zeros_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, x, y):
        g = 1 + self.gamma(y)
        return self.bn(x) * g[:, :, None, None] + self.beta(y)[:, :, None, None]


class Up(nn.Module):
    def __init__(self, c, k):
        super().__init__()
        self.n1, self.n2 = CondBN(c, k), CondBN(c, k)
        self.c1 = nn.Conv2d(c, c, 3, padding=1)
        self.c2 = nn.Conv2d(c, c, 3, padding=1)
        self.sc = nn.Conv2d(c, c, 1)

    def forward(self, x, y):
        h = F.interpolate(F.relu(self.n1(x, y)), scale_factor=2, mode="nearest")
        h = self.c2(F.relu(self.n2(self.c1(h), y)))
        return h + self.sc(F.interpolate(x, scale_factor=2, mode="nearest"))


class G(nn.Module):
    def __init__(self, z, c, k):
        super().__init__()
        self.c = c
        self.dense = nn.Linear(z, 16 * c)
        self.blocks = nn.ModuleList([Up(c, k) for _ in range(3)])
        self.norm = CondBN(c, k)
        self.out = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, z, y):
        h = self.dense(z).view(-1, self.c, 4, 4)
        for b in self.blocks:
            h = b(h, y)
        return torch.tanh(self.out(F.relu(self.norm(h, y))))


class Down(nn.Module):
    def __init__(self, cin, c, downsample, first):
        super().__init__()
        self.c1 = spectral_norm(nn.Conv2d(cin, c, 3, padding=1))
        self.c2 = spectral_norm(nn.Conv2d(c, c, 3, padding=1))
        self.sc = spectral_norm(nn.Conv2d(cin, c, 1)) if downsample else None
        self.down, self.first = downsample, first

    def forward(self, x):
        h = x if self.first else F.relu(x)
        h = self.c2(F.relu(self.c1(h)))
        if self.down:
            h = F.avg_pool2d(h, 2)
        if self.sc is None:
            s = x
        elif self.first:
            s = self.sc(F.avg_pool2d(x, 2))
        else:
            s = F.avg_pool2d(self.sc(x), 2)
        return h + s


class D(nn.Module):
    def __init__(self, c, k):
        super().__init__()
        self.blocks = nn.ModuleList([Down(3 if i == 0 else c, c, i < 2, i == 0) for i in range(4)])
        self.dense = spectral_norm(nn.Linear(c, 1))
        self.proj = spectral_norm(nn.Linear(k, c, bias=False))

    def forward(self, x, y):
        h = x
        for b in self.blocks:
            h = b(h)
        f = F.relu(h).sum((2, 3))
        return self.dense(f).squeeze(1) + (self.proj(y) * f).sum(1)


g, d = G(a.z_dim, a.g_width, a.classes), D(a.d_width, a.classes)
og = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999))
od = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
n = a.batch
real = torch.tanh(torch.randn(n, 3, 32, 32))
y = F.one_hot(torch.arange(n) % a.classes, a.classes).float()


def step(_i):
    z = torch.randn(n, a.z_dim)
    fake = g(z, y).detach()
    loss_d = F.relu(1 - d(real, y)).mean() + F.relu(1 + d(fake, y)).mean()
    od.zero_grad(set_to_none=True)
    loss_d.backward()
    od.step()
    z = torch.randn(n, a.z_dim)
    loss_g = -d(g(z, y), y).mean()
    og.zero_grad(set_to_none=True)
    loss_g.backward()
    og.step()


s = seconds_per_step(step, a.steps, a.warmup) * a.steps
print(json.dumps({
    "framework": f"PyTorch {torch.__version__}",
    "architecture": "ResnetCifar",
    "batch": n,
    "g_width": a.g_width,
    "d_width": a.d_width,
    "threads": a.threads,
    "steps": a.steps,
    "seconds_per_step": s / a.steps,
    "images_per_second": a.steps * n / s,
}))
