"""What every benchmark shares: the machine it ran on, a table, photos, a fresh process per figure.

Importing it first sets the offline variables the Hugging Face libraries read on import.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
SEED = 0
PACKAGES = ("torch", "transformers", "datasets", "evaluate", "accelerate", "albumentations", "onnxruntime",
            "opencv-python-headless", "pillow", "numpy")  # fmt: skip


def machine_info() -> dict[str, str]:
    """Date, command, hardware, versions and commit, printed next to every result."""
    import importlib.metadata as metadata

    import torch

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                if line.startswith("model name")), cpu)  # fmt: skip
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} missing")
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join(["python", *map(_portable, sys.argv)]),
        "cpu": torch.cuda.get_device_name() if torch.cuda.is_available() else cpu,
        "cores": f"{len(os.sched_getaffinity(0))} usable of {os.cpu_count()}",
        "memory": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB",
        "versions": f"Python {platform.python_version()}; " + ", ".join(versions),
        "commit": _git_commit(),
    }
    info["summary"] = (
        f"{info['date']}; {info['cpu']}, {info['cores']} cores, {info['memory']}; "
        f"{info['versions']}; commit {info['commit']}"
    )
    return info


def _portable(arg: str) -> str:
    """An argument as a user would type it: repository paths relative, no local prefix."""
    try:
        return str(Path(arg).resolve().relative_to(REPO_ROOT))
    except (ValueError, OSError):
        return arg


def _git_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True,
                              text=True).stdout.strip()  # fmt: skip

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except OSError:
        return "unknown"
    return f"{commit}{' (modified)' if dirty else ''}" or "unknown"


def format_table(headers: list[str], rows: list[list]) -> str:
    """A Markdown table; float cells get three significant digits."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        lines.append(
            "| " + " | ".join(f"{c:.3g}" if isinstance(c, float) else str(c) for c in row) + " |"
        )
    return "\n".join(lines)


def peak_mib() -> int:
    """This process's peak resident memory (VmHWM: unlike ``ru_maxrss``, it does not carry a
    parent's peak across fork and exec)."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) // 1024


def make_photos(root: Path, n: int, seed: int = SEED) -> Path:
    """Write (once) ``n`` synthetic hand photos, 320-800 px, with masks, under ``root``."""
    from nail_segformer.synthetic import generate_dataset

    if not (root / "Images").is_dir():
        generate_dataset(root, n=n, seed=seed)
    return root


def run_child(script: str, args: dict, timeout: float = 3600):
    """The result of ``python benchmarks/<script>.py --child '<json args>'``: a fresh process,
    so that peak memory and process-wide settings belong to one measurement."""
    cmd = [sys.executable, str(BENCH_DIR / f"{script}.py"), "--child", json.dumps(args)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"benchmark child {script} {args} failed (exit {done.returncode}):\n"
                       f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}")  # fmt: skip


def child_main(jobs: dict) -> bool:
    """In a process :func:`run_child` started, set what the package's entry points set
    (``configure_cli_process``), run the named job and print its result."""
    if len(sys.argv) != 3 or sys.argv[1] != "--child":
        return False
    from nail_segformer.runtime import configure_cli_process

    configure_cli_process()
    args = json.loads(sys.argv[2])
    print("RESULT " + json.dumps(jobs[args.pop("job")](**args)), flush=True)
    return True
