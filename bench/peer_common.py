"""Helpers shared by the Python peer benchmarks (bench/*.py): the BLAS checks that
make sure PyTorch runs on OpenBLAS with its fast kernels."""

import ctypes
import os
import sys

BLAS_ALTERNATIVE = "libblas.so.3-x86_64-linux-gnu"
BLAS_LINK = "/usr/lib/x86_64-linux-gnu/libblas.so.3"
OPENBLAS_PTHREAD = "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3"
BLAS_FIX = (
    "Select OpenBLAS (package libopenblas0-pthread), as root:\n"
    "    apt-get install libopenblas0-pthread   # if it is not installed\n"
    "    update-alternatives --set %s %s\n"
    "(check with: update-alternatives --display %s)\n" % (
        BLAS_ALTERNATIVE, OPENBLAS_PTHREAD, BLAS_ALTERNATIVE))



def loaded_blas_libraries():
    """Paths of the BLAS/LAPACK libraries mapped into this process."""
    loaded = set()
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                parts = line.split()
                if len(parts) >= 6 and ("blas" in parts[-1] or "lapack" in parts[-1]):
                    loaded.add(parts[-1])
    except OSError:
        pass
    return sorted(loaded)


def openblas_info(paths):
    """(config string, threads, parallel mode, core name) reported by the loaded
    OpenBLAS, or None if it cannot be asked."""
    for path in paths:
        if "openblas" not in path or "lapack" in path:
            continue
        try:
            lib = ctypes.CDLL(path)  # already loaded: same handle, no reload
            lib.openblas_get_config.restype = ctypes.c_char_p
            lib.openblas_get_corename.restype = ctypes.c_char_p
            config = lib.openblas_get_config().decode(errors="replace").strip()
            corename = lib.openblas_get_corename().decode(errors="replace").strip()
            threads = lib.openblas_get_num_threads()
            mode = {0: "sequential", 1: "pthread", 2: "openmp"}.get(
                lib.openblas_get_parallel(), "unknown")
            return config, threads, mode, corename
        except (OSError, AttributeError):
            continue
    return None


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


# OpenBLAS cores with AVX2 (or better) kernels, as openblas_get_corename()
# names them (upper-cased).
AVX2_CORES = {"HASWELL", "ZEN", "SKYLAKEX", "COOPERLAKE", "SAPPHIRERAPIDS"}
REEXEC_MARK = "AUGFLOW_PEER_CORETYPE_SET"


def fix_openblas_core(info, script):
    """OpenBLAS 0.3.21 (Debian 12) does not recognise newer CPUs (e.g. recent
    virtualised Xeons reporting "Intel(R) Xeon(R) Processor") and its
    DYNAMIC_ARCH build then falls back to the Prescott (SSE3) kernels: sgemm
    runs 3-5x slower. If that happened and the CPU has AVX-512/AVX2, re-run
    this script with OPENBLAS_CORETYPE=SkylakeX/Haswell (the core type is
    fixed when the library loads, so it cannot be changed in-process). A
    caller-set OPENBLAS_CORETYPE is respected."""
    if info is None or "OPENBLAS_CORETYPE" in os.environ or REEXEC_MARK in os.environ:
        return
    corename = info[3]
    if corename.upper() in AVX2_CORES:
        return
    flags = cpu_flags()
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        core = "SkylakeX"
    elif {"avx2", "fma"} <= flags:
        core = "Haswell"
    else:
        return
    sys.stderr.write(
        "%s: note: OpenBLAS picked the %s kernels on this %s CPU (it does not\n"
        "    recognise it); re-running with OPENBLAS_CORETYPE=%s so that the peer uses its\n"
        "    fast kernels (set OPENBLAS_CORETYPE yourself to override)\n" % (
            os.path.basename(script), corename, "AVX-512" if core == "SkylakeX" else "AVX2", core))
    sys.stderr.flush()
    sys.stdout.flush()
    env = dict(os.environ, OPENBLAS_CORETYPE=core)
    env[REEXEC_MARK] = "1"
    os.execve(sys.executable, [sys.executable, os.path.abspath(script)] + sys.argv[1:], env)


def check_blas(script):
    """Exit 1 unless the selected and loaded BLAS is OpenBLAS. Returns a
    description dict: selected alternative, loaded libraries, OpenBLAS info."""
    import torch  # already imported by the caller (after it set OPENBLAS_NUM_THREADS)
    from torch import nn
    name = os.path.basename(script)
    selected = os.path.realpath(BLAS_LINK) if os.path.exists(BLAS_LINK) else None
    # A linear layer makes torch call sgemm, so libblas.so.3 is surely loaded
    # (it is linked at import already; this is belt and braces).
    with torch.no_grad():
        nn.Linear(8, 8)(torch.ones(2, 8))
    loaded = loaded_blas_libraries()
    loaded_blas = [p for p in loaded if "lapack" not in p]
    info = openblas_info(loaded)

    if selected is None:
        sys.stderr.write("%s: error: %s does not exist (no BLAS alternative "
                         "selected?).\n%s" % (name, BLAS_LINK, BLAS_FIX))
        sys.exit(1)
    if "openblas" not in selected:
        kind = ("the reference BLAS (netlib, package libblas3), which makes torch's "
                "linear layers about 5x slower" if "/blas/" in selected
                else "not OpenBLAS")
        sys.stderr.write(
            "%s: error: the system's libblas.so.3 is %s\n"
            "    %s -> %s\n"
            "so the PyTorch peer would not run at its best.\n%s" % (
                name, kind, BLAS_LINK, selected, BLAS_FIX))
        sys.exit(1)
    if not any("openblas" in p for p in loaded_blas) or info is None:
        sys.stderr.write(
            "%s: error: OpenBLAS is selected (%s) but torch loaded %s\n"
            "(LD_LIBRARY_PATH or LD_PRELOAD overriding it?). Unset them or fix the\n"
            "alternative.\n%s" % (name, selected, ", ".join(loaded_blas) or "no BLAS", BLAS_FIX))
        sys.exit(1)
    if os.path.realpath(selected) != os.path.realpath(OPENBLAS_PTHREAD):
        sys.stderr.write(
            "%s: warning: OpenBLAS is selected but not the pthread build "
            "(%s); the figures may differ from the reference set-up (%s)\n" % (
                name, selected, OPENBLAS_PTHREAD))
    fix_openblas_core(info, script)  # may re-run the script (and not return)
    return {"selected": selected, "loaded": loaded, "openblas": info}


def blas_summary(blas):
    config, threads, mode, corename = blas["openblas"]
    forced = os.environ.get("OPENBLAS_CORETYPE")
    return "OpenBLAS %s, %s kernels%s, %s, %d threads (%s)" % (
        config.split()[1] if len(config.split()) > 1 else "?", corename,
        " (OPENBLAS_CORETYPE=%s)" % forced if forced else "", mode, threads, blas["selected"])
