"""The machine a measurement was made on: every report and every cached cost curve records it,
since speed ratios on one machine need not hold on another. A leaf module (calibration and the
benchmark both use it)."""

from __future__ import annotations

import os
import platform
import resource
import sys
from importlib import metadata


def machine_info(dtype: str, threads: int | None = None) -> dict:
    """CPU, cores, threads, memory, OS, library versions and GPU, as a flat str/number dict."""
    import torch  # here, so that cpu_model() and peak_rss_mb() stay cheap to import

    info = {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "torch_threads": threads or torch.get_num_threads(),
        "ram_gb": total_ram_gb(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "dtype": dtype,
    }
    for package in ("torch", "transformers", "llama-cpp-python", "decodekit"):
        info[package] = _version(package)
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass  # not Linux
    return platform.processor() or platform.machine() or "unknown"


def total_ram_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass  # sysconf names are POSIX-only
    try:
        import psutil

        return round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        return None


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        if package == "decodekit":  # run from a source tree that was never installed
            from decodekit.version import __version__

            return __version__
        return "not installed"
