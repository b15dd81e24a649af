#!/usr/bin/python3
"""Peer benchmark: torchvision test-time evaluation (TenCrop) + a PyTorch model.

Measures the same work as `augflow eval --views tencrop|center`: decode each
image of an ImageFolder (PIL), make the test-time views, run the model on
them in eval mode under torch.no_grad(), average the softmax probabilities
over an image's views and score top-1 accuracy. See bench/compare_eval.sh.

  tencrop  Resize(256) -> TenCrop(224) -> ToTensor + Normalize(ImageNet) per
           crop, stacked (the torchvision documentation's recipe); the model
           sees 10 views per image (a batch of B images = 10 B views)
  center   Resize(256) -> CenterCrop(224) -> ToTensor + Normalize (1 view)

The views are made by a DataLoader (--workers processes, one thread each, in
order); the model runs in the main process with --threads intra-op threads.
The model is built from an augflow compact model spec (--model; the tokens
convNkK[sS][pP], fcN, bn, relu, lrelu[A], tanh, poolK, avgpoolK, gap, flatten,
dropP, dcP, resN[sS], sdP and the presets twolayer, mlp, cnn-small,
resnet-mini with C = the data set's class count) for 3x224x224 inputs, with
random weights: this is a speed benchmark; its accuracy is reported, not
compared. Files with an image extension that cannot be used are skipped and
counted, as augflow does: GIFs (augflow does not decode them, so both sides
evaluate the same images) and files PIL cannot identify.

Needs Debian's python3-torch / python3-torchvision, which are importable only
from the system interpreter, hence the /usr/bin/python3 shebang. Like
bench/torch_train.py it refuses to run unless torch's BLAS is OpenBLAS.

Usage:
  /usr/bin/python3 bench/torch_eval.py --data DIR [--views tencrop|center]
      [--model SPEC] [--batch 12] [--workers 2] [--threads 2] [--repeats 3]
      [--warmup 1] [--json FILE]
"""

import argparse
import json
import os
import re
import statistics
import sys
import time

from peer_common import blas_summary, check_blas

DEFAULT_MODEL = "conv16k3s2p1-bn-relu-pool2-conv32k3p1-bn-relu-pool2-conv64k3p1-bn-relu-gap-fc2"
VIEWS = {"tencrop": 10, "center": 1}
RESIZE = 256
CROP = 224


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True,
                        help="ImageFolder root: its immediate sub-folders are the classes "
                             "(searched recursively)")
    parser.add_argument("--views", default="tencrop", choices=sorted(VIEWS))
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="augflow compact model spec or preset (default %s)" % DEFAULT_MODEL)
    parser.add_argument("--batch", type=int, default=12,
                        help="images per batch (x views per image = the model's batch)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch intra-op threads of the main process (the model)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed passes over the folder (median reported)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed passes first (worker start-up, allocator warm-up)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--json", help="write results as JSON to this file")
    args = parser.parse_args()
    if args.batch < 1 or args.threads < 1 or args.repeats < 1:
        parser.error("--batch, --threads and --repeats must be >= 1")
    if args.workers < 0 or args.warmup < 0:
        parser.error("--workers and --warmup must be >= 0")
    if not os.path.isdir(args.data):
        parser.error("--data %s is not a directory" % args.data)
    return args


ARGS = parse_args()

# OpenBLAS (pthread build) reads its thread count when it is loaded, i.e. on
# `import torch`; see bench/torch_train.py.
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(ARGS.threads))

try:
    import torch
    import torchvision
    from PIL import Image
    from torch import nn
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms
except ImportError as exc:  # pragma: no cover - environment problem
    sys.stderr.write(
        "torch_eval.py: cannot import torch/torchvision (%s).\n"
        "Run it with /usr/bin/python3 (Debian's interpreter) and install the\n"
        "peer with: apt-get install python3-torchvision  (as root; the\n"
        "project's scripts/deps.sh installs it)\n" % exc)
    sys.exit(1)

# The same extension list, normalisation, PIL loader and worker set-up as the
# other torchvision peers (bench/ is on sys.path when this file is run).
from torchvision_augment import (IMAGE_EXTENSIONS, IMAGENET_MEAN, IMAGENET_STD, pil_loader,
                                 worker_init)


# --- the model: augflow's compact spec as torch.nn ----------------------------

class SpecError(ValueError):
    pass


