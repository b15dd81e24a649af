#!/usr/bin/python3
"""Peer of `augflow train --budget`: train a PyTorch model for a wall-clock budget and record
the test accuracy after every epoch with the time since the start (time to accuracy).

The network is built from augflow's model spec (bench/torch_models.py), so both sides train
the same layers. The data and augmentation are augflow's:
- fashion-mnist: the IDX files of /usr/share/datasets/fashion-mnist, read with gzip + numpy
  into one uint8 tensor; each batch is cropped at random from the image padded by --pad
  pixels of zeros and flipped left-right with probability 0.5 (augflow's default for IDX
  data, `pad_crop(2,28) | hflip | normalize(none)`), done on the whole batch at once with
  tensor indexing, the fastest way in eager PyTorch for data that fits in memory (per-sample
  torchvision transforms in DataLoader workers cost more CPU than the training step here);
- an image folder (--train DIR --val DIR, torchvision's ImageFolder layout): decoded every
  epoch by torchvision's ImageFolder in --workers DataLoader processes, with RandomCrop(size,
  padding=--pad) + RandomHorizontalFlip + ToTensor (augflow's `pad_crop(P,SIZE) | hflip |
  normalize(none)`).
Validation: the test images as they are (x/255) and their mirrors, softmax probabilities
averaged (augflow's validation views after hflip; --val-views center: the images alone),
model.eval() under torch.no_grad().

The clock starts once torch is imported and its BLAS checked (as augflow's starts when
training begins: its libraries are loaded by then); it includes reading the data, the
augmentation and every validation. The learning-rate schedule is laid over the budget the way
augflow lays it: progress p = (elapsed + one mean step) / (budget - reserve), measured from
the clock at every step, with reserve = the time the last validation took (before the first:
half a training step per validation batch), so that the final validation fits in the budget;
p reaching 1 ends the run with a validation of the partial epoch. The schedules are torch's
formulas evaluated at p instead of at a step count (a step count fixed in advance would have
to be guessed from a warm-up measurement, and a loaded machine would make the run stop short
of the schedule's end or overrun the budget):
- onecycle: torch.optim.lr_scheduler.OneCycleLR's defaults: from lr/25 up to lr over the
  first 30 %, cosine down to lr/25/1e4; momentum (SGD) or beta1 (Adam/AdamW) cycled 0.95 ->
  0.85 -> 0.95 (its cycle_momentum);
- cosine: lr * (1 + cos(pi p)) / 2 after a linear warm-up over --warmup of the run.

Needs Debian's python3-torch and python3-torchvision (/usr/bin/python3 only) on OpenBLAS.
Usage:
  /usr/bin/python3 bench/torch_time_to_accuracy.py (--data fashion-mnist | --train DIR --val DIR)
      (--budget MINUTES | --budget-epochs E) [--model SPEC] [--seed S] [--threads 2] [--json FILE] [recipe options]
Prints one line per validation; --json writes augflow's summary.json shape
(time_to_accuracy [{seconds, epoch, val_accuracy}], elapsed_seconds, best_val_accuracy,
final_val_accuracy) plus the recipe.
"""

