"""Shared pieces of the benchmarks: environment, result rows, data, timing, child processes.

Nothing in the package imports this; ``run.py`` and the section modules beside it do.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Read when the Hugging Face libraries are imported: set before any of them is.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
SEED = 0
PACKAGES = (
    "torch",
    "transformers",
    "datasets",
    "evaluate",
    "accelerate",
    "albumentations",
    "opencv-python-headless",
    "pillow",
    "numpy",
)


@dataclass
class Row:
    """One line of the results table.

    ``ratio`` is ours / baseline for rates (higher is better) and is stated per row otherwise;
    ``met`` is None for figures without a goal.
    """

    section: str
    figure: str
    ours: str
    baseline: str
    ratio: float | None
    goal: str = "-"
    met: bool | None = None
    note: str = ""


@dataclass
class SectionResult:
    rows: list[Row] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    seconds: float = 0.0


def fmt(value: float, digits: int = 3) -> str:
    """A number with ``digits`` significant digits, no exponent for everyday magnitudes."""
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:.0f}"
    return f"{value:.{digits - 1}e}"


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def machine_info() -> dict[str, str]:
    """Hardware, software and code version, recorded next to every result."""
    import importlib.metadata as metadata

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    import torch

    info = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join(["python", *map(_portable, sys.argv)]),
        "cpu": cpu,
        "cores": f"{len(os.sched_getaffinity(0))} usable of {os.cpu_count()}",
        "memory": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB",
        "torch_threads": str(torch.get_num_threads()),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
        "python": platform.python_version(),
        "commit": _git_commit(),
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    info["summary"] = (
        f"{info['date']}; {info.get('gpu', cpu)}, {info['cores']} cores, "
        f"{info['memory']}; Python {info['python']}; {info['versions']}; commit {info['commit']}"
    )
    return info


def _portable(arg: str) -> str:
    """An argument as a user would type it: repository paths relative, no local prefix."""
    try:
        return str(Path(arg).resolve().relative_to(REPO_ROOT))
    except (ValueError, OSError):
        return arg


def format_table(headers: list[str], rows: list[list]) -> str:
    """A Markdown table: one header row, then ``rows`` (cells already formatted, or numbers)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        cells = [fmt(c) if isinstance(c, float) else str(c) for c in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _git_commit() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return f"{commit}{' (modified)' if dirty else ''}" or "unknown"
    except OSError:
        return "unknown"


def make_photos(root: Path, n: int, seed: int = SEED) -> Path:
    """Write (once) ``n`` synthetic hand photos, 320-800 px, with masks, under ``root``."""
    from nail_segformer.synthetic import generate_dataset

    if not (root / "Images").is_dir():
        generate_dataset(root, n=n, seed=seed)
    return root


def photo_paths(root: Path) -> list[Path]:
    return sorted((root / "Images").rglob("*.jpg"))


def seed_everything(seed: int = SEED) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run_child(
    module: str, args: dict, env: dict[str, str | None] | None = None, timeout: float = 3600
):
    """Run ``python benchmarks/<module>.py --child '<json args>'`` and return its JSON result.

    Each measurement that needs a clean process (peak RSS, process-wide options) runs this way.
    ``env`` is laid over this process's environment; a value of None removes that variable.
    The child prints exactly one line starting with ``RESULT `` followed by JSON.
    """
    cmd = [sys.executable, str(BENCH_DIR / f"{module}.py"), "--child", json.dumps(args)]
    full_env = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    done = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(
        f"benchmark child {module} {args} failed (exit {done.returncode}):\n"
        f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    )


def child_main(handlers: dict) -> bool:
    """If this process was started by :func:`run_child`, run the named job and print its result.

    Before any job imports torch, the child sets the process option of the package's evaluation
    entry points (:func:`nail_segformer.runtime.configure_cli_process`: the fixed mmap
    threshold), so that "on" and "off" rows compare it; ``NAIL_SEGFORMER_PROCESS_OPTIONS=0`` in
    its environment turns it off. The result records what was set, under ``process_options``.
    """
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        from nail_segformer.runtime import configure_cli_process

        applied = configure_cli_process()
        args = json.loads(sys.argv[2])
        result = handlers[args.pop("job")](**args)
        result["process_options"] = applied
        print("RESULT " + json.dumps(result), flush=True)
        return True
    return False


def as_dict(row: Row) -> dict:
    return asdict(row)