PRESETS = {  # model/config.cpp; "C" = the data set's class count
    "twolayer": "fc50-relu-fcC",
    "mlp": "fc512-relu-drop0.2-fc256-relu-fcC",
    "cnn-small": "conv32k3p1-bn-relu-pool2-conv64k3p1-bn-relu-pool2-fc128-relu-fcC",
    "resnet-mini": "conv16k3p1-bn-relu-res16-res32s2-res64s2-gap-fcC-sd0.8",
}

TOKEN = re.compile(r"""
    (?P<conv>conv(?P<conv_out>\d+)(?P<conv_args>(?:[ksp]\d+)*)) |
    (?P<res>res(?P<res_out>\d+)(?:s(?P<res_s>\d+))?) |
    (?P<fc>fc(?P<fc_out>\d+)) |
    (?P<avgpool>avgpool(?P<avgpool_k>\d+)) |
    (?P<pool>pool(?P<pool_k>\d+)) |
    (?P<lrelu>lrelu(?P<lrelu_a>\d+(?:\.\d*)?|\.\d+)?) |
    (?P<drop>drop(?P<drop_p>\d+(?:\.\d*)?|\.\d+)) |
    (?P<dc>dc(?P<dc_p>\d+(?:\.\d*)?|\.\d+)) |
    (?P<sd>sd(?P<sd_p>\d+(?:\.\d*)?|\.\d+)) |
    (?P<bare>bn|relu|tanh|gap|flatten)
    """, re.VERBOSE)


class Residual(nn.Module):
    """augflow's resN[sS] (model/residual.hpp) in eval mode:
    y = relu(shortcut + survival * bn2(conv2(relu(bn1(conv1(x))))))."""

    def __init__(self, cin, cout, stride, survival):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.proj = None
        if stride != 1 or cin != cout:
            self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                      nn.BatchNorm2d(cout))
        self.survival = survival

    def forward(self, x):
        branch = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.proj is None else self.proj(x)
        return torch.relu(shortcut + self.survival * branch)

    def extra_repr(self):
        return "survival=%g" % self.survival


def build_model(spec, classes, in_shape=(3, CROP, CROP)):
    """torch.nn.Sequential for an augflow compact model spec (model/config.cpp)
    on inputs of in_shape: Conv2d with bias, BatchNorm2d after a convolution
    and BatchNorm1d after gap/flatten/fc, MaxPool2d(K)/AvgPool2d(K) (stride K),
    gap = AdaptiveAvgPool2d(1) + Flatten, a Flatten before the first fc that
    follows convolutions, dropP = Dropout(P), dcP = Identity (DropConnect does
    nothing in eval mode), resN[sS] = Residual (survival decaying linearly to
    sdP at the last block, as model/net.cpp)."""
    text = PRESETS.get(spec, spec).replace("fcC", "fc%d" % classes)
    tokens = text.split("-")
    matches = []
    for token in tokens:
        m = TOKEN.fullmatch(token)
        if m is None:
            raise SpecError("model spec %r: cannot read token %r" % (spec, token))
        matches.append(m)
    survival = 1.0
    for m in matches:
        if m.group("sd"):
            survival = float(m.group("sd_p"))
    res_total = sum(1 for m in matches if m.group("res"))

    layers = []
    c, h, w = in_shape
    flat = None  # feature count once flattened
    res_seen = 0
    for token, m in zip(tokens, matches):
        if m.group("conv"):
            args = dict((a[0], int(a[1:])) for a in re.findall(r"[ksp]\d+", m.group("conv_args")))
            if "k" not in args:
                raise SpecError("model spec: %s needs a kernel size kK" % token)
            if flat is not None:
                raise SpecError("model spec: %s after the input was flattened" % token)
            out, k, s, p = int(m.group("conv_out")), args["k"], args.get("s", 1), args.get("p", 0)
            layers.append(nn.Conv2d(c, out, k, stride=s, padding=p))
            c, h, w = out, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        elif m.group("res"):
            if flat is not None:
                raise SpecError("model spec: %s after the input was flattened" % token)
            res_seen += 1
            out, s = int(m.group("res_out")), int(m.group("res_s") or 1)
            layers.append(Residual(c, out, s, 1.0 - res_seen / res_total * (1.0 - survival)))
            c, h, w = out, (h - 1) // s + 1, (w - 1) // s + 1
        elif m.group("fc"):
            if flat is None:
                layers.append(nn.Flatten())
                flat = c * h * w
            out = int(m.group("fc_out"))
            layers.append(nn.Linear(flat, out))
            flat = out
        elif m.group("pool") or m.group("avgpool"):
            k = int(m.group("pool_k") or m.group("avgpool_k"))
            if flat is not None:
                raise SpecError("model spec: %s after the input was flattened" % token)
            layers.append(nn.MaxPool2d(k) if m.group("pool") else nn.AvgPool2d(k))
            h, w = h // k, w // k
        elif m.group("lrelu"):
            layers.append(nn.LeakyReLU(float(m.group("lrelu_a") or 0.01)))
        elif m.group("drop"):
            layers.append(nn.Dropout(float(m.group("drop_p"))))
        elif m.group("dc"):
            layers.append(nn.Identity())
        elif m.group("sd"):
            pass  # not a layer: the survival of the last res block
        elif token == "bn":
            layers.append(nn.BatchNorm2d(c) if flat is None else nn.BatchNorm1d(flat))
        elif token == "relu":
            layers.append(nn.ReLU())
        elif token == "tanh":
            layers.append(nn.Tanh())
        elif token == "gap":
            if flat is None:
                layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
                flat = c
        elif token == "flatten":
            if flat is None:
                layers.append(nn.Flatten())
                flat = c * h * w
        if min(c, h, w) < 1:
            raise SpecError("model spec: %s leaves an empty %dx%dx%d activation" % (token, c, h, w))
    if flat is None:
        raise SpecError("model spec %r does not end in a flat layer (fcN or gap)" % spec)
    return nn.Sequential(*layers), flat, text


