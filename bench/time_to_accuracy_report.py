#!/usr/bin/python3
"""Summary of bench/time_to_accuracy.sh's runs: medians, time to the target accuracy, the
ratio, a JSON summary and a PNG of the curves.

Input: a manifest, one run per line, tab-separated: side (augflow|torch), budget in minutes,
seed, path of the run's summary JSON (augflow's summary.json shape: time_to_accuracy
[{seconds, epoch, val_accuracy}], elapsed_seconds, best_val_accuracy, final_val_accuracy).

The target is augflow's median final test accuracy over the seeds at the first (smallest)
budget (the lower of the middle two for an even number of seeds). A side's time to it, per seed, is the earliest validation at or above it in any of
that seed's runs (each budget is a separate run with its own schedule, so the curve of a side
is the best over its budgets); the side's time is the median over the seeds. A seed that
never reaches it counts as never; when the peer's median is "never", the ratio is a lower
bound: the peer's longest run over augflow's time. The last line printed is `ratio: R`, R =
the peer's time to the target / augflow's.

Usage: time_to_accuracy_report.py MANIFEST [--data NAME] [--json FILE] [--plot FILE]
           [--setting KEY=VALUE ...]
"""

import argparse
import json
import math
import statistics
import sys

SIDES = ("augflow", "torch")
# The goals for Fashion-MNIST: (budget in minutes, test accuracy to reach within it).
FASHION_MNIST_GOALS = ((5, 0.935), (10, 0.940))
PEER_FACTOR_GOAL = 2.0


def load_runs(manifest):
    runs = []
    with open(manifest) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 4 or parts[0] not in SIDES:
                sys.exit("%s:%d: expected 'side<TAB>budget<TAB>seed<TAB>summary.json', got %r" % (
                    manifest, n, line))
            side, budget, seed, path = parts
            try:
                with open(path) as s:
                    summary = json.load(s)
            except (OSError, ValueError) as exc:
                sys.exit("%s:%d: cannot read the run's summary %s (%s)" % (manifest, n, path, exc))
            for key in ("time_to_accuracy", "elapsed_seconds", "final_val_accuracy",
                        "best_val_accuracy"):
                if key not in summary:
                    sys.exit("%s: missing key %s (not a summary.json?)" % (path, key))
            runs.append({"side": side, "budget_minutes": float(budget), "seed": int(seed),
                         "summary_path": path, "summary": summary})
    if not runs:
        sys.exit("%s: no runs listed" % manifest)
    return runs


def first_time_at(curve, target):
    for point in curve:
        if point["val_accuracy"] >= target:
            return point["seconds"]
    return math.inf


def median_or_inf(values):
    # statistics.median sorts, and inf sorts last: a median of "never" is never.
    return statistics.median(values) if values else math.inf


def fmt_minutes(seconds):
    return "never" if math.isinf(seconds) else "%.2f min" % (seconds / 60)


