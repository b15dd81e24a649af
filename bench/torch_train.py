#!/usr/bin/python3
"""Peer benchmark: PyTorch CPU training and inference throughput.

Measures the same work as `augflow bench train`: training steps (zero_grad,
forward, cross-entropy loss, backward, Adam step) and inference (forward in
eval mode under torch.no_grad()) on random 1x28x28 inputs with 10 classes
(the Fashion-MNIST shape), for the same architectures as augflow's presets.
Both memory layouts are measured (contiguous and channels_last, a fresh model
each) and torch's figures are those of its better layout, for training and for
inference separately. See bench/compare_train.sh.

Needs Debian's python3-torch, which is importable only from the system
interpreter, hence the /usr/bin/python3 shebang. Debian's torch calls
whichever libblas.so.3 the system's alternatives select; the reference BLAS
makes the linear layers about 5x slower, so this script refuses to run unless
OpenBLAS is selected (and loaded).

Usage:
  /usr/bin/python3 bench/torch_train.py [--model cnn-small|resnet-mini|mlp|twolayer]
      [--batch 128] [--threads 2] [--steps 50] [--json FILE]
  /usr/bin/python3 bench/torch_train.py --check-blas   (only the BLAS check)
"""

import argparse
import json
import os
import statistics
import sys
import time

from peer_common import blas_summary, check_blas

MODELS = ("cnn-small", "resnet-mini", "mlp", "twolayer")
CLASSES = 10
INPUT_SHAPE = (1, 28, 28)
WARMUP_STEPS = 5
REPEATS = 3



def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="cnn-small", choices=MODELS)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=50,
                        help="timed steps per repeat, for training and for inference "
                             "(after %d warm-up steps; median of %d repeats)" % (
                             WARMUP_STEPS, REPEATS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write results as JSON to this file")
    parser.add_argument("--check-blas", action="store_true",
                        help="only check that torch runs on OpenBLAS (exit 1 if not)")
    args = parser.parse_args()
    if args.batch < 1 or args.threads < 1 or args.steps < 1:
        parser.error("--batch, --threads and --steps must be >= 1")
    return args


ARGS = parse_args()

# OpenBLAS (pthread build) reads its thread count when the library is loaded,
# i.e. on `import torch`, and torch.set_num_threads() does not change it for
# Debian's torch (built with BLAS_INFO=generic). Give it the same count as
# torch's own (OpenMP) threads unless the caller chose one.
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(ARGS.threads))

try:
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover - environment problem
    sys.stderr.write(
        "torch_train.py: cannot import torch (%s).\n"
        "Run it with /usr/bin/python3 (Debian's interpreter) and install the\n"
        "peer with: apt-get install python3-torch  (as root; the project's\n"
        "scripts/deps.sh installs python3-torchvision, which pulls it in)\n" % exc)
    sys.exit(1)

import torch_models  # noqa: E402  (imports torch: after OPENBLAS_NUM_THREADS is set)


# --- models -------------------------------------------------------------------

def build_model(name):
    """The same layers as augflow's preset `name` (model/config.cpp), C = 10, built from
    the preset's spec by torch_models.py (shared with the time-to-accuracy peer)."""
    return torch_models.build_model(name, INPUT_SHAPE, CLASSES)


def forward_macs(model):
    """Forward multiply-adds per sample of the conv and linear layers.

    Analytic: a Conv2d layer does, for each output element (out_channels x
    H_out x W_out), one dot product of length in_channels/groups x kH x kW;
    a Linear layer does in_features x out_features. Biases, batch norm, ReLU,
    pooling, dropout and the loss are not counted. The output sizes H_out x
    W_out are read off a shape-only forward of one sample (forward hooks);
    for cnn-small this gives 32*28*28*9 + 64*14*14*288 + 3136*128 + 128*10
    = 4,241,152 multiply-adds per sample.
    """
    macs = []

    def hook(module, _inputs, output):
        if isinstance(module, nn.Conv2d):
            per_output = (module.in_channels // module.groups) * \
                module.kernel_size[0] * module.kernel_size[1]
            macs.append(output[0].numel() * per_output)  # output[0]: one sample
        elif isinstance(module, nn.Linear):
            macs.append(module.in_features * module.out_features)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *INPUT_SHAPE))
    model.train(was_training)
    for h in handles:
        h.remove()
    return sum(macs)


# --- timing -------------------------------------------------------------------

def train_steps(model, loss_fn, optimizer, x, y, steps):
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
    elapsed = time.perf_counter() - start
    if not torch.isfinite(loss):
        sys.stderr.write("torch_train.py: warning: non-finite loss %s\n" % loss.item())
    return elapsed


def infer_steps(model, x, steps):
    model.eval()
    with torch.no_grad():
        start = time.perf_counter()
        for _ in range(steps):
            model(x)
        return time.perf_counter() - start