def forward_macs(model, in_shape):
    """Multiply-adds per view of the conv and linear layers (as torch_train.py)."""
    macs = []

    def hook(module, _inputs, output):
        if isinstance(module, nn.Conv2d):
            macs.append(output[0].numel() * (module.in_channels // module.groups) *
                        module.kernel_size[0] * module.kernel_size[1])
        elif isinstance(module, nn.Linear):
            macs.append(module.in_features * module.out_features)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(2, *in_shape))
    for handle in handles:
        handle.remove()
    return sum(macs)


# --- data ---------------------------------------------------------------------

def stack_crops(crops, to_tensor=transforms.ToTensor(),
                normalize=transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)):
    # torchvision's TenCrop recipe: Lambda(lambda crops: torch.stack([...]))
    return torch.stack([normalize(to_tensor(crop)) for crop in crops])


def build_transform(views):
    if views == "tencrop":
        return transforms.Compose([
            transforms.Resize(RESIZE),
            transforms.TenCrop(CROP),
            transforms.Lambda(stack_crops),
        ])
    return transforms.Compose([
        transforms.Resize(RESIZE),
        transforms.CenterCrop(CROP),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


# The extensions augflow lists as images (pipeline/image_files.hpp,
# has_image_extension), and those of them it decodes (all but GIF).
LISTED_EXTENSIONS = IMAGE_EXTENSIONS | {".gif", ".pbm"}
DECODED_EXTENSIONS = IMAGE_EXTENSIONS | {".pbm"}


class FileFilter:
    """ImageFolder's is_valid_file: files without an image extension are
    ignored, as augflow ignores them; a file with one is used if augflow
    decodes its format (not GIF) and PIL can open it, otherwise it is skipped
    and counted (augflow's skipped_files)."""

    def __init__(self):
        self.skipped = []

    def __call__(self, path):
        ext = os.path.splitext(path)[1].lower()
        if ext not in LISTED_EXTENSIONS:
            return False
        reason = None
        if ext not in DECODED_EXTENSIONS:
            reason = "augflow does not decode %s files (left out on both sides)" % ext
        else:
            try:
                with Image.open(path):  # identifies the format, reads the header
                    pass
            except Exception as exc:  # noqa: BLE001 - any failure means unusable
                reason = str(exc)
        if reason is not None:
            self.skipped.append((path, reason))
            return False
        return True


def run_pass(loader, model, views):
    """One timed pass. Returns (images, seconds, correct)."""
    images = correct = 0
    start = time.perf_counter()
    with torch.no_grad():
        for x, labels in loader:
            n = x.shape[0]
            logits = model(x.view(n * views, *x.shape[-3:]))
            probs = torch.softmax(logits, dim=1).view(n, views, -1).mean(dim=1)
            correct += int((probs.argmax(dim=1) == labels).sum())
            images += n
    return images, time.perf_counter() - start, correct


def main():
    args = ARGS
    torch.set_num_threads(args.threads)
    blas = check_blas(__file__)

    file_filter = FileFilter()
    transform = build_transform(args.views)
    try:
        dataset = datasets.ImageFolder(args.data, transform=transform, loader=pil_loader,
                                       is_valid_file=file_filter)
    except (FileNotFoundError, RuntimeError) as exc:
        sys.stderr.write("torch_eval.py: %s\n" % exc)
        return 1
    for path, reason in file_filter.skipped:
        sys.stderr.write("torch_eval.py: skipping %s: %s\n" % (path, reason))
    classes = len(dataset.classes)

    torch.manual_seed(args.seed)
    try:
        model, outputs, expanded = build_model(args.model, classes)
    except SpecError as exc:
        sys.stderr.write("torch_eval.py: %s\n" % exc)
        return 2
    if outputs != classes:
        sys.stderr.write("torch_eval.py: error: the model has %d outputs but %s has %d classes\n" % (
            outputs, args.data, classes))
        return 2
    model.eval()
    macs = forward_macs(model, (3, CROP, CROP))
    views = VIEWS[args.views]

    loader_kwargs = dict(batch_size=args.batch, shuffle=False, num_workers=args.workers)
    if args.workers > 0:
        loader_kwargs.update(persistent_workers=True, worker_init_fn=worker_init)
    loader = DataLoader(dataset, **loader_kwargs)

    print("torch eval benchmark")
    print("  torch %s, torchvision %s, python %s, %d threads (torch.get_num_threads() = %d), "
          "mkldnn %s" % (
              torch.__version__, torchvision.__version__, sys.version.split()[0], args.threads,
              torch.get_num_threads(),
              "on" if torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
              else "off"))
    print("  BLAS: %s" % blas_summary(blas))
    print("  data: %s (ImageFolder, classes %s: %d images, %d files skipped)" % (
        args.data, ",".join(dataset.classes), len(dataset), len(file_filter.skipped)))
    print("  views: %s (%d per image)" % (args.views, views))
    for line in repr(transform).splitlines()[1:-1]:
        print("    %s" % line.strip())
    print("  model %s: %d parameters, %.2f M forward multiply-adds/view, random weights "
          "(seed %d), eval mode" % (
              expanded, sum(p.numel() for p in model.parameters()), macs / 1e6, args.seed))
    print("  batch %d images (%d views), %d workers (1 thread each), %d passes (+%d warm-up)" % (
        args.batch, args.batch * views, args.workers, args.repeats, args.warmup))

    for _ in range(args.warmup):
        count, elapsed, _correct = run_pass(loader, model, views)
        print("  warm-up: %d images in %.2f s (%.1f images/s, includes worker start-up)" % (
            count, elapsed, count / elapsed))
    rates = []
    correct = count = 0
    for i in range(args.repeats):
        count, elapsed, correct = run_pass(loader, model, views)
        rates.append(count / elapsed)
        print("  pass %d: %d images in %.2f s = %.1f images/s (%.1f views/s)" % (
            i + 1, count, elapsed, rates[-1], rates[-1] * views))
    rate = statistics.median(rates)
    top1 = correct / count if count else 0.0
    print("torch eval (%s): %.1f images/s, %.1f views/s (median of %d passes), top-1 %.4f "
          "(%d/%d; random weights)" % (
              args.views, rate, rate * views, len(rates), top1, correct, count))

    if args.json:
        result = {
            "images_per_second": rate,
            "views_per_second": rate * views,
            "views_per_image": views,
            "views": args.views,
            "images": count,
            "skipped_files": len(file_filter.skipped),
            "classes": dataset.classes,
            "top1": top1,
            "passes": rates,
            "batch": args.batch,
            "workers": args.workers,
            "threads": args.threads,
            "model": expanded,
            "forward_macs_per_view": macs,
            "blas": blas_summary(blas),
            "blas_selected": blas["selected"],
            "openblas_core": blas["openblas"][3],
            "openblas_coretype_env": os.environ.get("OPENBLAS_CORETYPE"),
            "torch_version": torch.__version__,
            "torchvision_version": torchvision.__version__,
        }
        with open(args.json, "w") as out:
            json.dump(result, out, indent=2)
            out.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
