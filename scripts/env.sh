#!/usr/bin/env bash
# Make (or reuse) the Python environment for ldct-clip and print its python path on the last line.
#
# The environment lives outside the checkout, keyed by the hash of pyproject.toml, so fresh clones (CI) reuse
# it while the dependencies stay the same, and a change of dependencies gets a new one. It is only marked
# ready after a complete install, so an interrupted install is redone rather than trusted.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
key="$(cat "$root/pyproject.toml" | sha256sum | cut -c1-12)"
venv="${LDCT_CLIP_VENV:-$HOME/.cache/ldct-clip/venv-$key}"
py="${PYTHON:-python3}"

if [ ! -f "$venv/.ready" ]; then
    echo "creating environment $venv (torch + CUDA wheels: a few minutes on a fresh machine)" >&2
    rm -rf "$venv"
    "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip >&2
    # torch and torchvision come from the registry as a matching pair (no pin on the local CPU wheel)
    "$venv/bin/python" -m pip install -q -e "$root[test]" >&2
    touch "$venv/.ready"
else
    # point the editable install at this checkout (a fresh clone lives elsewhere); dependencies are already there
    "$venv/bin/python" -m pip install -q --no-deps -e "$root" >&2
fi
echo "$venv/bin/python"
