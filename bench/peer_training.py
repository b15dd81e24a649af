"""Training helpers of the time-to-accuracy peer (bench/torch_time_to_accuracy.py), apart
from its command line so that bench/test_torch_peer.py can test them: the batched
augmentation of in-memory images and the learning-rate schedules evaluated at a progress p.
"""

import math

import torch
from torch import nn


def augment_batch(x, pad, gen):
    """Random crop of the zero-padded images + horizontal flip (p = 0.5), per sample, on a
    uint8 N x C x H x W batch in one go."""
    n, _, h, w = x.shape
    padded = nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    cols = dx[:, None] + torch.arange(w)[None, :]
    cols = torch.where(flip[:, None], cols.flip(1), cols)  # a flipped crop reads its columns backwards
    rows = dy[:, None] + torch.arange(h)[None, :]
    nhwc = padded.permute(0, 2, 3, 1)
    out = nhwc[torch.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2)


class MemoryBatches:
    """Shuffled, augmented batches of an in-memory uint8 data set (the last one partial)."""

    def __init__(self, x, y, batch, pad, seed):
        self.x, self.y, self.batch, self.pad = x, y, batch, pad
        self.gen = torch.Generator().manual_seed(seed)

    def __len__(self):
        return (len(self.y) + self.batch - 1) // self.batch

    def __iter__(self):
        order = torch.randperm(len(self.y), generator=self.gen)
        for i in range(0, len(order), self.batch):
            idx = order[i:i + self.batch]
            xb = augment_batch(self.x[idx], self.pad, self.gen)
            yield xb.float().div_(255), self.y[idx]


def onecycle(p, lr):
    """OneCycleLR's defaults (pct_start 0.3, div_factor 25, final_div_factor 1e4, cosine
    annealing, momentum 0.95 -> 0.85 -> 0.95) at progress p in [0, 1]: (lr, momentum)."""
    start, end, warm = lr / 25, lr / 25 / 1e4, 0.3

    def cos(a, b, t):
        return b + (a - b) / 2 * (1 + math.cos(math.pi * t))

    if p < warm:
        t = p / warm
        return cos(start, lr, t), cos(0.95, 0.85, t)
    t = (p - warm) / (1 - warm)
    return cos(lr, end, t), cos(0.85, 0.95, t)


def cosine(p, lr, warmup):
    factor = min(1.0, p / warmup) if warmup > 0 else 1.0
    return lr * factor * (1 + math.cos(math.pi * p)) / 2, None


def set_rate(optimizer, lr, momentum):
    for group in optimizer.param_groups:
        group["lr"] = lr
        if momentum is None:
            continue
        if "betas" in group:
            group["betas"] = (momentum, group["betas"][1])
        elif group.get("momentum", 0) > 0:
            group["momentum"] = momentum
