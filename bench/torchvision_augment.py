#!/usr/bin/python3
"""Peer benchmark: torchvision decode + augment throughput.

Measures the same work as `augflow bench augment` (JPEG decode with PIL, the
augmentation pipeline, ToTensor + Normalize) through a torch DataLoader, so the
two figures can be compared (see bench/compare_augment.sh).

Needs Debian's python3-torch / python3-torchvision, which are importable only
from the system interpreter, hence the /usr/bin/python3 shebang.

Usage:
  /usr/bin/python3 bench/torchvision_augment.py --data DIR [--spec resnet|rrc]
      [--workers 2] [--batch 64] [--passes 5] [--json FILE]
"""

import argparse
import json
import os
import statistics
import sys
import time

from peer_common import loaded_blas_libraries

try:
    import torch
    import torchvision
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms
    import torchvision.transforms.functional as TF
except ImportError as exc:  # pragma: no cover - environment problem
    sys.stderr.write(
        "torchvision_augment.py: cannot import torch/torchvision (%s).\n"
        "Run it with /usr/bin/python3 (Debian's interpreter) and install the\n"
        "peer with: apt-get install python3-torchvision  (as root; the\n"
        "project's scripts/deps.sh installs it)\n" % exc)
    sys.exit(1)

# Same set of extensions augflow decodes; GIF is deliberately excluded so both
# sides process the same images.
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp",
                    ".tif", ".tiff", ".ppm", ".pgm"}

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


class RandomShorterSideResize:
    """Resize the shorter side to an integer L drawn uniformly from [lo, hi]
    per image (the ResNet "scale augmentation"); aspect ratio is kept."""

    def __init__(self, lo, hi, interpolation=transforms.InterpolationMode.BILINEAR):
        if lo > hi:
            raise ValueError("lo must be <= hi")
        self.lo = lo
        self.hi = hi
        self.interpolation = interpolation

    def __call__(self, img):
        size = int(torch.randint(self.lo, self.hi + 1, (1,)).item())
        return TF.resize(img, size, interpolation=self.interpolation)

    def __repr__(self):
        return "%s(lo=%d, hi=%d)" % (type(self).__name__, self.lo, self.hi)


def build_transform(spec):
    normalize = transforms.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)
    if spec == "resnet":
        # augflow: hflip | scale_crop(256,480,224) | jitter(brightness=0.4,contrast=0.4) | normalize(imagenet)
        return transforms.Compose([
            transforms.RandomHorizontalFlip(),
            RandomShorterSideResize(256, 480),
            transforms.RandomCrop(224),
            transforms.ColorJitter(brightness=0.4, contrast=0.4),
            transforms.ToTensor(),
            normalize,
        ])
    if spec == "rrc":
        # augflow: resized_crop(224) | hflip | jitter(0.4,0.4,0.4) | normalize(imagenet)
        return transforms.Compose([
            transforms.RandomResizedCrop(224),
            transforms.RandomHorizontalFlip(),
            transforms.ColorJitter(0.4, 0.4, 0.4),
            transforms.ToTensor(),
            normalize,
        ])
    raise ValueError("unknown spec %r (expected resnet or rrc)" % spec)


def list_images(root):
    """All decodable image files under root, recursively, in a stable order."""
    files = []
    skipped = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                files.append(path)
            else:
                skipped.append(path)
    return files, skipped


def pil_loader(path):
    # torchvision's default loader (datasets.folder.pil_loader).
    with open(path, "rb") as f:
        img = Image.open(f)
        return img.convert("RGB")


class ImageFiles(Dataset):
    def __init__(self, files, transform):
        self.files = files
        self.transform = transform
        # Label = parent directory name (ants/bees), like ImageFolder would.
        classes = sorted({os.path.basename(os.path.dirname(p)) for p in files})
        self.class_to_idx = {c: i for i, c in enumerate(classes)}

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        path = self.files[index]
        img = self.transform(pil_loader(path))
        return img, self.class_to_idx[os.path.basename(os.path.dirname(path))]


def worker_init(_worker_id):
    # One intra-op thread per worker so N workers use N cores, not N*cores.
    torch.set_num_threads(1)


def run_pass(loader):
    count = 0
    start = time.perf_counter()
    for images, _labels in loader:
        count += images.shape[0]
    elapsed = time.perf_counter() - start
    return count, elapsed


def blas_description():
    lines = []
    for line in torch.__config__.show().splitlines():
        for field in line.replace(",", " ").split():
            if field.startswith(("BLAS_INFO=", "LAPACK_INFO=")):
                lines.append(field)
    alt = "/usr/lib/x86_64-linux-gnu/libblas.so.3"
    selected = os.path.realpath(alt) if os.path.exists(alt) else "not found"
    return lines, selected, loaded_blas_libraries()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="image folder (searched recursively)")
    parser.add_argument("--spec", default="resnet", choices=["resnet", "rrc"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--passes", type=int, default=5, help="timed passes (after one warm-up)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write results as JSON to this file")
    args = parser.parse_args()

    if args.passes < 1 or args.batch < 1 or args.workers < 0:
        parser.error("--passes and --batch must be >= 1, --workers >= 0")
    if not os.path.isdir(args.data):
        parser.error("--data %s is not a directory" % args.data)

    files, skipped = list_images(args.data)
    if not files:
        sys.stderr.write("no images found under %s\n" % args.data)
        return 1

    torch.manual_seed(args.seed)
    transform = build_transform(args.spec)
    dataset = ImageFiles(files, transform)
    loader_kwargs = dict(batch_size=args.batch, shuffle=True, num_workers=args.workers)
    if args.workers > 0:
        loader_kwargs.update(persistent_workers=True, worker_init_fn=worker_init)
    else:
        torch.set_num_threads(1)
    loader = DataLoader(dataset, **loader_kwargs)

    blas_fields, blas_selected, blas_loaded = blas_description()
    print("torchvision augment benchmark")
    print("  torch %s, torchvision %s, python %s" % (
        torch.__version__, torchvision.__version__, sys.version.split()[0]))
    print("  BLAS: %s" % (" ".join(blas_fields) or "unknown"))
    print("  libblas.so.3 alternative: %s" % blas_selected)
    if blas_loaded:
        print("  loaded: %s" % ", ".join(os.path.basename(p) for p in blas_loaded))
    print("  data: %s (%d images, %d other files skipped)" % (args.data, len(files), len(skipped)))
    print("  spec: %s" % args.spec)
    for line in repr(transform).splitlines()[1:-1]:
        print("    %s" % line.strip())
    print("  workers %d, batch %d, passes %d (+1 warm-up)" % (args.workers, args.batch, args.passes))

    count, elapsed = run_pass(loader)
    print("  warm-up: %d images in %.2f s (%.1f img/s, includes worker start-up)" % (
        count, elapsed, count / elapsed))

    rates = []
    for i in range(args.passes):
        count, elapsed = run_pass(loader)
        rate = count / elapsed
        rates.append(rate)
        print("  pass %d: %d images in %.2f s = %.1f img/s" % (i + 1, count, elapsed, rate))
    median = statistics.median(rates)
    print("torchvision decode+augment: %.1f images/s (median of %d passes)" % (median, len(rates)))

    if args.json:
        result = {
            "images": len(files),
            "images_per_second": median,
            "passes": rates,
            "workers": args.workers,
            "batch": args.batch,
            "spec": args.spec,
            "skipped_files": len(skipped),
            "torch_version": torch.__version__,
            "torchvision_version": torchvision.__version__,
            "blas": blas_selected,
        }
        with open(args.json, "w") as out:
            json.dump(result, out, indent=2)
            out.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
