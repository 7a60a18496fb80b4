"""Process options set by the command-line entry points (nail_segformer.runtime)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
_PROBE = (
    "import json, os, sys; from nail_segformer.runtime import configure_cli_process; "
    "applied = configure_cli_process(*sys.argv[1:]); "
    "print(json.dumps([applied, os.environ.get('OMP_WAIT_POLICY')]))"
)


def _probe(*args: str, **env_changes: str | None) -> tuple[dict, str | None]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OMP_WAIT_POLICY", "MALLOC_MMAP_THRESHOLD_")
    }
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    applied, policy = json.loads(out.stdout)
    return applied, policy


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
@pytest.mark.parametrize("training_device", [None, "cuda"])
def test_the_mmap_threshold_is_fixed_for_prediction_and_gpu_training(training_device):
    applied, policy = _probe(*([training_device] if training_device else []))
    assert applied == {"M_MMAP_THRESHOLD": str(1 << 20)}
    assert policy is None  # measured slower on an idle machine: left to the user


def test_training_on_the_cpu_keeps_glibc_defaults():
    # The fixed threshold made CPU training steps ~1.3x slower (benchmarks/RESULTS.md).
    applied, _ = _probe("cpu")
    assert applied == {}


def test_a_threshold_the_user_set_is_kept():
    applied, _ = _probe(MALLOC_MMAP_THRESHOLD_="65536")
    assert applied == {}


@pytest.mark.parametrize("value", ["0", "false", "off"])
def test_the_switch_turns_it_off(value):
    applied, _ = _probe(NAIL_SEGFORMER_PROCESS_OPTIONS=value)
    assert applied == {}


@pytest.mark.parametrize("package", ["nail_segformer.train", "nail_segformer.predict"])
def test_entry_point_packages_import_torch_only_when_used(package):
    # `python -m nail_segformer.X` imports the package first: keep that cheap.
    code = f"import sys, {package}; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert out.stdout.strip() == "False", out.stderr
