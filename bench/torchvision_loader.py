#!/usr/bin/python3
"""Peer benchmark: torchvision ImageFolder + DataLoader streaming throughput.

Measures the same work as `augflow bench loader`: stream an ImageFolder data
set through decode (PIL) + augmentation + ToTensor/Normalize into float32 NCHW
batches, epoch after epoch, optionally with a consumer that "trains" for a
fixed time per batch. See bench/compare_loader.sh.

Needs Debian's python3-torch / python3-torchvision, which are importable only
from the system interpreter, hence the /usr/bin/python3 shebang.

Usage:
  /usr/bin/python3 bench/torchvision_loader.py --data DIR [--spec resnet|rrc]
      [--workers 2] [--batch 64] [--epochs 3] [--consumer-ms X] [--json FILE]
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

try:
    import torch
    import torchvision
    from torch.utils.data import DataLoader
    from torchvision import datasets
except ImportError as exc:  # pragma: no cover - environment problem
    sys.stderr.write(
        "torchvision_loader.py: cannot import torch/torchvision (%s).\n"
        "Run it with /usr/bin/python3 (Debian's interpreter) and install the\n"
        "peer with: apt-get install python3-torchvision  (as root; the\n"
        "project's scripts/deps.sh installs it)\n" % exc)
    sys.exit(1)

# Shared with the augment peer so both benchmarks use exactly the same
# transforms, extension list and worker set-up (bench/ is on sys.path when
# this file is run as a script).
from torchvision_augment import (IMAGE_EXTENSIONS, blas_description,
                                 build_transform, worker_init)


def is_valid_file(path):
    # The extensions augflow decodes (no GIF), case-insensitive like augflow.
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def count_skipped(root):
    """Regular files under the class folders that ImageFolder does not load
    (ImageFolder only looks inside the immediate sub-folders of root)."""
    skipped = 0
    for entry in sorted(os.listdir(root)):
        class_dir = os.path.join(root, entry)
        if not os.path.isdir(class_dir):
            continue
        for dirpath, _dirnames, filenames in os.walk(class_dir, followlinks=True):
            skipped += sum(1 for name in filenames if not is_valid_file(name))
    return skipped


def run_epoch(loader, consumer_s):
    """One pass over the data set. Returns (images, elapsed seconds, seconds
    the consumer spent waiting for batches)."""
    count = 0
    wait = 0.0
    start = time.perf_counter()
    # iter() resets the persistent workers and queues the first prefetches:
    # the consumer is waiting for data then too.
    it = iter(loader)
    while True:
        t0 = time.perf_counter()
        try:
            images, _labels = next(it)
        except StopIteration:
            wait += time.perf_counter() - t0
            break
        wait += time.perf_counter() - t0
        count += images.shape[0]
        if consumer_s > 0:
            time.sleep(consumer_s)  # the simulated training step
    elapsed = time.perf_counter() - start
    return count, elapsed, wait


def child_pids():
    """PIDs of this process's live children (the DataLoader workers)."""
    me = os.getpid()
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
        except OSError:
            continue
        # Field 4 (ppid) follows the parenthesised command name.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1 and int(fields[1]) == me:
            pids.append(int(name))
    return sorted(pids)