def main():
    args = ARGS
    torch.set_num_threads(args.threads)
    blas = check_blas(__file__)
    if args.check_blas:
        print("BLAS: %s" % blas_summary(blas))
        return 0

    torch.manual_seed(args.seed)
    model = build_model(args.model)
    macs = forward_macs(model)
    # Training = forward + backward, the backward counted as twice the forward
    # (gradients w.r.t. the inputs and w.r.t. the weights, one GEMM each), so
    # 3 x forward; x2 flops per multiply-add. (The first layer's input gradient
    # is not actually computed, so this slightly overstates torch's work; the
    # same convention is applied to augflow.)
    train_flops_per_sample = 2 * 3 * macs
    x0 = torch.randn(args.batch, *INPUT_SHAPE)
    y = torch.randint(0, CLASSES, (args.batch,))
    loss_fn = nn.CrossEntropyLoss()

    print("torch training benchmark")
    print("  torch %s, python %s, %d threads (torch.get_num_threads() = %d), mkldnn %s" % (
        torch.__version__, sys.version.split()[0], args.threads, torch.get_num_threads(),
        "on" if torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
        else "off"))
    print("  BLAS: %s" % blas_summary(blas))
    print("  loaded: %s" % ", ".join(blas["loaded"]))
    print("  model %s: %d parameters, %.2f M forward multiply-adds/sample" % (
        args.model, sum(p.numel() for p in model.parameters()), macs / 1e6))
    for line in repr(model).splitlines()[1:-1]:
        print("    %s" % line.strip())
    print("  batch %d, random %s inputs, %d classes, CrossEntropyLoss, Adam(lr=1e-3)" % (
        args.batch, "x".join(map(str, INPUT_SHAPE)), CLASSES))
    print("  %d warm-up steps, then %d repeats of %d timed steps (median), in each memory "
          "layout; torch's figures are its better layout's" % (WARMUP_STEPS, REPEATS, args.steps))

    # Both memory layouts: torch's oneDNN (mkldnn) convolutions can be several times faster
    # in channels_last than in the default layout, or slower, depending on model and CPU.
    layouts = {}
    for layout, memory_format in (("contiguous", torch.contiguous_format),
                                  ("channels_last", torch.channels_last)):
        torch.manual_seed(args.seed)
        model = build_model(args.model).to(memory_format=memory_format)
        x = x0.contiguous(memory_format=memory_format)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        train_steps(model, loss_fn, optimizer, x, y, WARMUP_STEPS)
        train_rates = []
        for i in range(REPEATS):
            elapsed = train_steps(model, loss_fn, optimizer, x, y, args.steps)
            train_rates.append(args.steps * args.batch / elapsed)
            print("  %s train repeat %d: %d steps in %.2f s = %.1f samples/s" % (
                layout, i + 1, args.steps, elapsed, train_rates[-1]))
        infer_steps(model, x, WARMUP_STEPS)
        infer_rates = []
        for i in range(REPEATS):
            elapsed = infer_steps(model, x, args.steps)
            infer_rates.append(args.steps * args.batch / elapsed)
            print("  %s infer repeat %d: %d steps in %.2f s = %.1f samples/s" % (
                layout, i + 1, args.steps, elapsed, infer_rates[-1]))
        layouts[layout] = (train_rates, infer_rates)

    train_layout = max(layouts, key=lambda k: statistics.median(layouts[k][0]))
    infer_layout = max(layouts, key=lambda k: statistics.median(layouts[k][1]))
    train_rates, infer_rates = layouts[train_layout][0], layouts[infer_layout][1]
    train_rate = statistics.median(train_rates)
    infer_rate = statistics.median(infer_rates)
    gflops = train_flops_per_sample * train_rate / 1e9
    print("torch train: %.1f samples/s (%.2f GFLOP/s, %s), inference: %.1f samples/s (%s) "
          "(medians of %d)" % (train_rate, gflops, train_layout, infer_rate, infer_layout, REPEATS))

    if args.json:
        result = {
            "train_samples_per_second": train_rate,
            "infer_samples_per_second": infer_rate,
            "gflops": gflops,
            "model": args.model,
            "batch": args.batch,
            "threads": args.threads,
            "steps": args.steps,
            "train_repeats": train_rates,
            "infer_repeats": infer_rates,
            "train_layout": train_layout,
            "infer_layout": infer_layout,
            "forward_macs_per_sample": macs,
            "blas": blas_summary(blas),
            "blas_selected": blas["selected"],
            "openblas_core": blas["openblas"][3],
            "openblas_coretype_env": os.environ.get("OPENBLAS_CORETYPE"),
            "torch_version": torch.__version__,
        }
        with open(args.json, "w") as out:
            json.dump(result, out, indent=2)
            out.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
