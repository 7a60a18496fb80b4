"""The declared dependencies: what the package imports is declared, and each floor is tested.

.ci/run installs .ci/lowest.txt (the floors, pinned) and runs part of the suite on it; these
checks keep requirements.txt saying exactly what that run proves.
"""

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Import names whose distribution is named differently.
DISTRIBUTIONS = {"cv2": "opencv-python-headless", "PIL": "pillow", "yaml": "pyyaml"}


def _requirements(path: Path) -> dict[str, str]:
    """Distribution name (normalised) to its specifier, from a requirements file."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, spec = re.match(r"([A-Za-z0-9_.-]+)\s*(.*)", line).groups()
            found[name.lower().replace("_", "-")] = spec.replace(" ", "")
    return found


def _floor(spec: str) -> str | None:
    match = re.search(r"(?:>=|==)([^,]+)", spec)
    return match.group(1) if match else None


def _same_version(a: str, b: str) -> bool:
    pad = lambda v: [int(p) for p in v.split(".")] + [0] * (4 - len(v.split(".")))  # noqa: E731
    return pad(a) == pad(b)


def _third_party_imports() -> set[str]:
    names = set()
    for path in (ROOT / "nail_segformer").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    optional = {
        "onnx",
        "onnxruntime",
        "matplotlib",
        "pandas",
        "nbclient",
        "nbformat",
        "pillow_heif",
        "gradio",  # the [app] extra
    }
    return names - set(sys.stdlib_module_names) - {"nail_segformer", "_squash_crop"} - optional


def test_every_imported_library_is_declared():
    declared = set(_requirements(ROOT / "requirements.txt"))
    imported = {DISTRIBUTIONS.get(n, n).lower().replace("_", "-") for n in _third_party_imports()}
    assert imported - declared == set()


def test_every_floor_is_the_version_ci_installs():
    declared = _requirements(ROOT / "requirements.txt")
    pinned = {
        name: spec.removeprefix("==")
        for name, spec in _requirements(ROOT / ".ci/lowest.txt").items()
    }
    assert set(pinned) == set(declared) - {"torch"}  # torch: the CPU build CI installs first
    for name, version in pinned.items():
        assert _same_version(_floor(declared[name]), version), (name, declared[name], version)