def vm_hwm_mb(pid):
    """Peak resident set size (VmHWM) of a live process in MB, or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def pss_mb(pid):
    """Current proportional set size (shared pages split between the
    processes sharing them) of a live process in MB, or None."""
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def shutdown_workers(loader):
    """Stop (and reap) the persistent workers so that RUSAGE_CHILDREN covers
    them. Uses the DataLoader's own shutdown path."""
    it = getattr(loader, "_iterator", None)
    if it is not None and hasattr(it, "_shutdown_workers"):
        it._shutdown_workers()
    loader._iterator = None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True,
                        help="ImageFolder root: its immediate sub-folders are the classes "
                             "(searched recursively)")
    parser.add_argument("--spec", default="resnet", choices=["resnet", "rrc"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (after one warm-up)")
    parser.add_argument("--consumer-ms", type=float, default=0.0,
                        help="the consumer sleeps this long per batch (a simulated training step)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write results as JSON to this file")
    args = parser.parse_args()

    if args.epochs < 1 or args.batch < 1 or args.workers < 0:
        parser.error("--epochs and --batch must be >= 1, --workers >= 0")
    if args.consumer_ms < 0:
        parser.error("--consumer-ms must be >= 0")
    if not os.path.isdir(args.data):
        parser.error("--data %s is not a directory" % args.data)

    torch.manual_seed(args.seed)
    transform = build_transform(args.spec)
    try:
        dataset = datasets.ImageFolder(args.data, transform=transform,
                                       is_valid_file=is_valid_file)
    except (FileNotFoundError, RuntimeError) as exc:
        sys.stderr.write("torchvision_loader.py: %s\n" % exc)
        return 1
    skipped = count_skipped(args.data)

    loader_kwargs = dict(batch_size=args.batch, shuffle=True, num_workers=args.workers)
    if args.workers > 0:
        loader_kwargs.update(persistent_workers=True, worker_init_fn=worker_init)
    else:
        torch.set_num_threads(1)
    loader = DataLoader(dataset, **loader_kwargs)
    consumer_s = args.consumer_ms / 1000.0

    blas_fields, blas_selected, blas_loaded = blas_description()
    print("torchvision loader benchmark")
    print("  torch %s, torchvision %s, python %s" % (
        torch.__version__, torchvision.__version__, sys.version.split()[0]))
    print("  BLAS: %s" % (" ".join(blas_fields) or "unknown"))
    print("  libblas.so.3 alternative: %s" % blas_selected)
    if blas_loaded:
        print("  loaded: %s" % ", ".join(os.path.basename(p) for p in blas_loaded))
    print("  data: %s (ImageFolder, classes %s: %d images, %d other files skipped)" % (
        args.data, ",".join(dataset.classes), len(dataset), skipped))
    print("  spec: %s" % args.spec)
    for line in repr(transform).splitlines()[1:-1]:
        print("    %s" % line.strip())
    print("  workers %d, batch %d, epochs %d (+1 warm-up), consumer %.1f ms/batch" % (
        args.workers, args.batch, args.epochs, args.consumer_ms))

    count, elapsed, _wait = run_epoch(loader, consumer_s)
    print("  warm-up: %d images in %.2f s (%.1f img/s, includes worker start-up)" % (
        count, elapsed, count / elapsed))

    rates = []
    total_time = 0.0
    total_wait = 0.0
    for i in range(args.epochs):
        count, elapsed, wait = run_epoch(loader, consumer_s)
        rate = count / elapsed
        rates.append(rate)
        total_time += elapsed
        total_wait += wait
        print("  epoch %d: %d images in %.2f s = %.1f img/s, consumer waited %.0f%%" % (
            i + 1, count, elapsed, rate, 100.0 * wait / elapsed))
    median = statistics.median(rates)
    wait_fraction = total_wait / total_time

    # Peak memory. VmHWM of each live worker is read before shutdown (the sum
    # over main + workers counts the pages the forked workers share with the
    # main process, torch's libraries included, once per process, so it is an
    # upper bound). Then the workers are stopped and reaped so that getrusage
    # RUSAGE_CHILDREN reports them: its ru_maxrss is the peak of the LARGEST
    # reaped child, not a sum, so main + children = main + one worker.
    # PSS (now, not peak) of main + workers counts shared pages once in total.
    workers = child_pids()
    workers_hwm = [m for m in (vm_hwm_mb(p) for p in workers) if m is not None]
    pss = [m for m in (pss_mb(p) for p in [os.getpid()] + workers) if m is not None]
    shutdown_workers(loader)
    main_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    children_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    peak_rss_mb = main_mb + children_mb
    hwm_sum_mb = main_mb + sum(workers_hwm)

    print("torchvision loader: %.1f images/s (median of %d epochs), consumer waited %.1f%% of the time" % (
        median, len(rates), 100.0 * wait_fraction))
    print("peak RSS: %.0f MB (getrusage maxrss: main %.0f MB + largest worker %.0f MB); "
          "main + all %d workers (VmHWM sum, shared pages counted per process): %.0f MB; "
          "PSS at the end: %.0f MB" % (
              peak_rss_mb, main_mb, children_mb, len(workers_hwm), hwm_sum_mb, sum(pss)))

    if args.json:
        result = {
            "dataset_images": len(dataset),
            "skipped_files": skipped,
            "classes": dataset.classes,
            "images_per_second": median,
            "epochs": rates,
            "consumer_ms": args.consumer_ms,
            "consumer_wait_fraction": wait_fraction,
            "peak_rss_mb": peak_rss_mb,
            "peak_rss_mb_method": "getrusage maxrss RUSAGE_SELF + RUSAGE_CHILDREN "
                                  "(main process + largest worker)",
            "peak_rss_main_mb": main_mb,
            "peak_rss_children_mb": children_mb,
            "peak_rss_hwm_sum_mb": hwm_sum_mb,
            "pss_end_mb": sum(pss),
            "workers": args.workers,
            "batch": args.batch,
            "spec": args.spec,
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
