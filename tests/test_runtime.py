"""Process options set by the command-line entry points (nail_segformer.runtime)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
_PROBE = (
    "import json, os; from nail_segformer.runtime import configure_cli_process; "
    "applied = configure_cli_process(); "
    "print(json.dumps([applied, os.environ.get('OMP_WAIT_POLICY')]))"
)


def _probe(**env_changes: str | None) -> tuple[dict, str | None]:
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
        [sys.executable, "-c", _PROBE], env=env, cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    applied, policy = json.loads(out.stdout)
    return applied, policy


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_both_options_are_set_by_default():
    applied, policy = _probe()
    assert policy == "PASSIVE"
    assert applied == {"OMP_WAIT_POLICY": "PASSIVE", "M_MMAP_THRESHOLD": str(1 << 20)}


def test_values_the_user_set_are_kept():
    applied, policy = _probe(OMP_WAIT_POLICY="ACTIVE", MALLOC_MMAP_THRESHOLD_="65536")
    assert policy == "ACTIVE" and applied == {}


@pytest.mark.parametrize("value", ["0", "false", "off"])
def test_the_switch_turns_both_off(value):
    applied, policy = _probe(NAIL_SEGFORMER_PROCESS_OPTIONS=value)
    assert applied == {} and policy is None


@pytest.mark.parametrize("package", ["nail_segformer.train", "nail_segformer.predict"])
def test_entry_point_packages_import_torch_only_when_used(package):
    # `python -m nail_segformer.X` imports the package before __main__ sets OMP_WAIT_POLICY.
    code = f"import sys, {package}; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert out.stdout.strip() == "False", out.stderr