import argparse
import copy
import gzip
import json
import math
import os
import sys
import time

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="fashion-mnist (the IDX files in %s)" % FASHION_MNIST_DIR)
    p.add_argument("--train", help="training image folder (ImageFolder layout)")
    p.add_argument("--val", help="test image folder (ImageFolder layout)")
    p.add_argument("--model", default="cnn-small", help="augflow model spec or preset")
    p.add_argument("--budget", type=float, help="wall-clock minutes")
    p.add_argument("--budget-epochs", type=float,
                   help="the same in epochs (fractions allowed): progress counted in steps, so "
                        "that recipes can be compared on a loaded machine (augflow's "
                        "--budget-epochs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2,
                   help="torch (and OpenBLAS) threads of the training process")
    p.add_argument("--workers", type=int, default=1,
                   help="DataLoader worker processes for an image folder (each with 1 thread)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--optimizer", default="adamw", choices=("adam", "adamw", "sgd", "nesterov"))
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--weight-decay", type=float, default=5e-4,
                   help="AdamW's decoupled decay; SGD's L2 weight_decay")
    p.add_argument("--schedule", default="onecycle", choices=("onecycle", "cosine"))
    p.add_argument("--warmup", type=float, default=0.0, help="cosine's linear warm-up fraction")
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--pad", type=int, default=None,
                   help="random-crop padding (default 2 for fashion-mnist, 4 for folders)")
    p.add_argument("--channels-last", action="store_true",
                   help="run the model in torch.channels_last memory format")
    p.add_argument("--val-views", default="flip", choices=("flip", "center"),
                   help="validation views: the image and its mirror, probabilities averaged (augflow's "
                        "default after hflip), or the image alone")
    p.add_argument("--json", help="write the summary (augflow's summary.json shape) here")
    args = p.parse_args()
    if (args.data is None) == (args.train is None):
        p.error("give --data fashion-mnist, or --train DIR and --val DIR")
    if args.data is not None and args.data != "fashion-mnist":
        p.error("--data %s: only fashion-mnist is built in; give an image folder with "
                "--train DIR --val DIR" % args.data)
    if args.train is not None and args.val is None:
        p.error("--train DIR needs --val DIR (the test folder)")
    if (args.budget is None) == (args.budget_epochs is None):
        p.error("give --budget MINUTES or --budget-epochs E (one of them)")
    if args.budget is not None and not args.budget > 0:
        p.error("--budget must be a number of minutes > 0, got %s" % args.budget)
    if args.budget_epochs is not None and not args.budget_epochs > 0:
        p.error("--budget-epochs must be a number of epochs > 0, got %s" % args.budget_epochs)
    if args.threads < 1 or args.batch < 1 or args.workers < 0:
        p.error("--threads and --batch must be >= 1, --workers >= 0")
    if args.pad is None:
        args.pad = 2 if args.data else 4
    return args


ARGS = parse_args()
# OpenBLAS reads its thread count when it is loaded (on `import torch`); see torch_train.py.
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(ARGS.threads))

try:
    import numpy as np
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover - environment problem
    sys.stderr.write(
        "torch_time_to_accuracy.py: cannot import torch (%s).\nRun it with /usr/bin/python3 "
        "and install the peer with: apt-get install python3-torchvision (as root)\n" % exc)
    sys.exit(1)

import torch_models  # noqa: E402  (imports torch: after OPENBLAS_NUM_THREADS is set)
from peer_training import MemoryBatches, cosine, onecycle, set_rate  # noqa: E402
from peer_common import blas_summary, check_blas  # noqa: E402

NAME = "torch_time_to_accuracy.py"


# --- data -----------------------------------------------------------------------

