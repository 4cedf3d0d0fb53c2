#!/usr/bin/env bash
# Make (or reuse) the Python environment for ldct-clip and print its python path on the last line.
#
# The environment lives outside the checkout, keyed by the hash of pyproject.toml and of the versions the
# bundle's metadata.json pins, so fresh clones (CI) reuse it while the dependencies stay the same, and a change of dependencies
# gets a new one. It is only marked ready after a complete install, so an interrupted install is redone rather
# than trusted.
#
# The versions come from the bundle's configs/metadata.json (monai_version, pytorch_version, numpy_version,
# required_packages_version): the suite runs on exactly the versions the bundle
# declares, and the model zoo's CI installs the same ones from it. pyproject.toml keeps ranges for users.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-python3}"
# the pins as pip constraints, from the bundle's metadata
constraints="$("$py" - "$root/ldct_clip/monai_bundle/configs/metadata.json" <<'PYEOF'
import json, sys
meta = json.load(open(sys.argv[1]))
pins = {"monai": meta["monai_version"], "torch": meta["pytorch_version"], "numpy": meta["numpy_version"]}
pins.update(meta["required_packages_version"])
pins.pop("ldct-clip", None)  # the project itself, installed from this checkout
print("\n".join(f"{name}=={version}" for name, version in pins.items()))
PYEOF
)"
key="$( { cat "$root/pyproject.toml"; echo "$constraints"; } | sha256sum | cut -c1-12)"
venv="${LDCT_CLIP_VENV:-$HOME/.cache/ldct-clip/venv-$key}"

if [ ! -f "$venv/.ready" ]; then
    echo "creating environment $venv (torch + CUDA wheels: a few minutes on a fresh machine)" >&2
    rm -rf "$venv"
    "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip >&2
    echo "$constraints" > "$venv/constraints.txt"
    # torch and torchvision come from the registry as a matching pair: torch is pinned by the metadata and
    # pip picks the torchvision that matches it (no pin on the local CPU wheel)
    "$venv/bin/python" -m pip install -q -c "$venv/constraints.txt" -e "$root[test]" >&2
    touch "$venv/.ready"
else
    # point the editable install at this checkout (a fresh clone lives elsewhere); dependencies are already there
    "$venv/bin/python" -m pip install -q --no-deps -e "$root" >&2
fi
echo "$venv/bin/python"
