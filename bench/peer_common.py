"""Helpers shared by the Python peer benchmarks (bench/*.py)."""


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