def summarise(runs, data):
    budgets = sorted({r["budget_minutes"] for r in runs})
    seeds = sorted({r["seed"] for r in runs})
    first = budgets[0]
    af_first = [r["summary"]["final_val_accuracy"] for r in runs
                if r["side"] == "augflow" and r["budget_minutes"] == first]
    if not af_first:
        sys.exit("no augflow run at the first budget (%g min): nothing to compare with" % first)
    # median_low: one seed's own accuracy, so that with an even number of seeds half of them
    # reach it too (the mean of the middle two can be above both of the lower half's).
    target = statistics.median_low(af_first)

    out = {"data": data, "budgets_minutes": budgets, "seeds": seeds,
           "target_accuracy": target, "target_budget_minutes": first, "runs": [], "medians": [],
           "time_to_target": {}}
    lines = ["", "== runs (test accuracy: final / best, wall time)"]
    for r in runs:
        s = r["summary"]
        t = first_time_at(s["time_to_accuracy"], target)
        r["time_to_target"] = t
        own = s.get("budget_seconds")
        # With --peer-budget-factor the peer's run is listed beside augflow's budget.
        own_text = (" (its own budget %g min)" % (own / 60)
                    if own and abs(own - 60 * r["budget_minutes"]) > 1 else "")
        lines.append("%-7s budget %5g min  seed %d: final %.2f %%  best %.2f %%  in %.2f min, "
                     "%d validations, target %.2f %% at %s%s" % (
                         r["side"], r["budget_minutes"], r["seed"],
                         100 * s["final_val_accuracy"], 100 * s["best_val_accuracy"],
                         s["elapsed_seconds"] / 60, len(s["time_to_accuracy"]), 100 * target,
                         fmt_minutes(t), own_text))
        out["runs"].append({
            "side": r["side"], "budget_minutes": r["budget_minutes"], "seed": r["seed"],
            "final_val_accuracy": s["final_val_accuracy"],
            "best_val_accuracy": s["best_val_accuracy"],
            "elapsed_seconds": s["elapsed_seconds"],
            "own_budget_seconds": own,
            "time_to_target_seconds": None if math.isinf(t) else t,
            "time_to_accuracy": s["time_to_accuracy"]})

    lines += ["", "== medians over %d seed(s)" % len(seeds)]
    for side in SIDES:
        for b in budgets:
            sel = [r["summary"] for r in runs if r["side"] == side and r["budget_minutes"] == b]
            if not sel:
                continue
            m = {"side": side, "budget_minutes": b, "runs": len(sel),
                 "final_val_accuracy": statistics.median(s["final_val_accuracy"] for s in sel),
                 "best_val_accuracy": statistics.median(s["best_val_accuracy"] for s in sel),
                 "elapsed_seconds": statistics.median(s["elapsed_seconds"] for s in sel)}
            out["medians"].append(m)
            lines.append("%-7s budget %5g min: final %.2f %%, best %.2f %%, wall %.2f min" % (
                side, b, 100 * m["final_val_accuracy"], 100 * m["best_val_accuracy"],
                m["elapsed_seconds"] / 60))

    if data == "fashion-mnist":
        for minutes, goal in FASHION_MNIST_GOALS:
            m = [x for x in out["medians"] if x["side"] == "augflow" and x["budget_minutes"] == minutes]
            if m:
                met = m[0]["final_val_accuracy"] >= goal
                lines.append("goal: augflow >= %.1f %% in %g min: %s (median %.2f %%)" % (
                    100 * goal, minutes, "met" if met else "NOT met", 100 * m[0]["final_val_accuracy"]))

    times = {}
    for side in SIDES:
        per_seed = []
        for seed in seeds:
            ts = [r["time_to_target"] for r in runs if r["side"] == side and r["seed"] == seed]
            if ts:
                per_seed.append(min(ts))
        times[side] = median_or_inf(per_seed)
        out["time_to_target"][side] = {
            "median_seconds": None if math.isinf(times[side]) else times[side],
            "per_seed_seconds": [None if math.isinf(t) else t for t in per_seed]}

    lines += ["", "== time to augflow's median %g-minute accuracy, %.2f %% (median over seeds)" % (
        first, 100 * target)]
    for side in SIDES:
        lines.append("%-7s %s" % (side, fmt_minutes(times[side])))
    af, pt = times["augflow"], times["torch"]
    lower_bound = False
    if math.isinf(af):
        sys.exit("augflow's median time to its own median accuracy is undefined (a seed's "
                 "validations all below it?): cannot form the ratio")
    if math.isinf(pt):
        longest = max(r["summary"]["elapsed_seconds"] for r in runs if r["side"] == "torch")
        ratio = longest / af
        lower_bound = True
        lines.append("the peer did not reach %.2f %% within its longest run (%.2f min): the ratio "
                     "is a lower bound, >= %.2f" % (100 * target, longest / 60, ratio))
    else:
        ratio = pt / af
    verdict = "met" if ratio >= PEER_FACTOR_GOAL else "NOT met"
    lines.append("goal: the peer needs >= %gx augflow's time: %s (%s%.2fx)" % (
        PEER_FACTOR_GOAL, verdict, ">= " if lower_bound else "", ratio))
    out["ratio"] = ratio
    out["ratio_is_lower_bound"] = lower_bound
    lines.append("ratio: %.2f" % ratio)
    return out, lines


def plot(runs, out, path):
    import matplotlib
    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt

    colours = {"augflow": "tab:blue", "torch": "tab:orange"}
    labels = {"augflow": "augflow", "torch": "PyTorch peer"}
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    seen = set()
    styles = ["-", "--", ":", "-."]
    budgets = out["budgets_minutes"]
    for r in runs:
        curve = r["summary"]["time_to_accuracy"]
        xs = [p["seconds"] / 60 for p in curve]
        ys = [100 * p["val_accuracy"] for p in curve]
        key = (r["side"], r["budget_minutes"])
        label = None
        if key not in seen:
            seen.add(key)
            own = r["summary"].get("budget_seconds")  # the peer's, with --peer-budget-factor
            label = "%s, %g-min budget" % (labels[r["side"]], own / 60 if own else r["budget_minutes"])
        ax.plot(xs, ys, styles[budgets.index(r["budget_minutes"]) % len(styles)],
                color=colours[r["side"]], marker="o", markersize=2.5, linewidth=1, alpha=0.8,
                label=label)
    target = 100 * out["target_accuracy"]
    ax.axhline(target, color="grey", linewidth=0.8)
    ax.text(0.01, target, " augflow's %g-min median %.2f %%" % (
        out["target_budget_minutes"], target), transform=ax.get_yaxis_transform(),
        va="bottom", fontsize=8, color="grey")
    finals = [100 * r["summary"]["final_val_accuracy"] for r in runs]
    ax.set_ylim(max(0.0, min(finals) - 4), min(100.0, max(finals) + 1))
    ax.set_xlim(left=0)
    ax.set_xlabel("wall-clock minutes since start (loading, augmentation, validation included)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Time to accuracy on %s, %d seed(s), 2 cores" % (out["data"], len(out["seeds"])))
    ax.grid(True, linewidth=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("manifest")
    p.add_argument("--data", default="")
    p.add_argument("--json")
    p.add_argument("--plot")
    p.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE",
                   help="recorded in the JSON summary's settings (model, recipes, ...)")
    args = p.parse_args()
    runs = load_runs(args.manifest)
    out, lines = summarise(runs, args.data)
    settings = {}
    for item in args.setting:
        key, sep, value = item.partition("=")
        if not sep:
            p.error("--setting %r: expected KEY=VALUE" % item)
        settings[key] = value
    out["settings"] = settings
    if args.plot:
        plot(runs, out, args.plot)
        lines.insert(-1, "plot: %s" % args.plot)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
            f.write("\n")
        lines.insert(-1, "json: %s" % args.json)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
