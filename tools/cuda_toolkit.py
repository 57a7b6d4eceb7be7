#!/usr/bin/env python3
"""Fetches the pieces of the CUDA 13.0 toolkit that labelgan's cuda build needs from
PyPI's NVIDIA wheels, checks each against its pinned sha256, and unpacks them (file
modes kept, so nvcc stays executable) with nothing but the standard library: no pip,
no venv, no system CUDA.

    python3 tools/cuda_toolkit.py DEST      # prints the toolkit root (CUDA_HOME)

Pinned to one release (cuda-toolkit 13.0.2's components): the GPU machines run driver
580 (CUDA 13.0), and PTX from a newer nvcc does not load there. Downloads are cached
in DEST/wheels; a rerun with them in place fetches nothing.
"""

import hashlib
import os
import sys
import urllib.request
import zipfile

FILES = "https://files.pythonhosted.org/packages/"
WHEELS = [
    # (path under FILES, sha256)
    ("e7/44/423ac00af4dd95a5aeb27207e2c0d9b7118702149bf4704c3ddb55bb7429/nvidia_cublas-13.1.0.3-py3-none-manylinux_2_27_x86_64.whl",
     "ee8722c1f0145ab246bccb9e452153b5e0515fd094c3678df50b2a0888b8b171"),
    ("ab/fb/0384bb2129bed6b1b39f8e44471c615ab5ab29b7e55817538a1d390d8f84/nvidia_cuda_cccl-13.0.85-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
     "e0da7ad981f3a8aff08241b5bfc1af868742a63e2762f53a5171c492ef242649"),
    ("05/69/a1ec4d9f0747d85964206feb47bf359f48a2d6af74c0add8abba6efe3dda/nvidia_cuda_crt-13.0.88-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
     "2c8043c7c9e02492716426e9919fc78d2c5b3b2a7a768a88e952676b08aa55a4"),
    ("71/8b/a546c12881fffeba927d810598987df25d74b8b241788c7db8dfc93b0173/nvidia_cuda_nvcc-13.0.88-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
     "56fe502eb77625a12f25172caa3cdddb4e4c8ba2c8c17dba44b164761b380f03"),
    ("c3/68/483a78f5e8f31b08fb1bb671559968c0ca3a065ac7acabfc7cee55214fd6/nvidia_cuda_nvrtc-13.0.88-py3-none-manylinux2010_x86_64.manylinux_2_12_x86_64.whl",
     "ad9b6d2ead2435f11cbb6868809d2adeeee302e9bb94bcf0539c7a40d80e8575"),
    ("2e/24/d1558f3b68b1d26e706813b1d10aa1d785e4698c425af8db8edc3dced472/nvidia_cuda_runtime-13.0.96-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
     "7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548"),
    ("a5/9f/be0a41ca4a4917abf5cb9ae0daff1a6060cc5de950aec0396de9f3b52bc5/nvidia_curand-10.4.0.35-py3-none-manylinux_2_27_x86_64.whl",
     "1aee33a5da6e1db083fe2b90082def8915f30f3248d5896bcec36a579d941bfc"),
    ("15/b0/ee41e6d1108d959b5097163e7190c2d0f7857dea75606ce358f0275891b4/nvidia_nvvm-13.0.88-py3-none-manylinux2010_x86_64.manylinux_2_12_x86_64.whl",
     "c5f41ffeb6466944a026dfa5317d7d85355c119bbec279205d22f1869d1054e0"),
]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(rel, digest, cache):
    path = os.path.join(cache, rel.rsplit("/", 1)[1])
    if os.path.exists(path) and sha256(path) == digest:
        return path
    tmp = path + ".part"
    for attempt in range(3):
        try:
            with urllib.request.urlopen(FILES + rel, timeout=120) as r, open(tmp, "wb") as f:
                while block := r.read(1 << 20):
                    f.write(block)
            break
        except OSError as e:
            if attempt == 2:
                sys.exit(f"cuda_toolkit: cannot download {FILES + rel}: {e}")
    got = sha256(tmp)
    if got != digest:
        os.remove(tmp)
        sys.exit(f"cuda_toolkit: {os.path.basename(path)} has sha256 {got}, expected {digest}")
    os.replace(tmp, path)
    return path


def unpack(wheel, dest):
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            if ".dist-info/" in info.filename:
                continue
            out = z.extract(info, dest)
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(out, mode)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: cuda_toolkit.py DEST")
    dest = os.path.abspath(sys.argv[1])
    cache, site = os.path.join(dest, "wheels"), os.path.join(dest, "site")
    os.makedirs(cache, exist_ok=True)
    for rel, digest in WHEELS:
        unpack(fetch(rel, digest, cache), site)
    root = os.path.join(site, "nvidia", "cu13")
    if not os.access(os.path.join(root, "bin", "nvcc"), os.X_OK):
        sys.exit(f"cuda_toolkit: no executable nvcc under {root}/bin after unpacking")
    print(root)


if __name__ == "__main__":
    main()
