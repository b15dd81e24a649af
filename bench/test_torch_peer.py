#!/usr/bin/python3
"""Tests of the time-to-accuracy peer's parts (run by ctest as BenchPeer.*; exit 77 = skipped
where /usr/bin/python3 has no torch):
- torch_models builds augflow's networks from their specs: parameter counts worked out by hand
  from model/config.cpp's presets, the stochastic-depth survivals, spec errors;
- peer_training.augment_batch gives, for every sample, a crop of the zero-padded image at an
  offset within the padding, mirrored or not, and both occur;
- the schedules' end points (OneCycleLR's defaults).
No timing: everything here is deterministic and takes about a second.
"""

import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import torch
except ImportError:
    print("torch is not importable by %s: skipped" % sys.executable)
    sys.exit(77)

import peer_training  # noqa: E402
import torch_models  # noqa: E402

FAILURES = []


def check(condition, what):
    if not condition:
        FAILURES.append(what)
        print("FAIL: %s" % what)


def test_models():
    # cnn-small, 1x28x28: conv 1->32 k3 (32*9+32) + bn (2*32) + conv 32->64 k3 (64*32*9+64)
    # + bn (2*64) + fc 64*7*7->128 (3136*128+128) + fc 128->10 (1290).
    cnn = 320 + 64 + 18496 + 128 + 401536 + 1290
    count = torch_models.parameter_count(torch_models.build_model("cnn-small", (1, 28, 28), 10))
    check(count == cnn, "cnn-small on 1x28x28: %d parameters, expected %d" % (count, cnn))
    # On 3x32x32: the first conv has 3 input channels, the fc 64*8*8 inputs.
    cnn3 = (32 * 27 + 32) + 64 + 18496 + 128 + (4096 * 128 + 128) + 1290
    count = torch_models.parameter_count(torch_models.build_model("cnn-small", (3, 32, 32), 10))
    check(count == cnn3, "cnn-small on 3x32x32: %d parameters, expected %d" % (count, cnn3))
    # resnet-mini: stem conv 1->16 (144+16) + bn (32); res16: two 16->16 convs without bias
    # (2*2304) + 2 bn (64); res32s2: 16->32 (4608) + 32->32 (9216) + 2 bn (128) + projection
    # 1x1 16->32 (512) + bn (64); res64s2: 32->64 (18432) + 64->64 (36864) + 2 bn (256) +
    # projection 32->64 (2048) + bn (128); fc 64->10 (650).
    res = (160 + 32) + (4608 + 64) + (4608 + 9216 + 128 + 512 + 64) + \
        (18432 + 36864 + 256 + 2048 + 128) + 650
    net = torch_models.build_model("resnet-mini", (1, 28, 28), 10)
    count = torch_models.parameter_count(net)
    check(count == res, "resnet-mini: %d parameters, expected %d" % (count, res))
    survivals = [round(m.survival, 6) for m in net if isinstance(m, torch_models.Residual)]
    check(survivals == [round(1 - 0.2 / 3, 6), round(1 - 0.4 / 3, 6), 0.8],
          "resnet-mini survivals %s, expected 1 - i/3 * 0.2" % survivals)
    # b0 blocks have biases and no batch norm; dc marks the next fc.
    net = torch_models.build_model("conv8k3p1-res8b0-dc0.5-fc10", (1, 8, 8), 10)
    check(net[1].conv1.bias is not None and isinstance(net[1].bn1, torch.nn.Identity),
          "res8b0: convs with bias, no batch norm")
    check(isinstance(net[-1], torch_models.DropConnectLinear) and net[-1].p == 0.5,
          "dc0.5-fc10: a DropConnectLinear with p 0.5")
    with torch.no_grad():
        out = net.eval()(torch.zeros(2, 1, 8, 8))
    check(tuple(out.shape) == (2, 10), "output shape %s" % (tuple(out.shape),))
    for bad, words in (("conv32x", "token 0"), ("fc5", "10 classes"), ("sd0.5-fc10", "res block"),
                       ("pool4-pool4-pool4-fc10", "empty"), ('{"version":1}', "compact form")):
        try:
            torch_models.build_model(bad, (1, 28, 28), 10)
            check(False, "%s: no SpecError" % bad)
        except torch_models.SpecError as e:
            check(words in str(e), "%s: the message '%s' does not say '%s'" % (bad, e, words))


def test_augment():
    gen = torch.Generator().manual_seed(3)
    x = torch.randint(1, 256, (64, 2, 6, 5), dtype=torch.uint8, generator=gen)
    pad = 2
    out = peer_training.augment_batch(x, pad, gen)
    check(out.shape == x.shape and out.dtype == torch.uint8, "augment_batch keeps shape and type")
    padded = torch.nn.functional.pad(x, (pad,) * 4)
    flips = set()
    for i in range(len(x)):
        found = None
        for dy in range(2 * pad + 1):
            for dx in range(2 * pad + 1):
                crop = padded[i, :, dy:dy + 6, dx:dx + 5]
                for flip in (False, True):
                    if torch.equal(crop.flip(2) if flip else crop, out[i]):
                        found = flip
        check(found is not None, "sample %d is not a (mirrored) crop of its padded image" % i)
        flips.add(found)
    check(flips == {False, True}, "64 samples: both mirrored and plain crops occur")


def test_schedules():
    lr = 0.01
    for p, expected in ((0.0, lr / 25), (0.3, lr), (1.0, lr / 25 / 1e4)):
        got, _ = peer_training.onecycle(p, lr)
        check(math.isclose(got, expected, rel_tol=1e-9), "onecycle(%g) = %g, expected %g" % (
            p, got, expected))
    check(math.isclose(peer_training.onecycle(0.3, lr)[1], 0.85), "onecycle momentum 0.85 at the peak")
    check(math.isclose(peer_training.cosine(0.5, lr, 0)[0], lr / 2), "cosine(0.5) = lr/2")
    check(math.isclose(peer_training.cosine(0.05, lr, 0.1)[0],
                       lr * 0.5 * (1 + math.cos(math.pi * 0.05)) / 2), "cosine warm-up factor")


def main():
    tests = {"models": test_models, "augment": test_augment, "schedules": test_schedules}
    names = sys.argv[1:] or list(tests)
    for name in names:
        tests[name]()
    if FAILURES:
        print("%d check(s) failed" % len(FAILURES))
        return 1
    print("ok: %s" % ", ".join(names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
