"""Independent reference values for labelgan-metrics' tests (numpy + scipy).

Written from the published formulas, not from labelgan's code: FID with scipy's
general (non-symmetric) matrix square root, KID's unbiased MMD^2 by explicit loops
over pairs, precision/recall by brute-force distances and np.partition (as in
Kynkaanniemi et al.'s release), the Inception Score with scipy.stats.entropy.

    python3 -m venv /tmp/py && /tmp/py/bin/pip install numpy scipy
    /tmp/py/bin/python tools/metrics_reference.py

The feature sets come from an integer LCG, so the Rust tests build the
same ones; the printed values are pasted into crates/metrics/tests/reference.rs.
"""

import numpy as np
import scipy.linalg
import scipy.stats


def features(n, d, seed, shift):
    """n x d values of the LCG x <- (1664525 x + 1013904223) mod 2^32 from `seed`,
    row-major, each x / 2^32 + shift."""
    state, out = seed, []
    for _ in range(n * d):
        state = (1664525 * state + 1013904223) % 2**32
        out.append(state / 2**32 + shift)
    return np.array(out).reshape(n, d)


def fid(x, y):
    m1, m2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(root))


def kid_whole(x, y):
    d = x.shape[1]
    k = lambda a, b: (a @ b / d + 1) ** 3
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return float(xx + yy - 2 * xy)


def radii(x, k):
    d = scipy.spatial.distance.cdist(x, x, "sqeuclidean")
    return np.partition(d, k, axis=1)[:, k]


def covered(x, centres, r):
    d = scipy.spatial.distance.cdist(x, centres, "sqeuclidean")
    return float((d <= r[None, :]).any(axis=1).mean())


def precision_recall(real, fake, k):
    return covered(fake, real, radii(real, k)), covered(real, fake, radii(fake, k))


def inception_score(p, splits):
    scores = []
    n = len(p)
    for s in range(splits):
        part = p[s * n // splits:(s + 1) * n // splits]
        py = part.mean(0)
        scores.append(np.exp(np.mean([scipy.stats.entropy(row, py) for row in part])))
    return float(np.mean(scores)), float(np.std(scores))


if __name__ == "__main__":
    import scipy.spatial  # noqa: F401  (cdist)

    a, b = features(37, 5, 1, 0.0), features(23, 5, 2, 0.1)
    print(f"fid(a37, b23) = {fid(a, b)!r}")
    print(f"kid(a37, b23) = {kid_whole(a, b)!r}")
    print(f"kid(b23, a37) = {kid_whole(b, a)!r}")
    print(f"precision_recall(a37, b23, k=3) = {precision_recall(a, b, 3)!r}")
    print(f"precision_recall(a37, b23, k=1) = {precision_recall(a, b, 1)!r}")
    logits = features(50, 4, 3, 0.0) * 3
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    print(f"inception_score(softmax(3 lcg3 50x4), 10) = {inception_score(p, 10)!r}")
    print(f"inception_score(softmax(3 lcg3 50x4), 3) = {inception_score(p, 3)!r}")
    real = np.ones((100, 2)); real[:50, 0] = 2
    gen = np.ones((100, 2)) * 9; gen[50:, 0] = 2
    print(f"fid(compare_gan example) = {fid(real, gen)!r}")
