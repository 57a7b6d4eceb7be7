"""The official stylegan2-ada-pytorch generator's forward time, fp32, noise_mode='const',
random weights: the counterpart of `cargo run --release --example generator_speed`.
Prints one JSON line (seconds per image, median of --repeats timed runs after a warm-up).

    python tools/generator_speed.py --official PATH/TO/stylegan2-ada-pytorch \
        [--resolution 256] [--channel-base 16384] [--batch 1] [--device cpu|cuda] [--threads 2]

PATH is a checkout of https://github.com/NVlabs/stylegan2-ada-pytorch (not shipped
here); its `training/networks.py` is imported as it is. On a GPU its custom CUDA ops
are compiled at the first call when the machine can (nvcc, ninja); otherwise it falls
back to its reference ops, and the JSON says which ran.
"""
import argparse, json, sys

p = argparse.ArgumentParser()
p.add_argument("--official", required=True)
p.add_argument("--resolution", type=int, default=256)
p.add_argument("--channel-base", type=int, default=16384)
p.add_argument("--batch", type=int, default=1)
p.add_argument("--repeats", type=int, default=5)
p.add_argument("--device", default="cpu")
p.add_argument("--threads", type=int, default=2)
a = p.parse_args()
sys.path.insert(0, a.official)
import torch  # noqa: E402
from training.networks import Generator  # noqa: E402
from torch_utils.ops import bias_act, upfirdn2d  # noqa: E402
from timing import median_seconds  # noqa: E402

torch.set_num_threads(a.threads)
torch.manual_seed(0)
dev = torch.device(a.device)
if dev.type == "cuda":
    # fp32 as labelgan computes it: no TF32 shortcuts in convolutions or matmuls.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
g = Generator(
    z_dim=512, c_dim=0, w_dim=512, img_resolution=a.resolution, img_channels=3,
    synthesis_kwargs=dict(channel_base=a.channel_base, channel_max=512, num_fp16_res=0, conv_clamp=None),
).eval().requires_grad_(False).to(dev)
z = torch.randn(a.batch, 512, device=dev)
sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)


def step():
    with torch.no_grad():
        img = g(z, None, noise_mode="const")
    sync()
    return img


s = median_seconds(step, a.repeats)
print(json.dumps({
    "impl": "stylegan2-ada-pytorch", "device": a.device, "resolution": a.resolution,
    "channel_base": a.channel_base, "batch": a.batch, "threads": torch.get_num_threads(),
    "custom_ops": bool(getattr(bias_act, "_plugin", None)) and bool(getattr(upfirdn2d, "_plugin", None)),
    "s_per_image": round(s / a.batch, 5),
}))