def read_idx(path, dims):
    """uint8 array of an IDX file (gzip), checked against its header."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        sys.exit("%s: error: cannot read %s (%s); install the Fashion-MNIST files there "
                 "(scripts/deps.sh fetches them)" % (NAME, path, exc))
    magic = int.from_bytes(raw[0:4], "big")
    if magic != 0x800 + dims:
        sys.exit("%s: error: %s is not a %d-dimensional uint8 IDX file (magic %#x)" % (
            NAME, path, dims, magic))
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims)
    if data.size != int(np.prod(shape)):
        sys.exit("%s: error: %s holds %d values, its header says %s" % (
            NAME, path, data.size, "x".join(map(str, shape))))
    return data.reshape(shape)


def fashion_mnist(split):
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(os.path.join(FASHION_MNIST_DIR, "%s-images-idx3-ubyte.gz" % prefix), 3)
    labels = read_idx(os.path.join(FASHION_MNIST_DIR, "%s-labels-idx1-ubyte.gz" % prefix), 1)
    x = torch.from_numpy(images.copy()).unsqueeze(1)  # N x 1 x 28 x 28 uint8
    return x, torch.from_numpy(labels.astype(np.int64))


def memory_val_batches(x, y, batch):
    # Batches of the training batch size, as augflow validates: batches of 1000 ran 7x slower
    # (12-17 s per validation of 10,000 images instead of ~2 s).
    for i in range(0, len(y), batch):
        yield x[i:i + batch].float().div_(255), y[i:i + batch]


def one_thread_worker(_):
    # Each DataLoader worker decodes and augments one image at a time: more threads per
    # worker would only oversubscribe the 2 cores the training process already uses.
    torch.set_num_threads(1)


def folder_loaders(args):
    import torchvision
    from torchvision import transforms as T
    for d in (args.train, args.val):
        if not os.path.isdir(d):
            sys.exit("%s: error: %s is not a directory (expected one sub-folder of images "
                     "per class, e.g. from build/augflow_make_images)" % (NAME, d))
    train_set = torchvision.datasets.ImageFolder(args.train)
    size = train_set[0][0].size[1]  # images are square here (PIL's size is W x H)
    train_set.transform = T.Compose([T.RandomCrop(size, padding=args.pad),
                                     T.RandomHorizontalFlip(), T.ToTensor()])
    val_set = torchvision.datasets.ImageFolder(args.val, transform=T.ToTensor())
    if val_set.classes != train_set.classes:
        sys.exit("%s: error: the classes of %s differ from those of %s" % (
            NAME, args.val, args.train))
    common = dict(num_workers=args.workers, worker_init_fn=one_thread_worker,
                  persistent_workers=args.workers > 0)
    train = torch.utils.data.DataLoader(
        train_set, batch_size=args.batch, shuffle=True,
        generator=torch.Generator().manual_seed(args.seed), **common)
    val = torch.utils.data.DataLoader(val_set, batch_size=args.batch, shuffle=False, **common)
    # ImageFolder's loader converts every image to RGB.
    return train, val, (3, size, size), len(train_set.classes), len(val_set)


# --- optimizer ------------------------------------------------------------------

def make_optimizer(args, params):
    if args.optimizer == "adam":
        return torch.optim.Adam(params, lr=args.lr)
    if args.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    if args.optimizer == "sgd":
        return torch.optim.SGD(params, lr=args.lr, weight_decay=args.weight_decay)
    return torch.optim.SGD(params, lr=args.lr, momentum=0.9, nesterov=True,
                           weight_decay=args.weight_decay)


# --- run ------------------------------------------------------------------------

def evaluate(model, batches, memory_format, mirror):
    """Top-1 accuracy; with `mirror`, of the softmax probabilities averaged over each image and
    its left-right mirror (augflow train's --val-views flip, its default when training flips)."""
    # Inference runs on a channels_last copy of the model: torch's oneDNN (mkldnn) kernels ran
    # cnn-small's test-mode forward 3-5x faster in that layout than in the default one on the
    # machines measured (the training layout is --channels-last's choice).
    del memory_format
    infer = copy.deepcopy(model).to(memory_format=torch.channels_last).eval()
    layout = torch.channels_last
    correct = total = 0
    with torch.no_grad():
        for x, y in batches:
            out = infer(x.contiguous(memory_format=layout))
            if mirror:
                out = out.softmax(1) + infer(x.flip(3).contiguous(memory_format=layout)).softmax(1)
            correct += int((out.argmax(1) == y).sum())
            total += len(y)
    return correct / total


def main():
    args = ARGS
    torch.set_num_threads(args.threads)
    blas = check_blas(__file__)  # may re-run this script with a better OPENBLAS_CORETYPE
    start = time.perf_counter()

    def elapsed():
        return time.perf_counter() - start

    torch.manual_seed(args.seed)
    if args.data:
        x_train, y_train = fashion_mnist("train")
        x_val, y_val = fashion_mnist("test")
        train = MemoryBatches(x_train, y_train, args.batch, args.pad, args.seed)
        val_batches = lambda: memory_val_batches(x_val, y_val, args.batch)  # noqa: E731
        shape, classes, val_count = tuple(x_train.shape[1:]), int(y_train.max()) + 1, len(y_val)
        data_text = "fashion-mnist (%d train, %d test, in memory)" % (len(y_train), len(y_val))
    else:
        train, val, shape, classes, val_count = folder_loaders(args)
        val_batches = lambda: val  # noqa: E731
        data_text = "%s (%d images) / %s (%d), ImageFolder, %d workers" % (
            args.train, len(train.dataset), args.val, val_count, args.workers)
    try:
        model = torch_models.build_model(args.model, shape, classes)
    except torch_models.SpecError as exc:
        sys.exit("%s: error: %s" % (NAME, exc))
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = make_optimizer(args, model.parameters())
    loss_fn = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    recipe = "%s lr %g wd %g, %s%s, label smoothing %g, batch %d%s" % (
        args.optimizer, args.lr, args.weight_decay if args.optimizer != "adam" else 0,
        args.schedule, " warm-up %g" % args.warmup if args.schedule == "cosine" else "",
        args.label_smoothing, args.batch, ", channels_last" if args.channels_last else "")
    print("torch %s, %d threads, %s" % (torch.__version__, args.threads, blas_summary(blas)))
    print("data: %s; model %s: %d parameters" % (
        data_text, args.model, torch_models.parameter_count(model)))
    print("recipe: %s; budget %s" % (recipe, "%g min" % args.budget if args.budget
                                     else "%g epochs" % args.budget_epochs))
    sys.stdout.flush()

    budget = args.budget * 60.0 if args.budget else None
    total_steps = (max(1, round(args.budget_epochs * len(train))) if args.budget_epochs else None)
    step = 0
    step_seconds_sum, steps_timed = 0.0, 0
    validation_seconds = None
    curve = []
    images = 0
    train_seconds = 0.0
    epoch = 0
    done = False
    while not done:
        batches_per_epoch = len(train)
        # A step's time runs from the end of the one before: waiting for the batch counts.
        step_start = elapsed()
        for batch_index, (x, y) in enumerate(train):
            t0 = elapsed()
            mean_step = step_seconds_sum / steps_timed if steps_timed else 0.0
            if total_steps:
                p = min(1.0, (step + 1) / total_steps)
            else:
                # augflow's estimate before the first validation: half a training step per
                # batch of validation images.
                reserve = (validation_seconds if validation_seconds is not None
                           else 0.5 * mean_step * val_count / args.batch)
                available = budget - reserve
                p = min(1.0, (t0 + mean_step) / available) if available > 0 else 1.0
            step += 1
            if args.schedule == "onecycle":
                lr, momentum = onecycle(p, args.lr)
            else:
                lr, momentum = cosine(p, args.lr, args.warmup)
            set_rate(optimizer, lr, momentum)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x.contiguous(memory_format=memory_format)), y)
            loss.backward()
            optimizer.step()
            step_end = elapsed()
            took = step_end - step_start
            step_start = step_end
            # The first steps are slow (allocation, worker start-up): leave them out of the mean.
            if batch_index >= 2 or epoch > 0:
                step_seconds_sum += took
                steps_timed += 1
            train_seconds += took
            images += len(y)
            if not math.isfinite(loss.item()):
                sys.exit("%s: error: the loss is %s at epoch %d, batch %d: lower --lr" % (
                    NAME, loss.item(), epoch + 1, batch_index))
            if p >= 1.0:
                done = True
                break
        epochs_done = epoch + ((batch_index + 1) / batches_per_epoch if done else 1.0)
        v0 = elapsed()
        accuracy = evaluate(model, val_batches(), memory_format, args.val_views == "flip")
        validation_seconds = elapsed() - v0
        curve.append({"seconds": elapsed(), "epoch": epochs_done, "val_accuracy": accuracy})
        print("epoch %.2f: val acc %.4f at %.1f s (train loss %.4f, lr %.3g, %.0f images/s, "
              "validation %.1f s)" % (epochs_done, accuracy, curve[-1]["seconds"], loss.item(),
                                      lr, images / train_seconds, validation_seconds))
        sys.stdout.flush()
        epoch += 1

    summary = {
        "time_to_accuracy": curve,
        "elapsed_seconds": elapsed(),
        "best_val_accuracy": max(c["val_accuracy"] for c in curve),
        "final_val_accuracy": curve[-1]["val_accuracy"],
        "budget_seconds": budget,
        "budget_epochs": args.budget_epochs,
        "epochs_run": epoch,
        "train_images_per_second": images / train_seconds,
        "model": args.model,
        "parameters": torch_models.parameter_count(model),
        "recipe": recipe,
        "seed": args.seed,
        "threads": args.threads,
        "workers": args.workers if args.train else 0,
        "blas": blas_summary(blas),
        "torch_version": torch.__version__,
    }
    print("best val acc %.4f, final %.4f, %.1f s" % (
        summary["best_val_accuracy"], summary["final_val_accuracy"], summary["elapsed_seconds"]))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(summary, out, indent=2)
            out.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
