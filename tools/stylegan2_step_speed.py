"""StyleGAN2 training steps in PyTorch with the official stylegan2-ada-pytorch code
(`training/networks.py` and `training/loss.py` as they are, fp32, no augmentation, no
path-length regularisation): per step Gmain, Dmain, Dreg every `--r1-interval` steps
(gain = interval, lazy R1), and the G EMA update, Adam with the official lazy-regularisation
ratio. The counterpart of

    cargo run --release --example compare_gan_speed -- --config configs/stylegan2/toy64.toml --steps 16

at the same sizes (the toy generator: 64 px, z = w = 256, 4 mapping layers, channel
base 1024, channel max 64, batch 16). Prints one JSON line.

    python tools/stylegan2_step_speed.py --official PATH/TO/stylegan2-ada-pytorch [--threads 2] [--steps 16]
"""
import argparse, copy, json, sys

p = argparse.ArgumentParser()
p.add_argument("--official", required=True)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--resolution", type=int, default=64)
p.add_argument("--batch", type=int, default=16)
p.add_argument("--channel-base", type=int, default=1024)
p.add_argument("--channel-max", type=int, default=64)
p.add_argument("--steps", type=int, default=16)
p.add_argument("--warmup", type=int, default=2)
p.add_argument("--r1-interval", type=int, default=16)
a = p.parse_args()
sys.path.insert(0, a.official)
import torch  # noqa: E402
from training.networks import Generator, Discriminator  # noqa: E402
from training.loss import StyleGAN2Loss  # noqa: E402
from timing import seconds_per_step  # noqa: E402

torch.set_num_threads(a.threads)
torch.manual_seed(0)
dev = torch.device("cpu")
common = dict(channel_base=a.channel_base, channel_max=a.channel_max, num_fp16_res=0, conv_clamp=None)
G = Generator(z_dim=256, c_dim=0, w_dim=256, img_resolution=a.resolution, img_channels=3,
              mapping_kwargs=dict(num_layers=4), synthesis_kwargs=common).train().requires_grad_(False)
D = Discriminator(c_dim=0, img_resolution=a.resolution, img_channels=3,
                  epilogue_kwargs=dict(mbstd_group_size=4), **common).train().requires_grad_(False)
G_ema = copy.deepcopy(G).eval()
gamma = 0.0002 * a.resolution ** 2 / a.batch
loss = StyleGAN2Loss(dev, G.mapping, G.synthesis, D, r1_gamma=gamma, pl_weight=0, style_mixing_prob=0.9)
ratio = a.r1_interval / (a.r1_interval + 1)
opt_g = torch.optim.Adam(G.parameters(), lr=0.0025, betas=(0.0, 0.99), eps=1e-8)
opt_d = torch.optim.Adam(D.parameters(), lr=0.0025 * ratio, betas=(0.0, 0.99 ** ratio), eps=1e-8)
real = torch.rand(a.batch, 3, a.resolution, a.resolution) * 2 - 1
c = torch.zeros(a.batch, 0)
ema_nimg = 5000  # ema_kimg = batch * 10 / 32 at batch 16


def phase(module, opt, name, gain):
    opt.zero_grad(set_to_none=True)
    module.requires_grad_(True)
    z = torch.randn(a.batch, 256)
    loss.accumulate_gradients(phase=name, real_img=real, real_c=c, gen_z=z, gen_c=c, sync=True, gain=gain)
    module.requires_grad_(False)
    for p_ in module.parameters():
        if p_.grad is not None:
            torch.nan_to_num(p_.grad, nan=0, posinf=1e5, neginf=-1e5, out=p_.grad)
    opt.step()


def step(i):
    phase(G, opt_g, "Gmain", 1)
    phase(D, opt_d, "Dmain", 1)
    if i % a.r1_interval == 0:
        phase(D, opt_d, "Dreg", a.r1_interval)
    beta = 0.5 ** (a.batch / ema_nimg)
    with torch.no_grad():
        for pe, p_ in zip(G_ema.parameters(), G.parameters()):
            pe.copy_(p_.lerp(pe, beta))
        for be, b in zip(G_ema.buffers(), G.buffers()):
            be.copy_(b)


s = seconds_per_step(step, a.steps, a.warmup) * a.steps  # R1 at i = 0 of the timed steps
print(json.dumps({
    "framework": "stylegan2-ada-pytorch", "resolution": a.resolution, "batch": a.batch,
    "channel_base": a.channel_base, "channel_max": a.channel_max, "steps": a.steps,
    "r1_interval": a.r1_interval, "threads": torch.get_num_threads(),
    "seconds_per_step": s / a.steps, "images_per_second": a.steps * a.batch / s,
}))
