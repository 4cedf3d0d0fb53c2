#!/usr/bin/env bash
# Make (or reuse) the separate MONAI Label environment and print its python path on the last line.
#
# monailabel 0.8.5 (the newest release) pins numpy < 2 (through pydicom-seg) and brings sam2, so it cannot
# share the main ldct-clip environment (numpy 2.x). This one has Python 3.11, numpy 1.26, monailabel 0.8.5
# (installed without its dependency list: sam2, mlflow, girder, openslide, ... are not needed to serve
# ldct-clip; the server's real dependencies are listed below) and ldct-clip itself (editable).
#
# torch: the CUDA build of torch + torchvision + nvidia-* is about 5 GB. When the main environment already has
# torch for the same Python version, the new environment links those packages in (a .pth file naming a folder
# of symlinks to exactly torch, torchvision, triton, nvidia-*, cuda-* of the main environment) instead of
# downloading them again; numpy, scipy, ... stay the environment's own. Set LDCT_CLIP_ML_OWN_TORCH=1 to
# install torch into it instead (slow, self-contained).
#
# Environment variables:
#   LDCT_CLIP_MAIN_PYTHON   python of the main environment (default: python3 if it imports torch, else
#                           the one scripts/env.sh makes)
#   LDCT_CLIP_ML_VENV       where to put the environment (default ~/.cache/ldct-clip/monailabel-venv-<key>)
#   LDCT_CLIP_ML_OWN_TORCH  1: install torch into the environment instead of linking the main one
#   PYTHON311               the Python 3.11 interpreter (default python3.11)
#
# The environment is keyed by ENV_REVISION and the versions below, pyproject.toml and the main torch it links; it is marked ready
# only after a complete install and an import check, so an interrupted install is redone, not trusted.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${LDCT_CLIP_CACHE:-$HOME/.cache/ldct-clip}"
py311="${PYTHON311:-python3.11}"
own_torch="${LDCT_CLIP_ML_OWN_TORCH:-0}"

ENV_REVISION=1  # bump when the install steps below change in a way that needs a new environment
MONAILABEL_VERSION=0.8.5
NUMPY_VERSION=1.26.4
# What `monailabel start_server` and its bundle infer task import (monailabel 0.8.5's Requires-Dist less
# sam2, numpymaxflow, scikit-learn, ninja and einops, which only its sample apps use), and MONAI's optional
# packages that its infer tasks import (itk, pynrrd: monailabel.transform.writer; itk-io and the itk-core it
# brings are all that writer uses: 0.55 GB instead of the 1.5 GB of the whole itk).
SERVER_DEPS=(
    "uvicorn>=0.29.0" "pydantic>=2.7.0" "pydantic-settings>=2.2.1" "python-dotenv>=1.0.1" "fastapi>=0.110.2"
    "python-multipart>=0.0.9" "httpx>=0.27.0" "schedule>=1.2.1" "dicomweb-client>=0.59.1" "timeloop>=1.0.2"
    "expiringdict>=1.2.2" "expiring_dict>=1.1.0" "cachetools>=5.3.3" "watchdog>=4.0.0" "pydicom-seg>=0.4.1"
    "pynetdicom>=2.0.2" "pynrrd>=1.0.0" "pyyaml>=6.0.1" "filelock>=3.11.0" "passlib>=1.7.4" "pyjwt>=2.8.0"
    "bcrypt>=4.1.2" "requests>=2.31.0" "requests-toolbelt>=1.0.0" "urllib3>=2.2.1" "google-auth>=2.29.0"
    "girder-client>=3.2.3" "shapely>=2.0.4" "psutil" "itk-io>=5.3" "jsonschema<4"
    "pytest"  # to run the project's tests under numpy 1.26 too
)

command -v "$py311" >/dev/null 2>&1 || { echo "error: $py311 not found (MONAI Label 0.8.5 needs Python 3.11)" >&2; exit 1; }

# -- the main environment's torch, to link instead of downloading again --------------------------------------
torch_site=""
torch_pins=""
if [ "$own_torch" != 1 ]; then
    main_py="${LDCT_CLIP_MAIN_PYTHON:-}"
    if [ -z "$main_py" ]; then
        if python3 -c "import torch, torchvision" >/dev/null 2>&1; then main_py="$(command -v python3)";
        else main_py="$(bash "$root/scripts/env.sh" | tail -n 1)"; fi
    fi
    info="$("$main_py" - <<'EOF' 2>/dev/null || true
import os, sys, importlib.metadata as md
import torch
print(f"{sys.version_info[0]}.{sys.version_info[1]}")
print(os.path.dirname(os.path.dirname(os.path.realpath(torch.__file__))))
print(md.version("torch"), md.version("torchvision"))
EOF
)"
    main_ver="$(sed -n 1p <<<"$info")"
    want_ver="$("$py311" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    if [ -n "$info" ] && [ "$main_ver" = "$want_ver" ]; then
        torch_site="$(sed -n 2p <<<"$info")"
        read -r tv tvv <<<"$(sed -n 3p <<<"$info")"
        torch_pins="torch==$tv torchvision==$tvv"
    else
        echo "note: no torch for Python $want_ver in the main environment ($main_py); installing torch into the MONAI Label environment" >&2
        own_torch=1
    fi
fi

key="$( { cat "$root/pyproject.toml"; echo "$ENV_REVISION $MONAILABEL_VERSION $NUMPY_VERSION ${SERVER_DEPS[*]}";
          echo "$torch_site $torch_pins $own_torch"; } | sha256sum | cut -c1-12)"
venv="${LDCT_CLIP_ML_VENV:-$cache/monailabel-venv-$key}"
# outside the venv's prefix, so that pip never treats (and uninstalls) the linked packages as its own
links="$cache/monailabel-torch-links-$key"

# one build at a time: a second run (another test session, CI step) waits, then reuses the finished environment
mkdir -p "$cache"
exec 9>"$cache/monailabel-venv-$key.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi

links_ok() {  # the symlinks still point at an existing torch
    [ "$own_torch" = 1 ] || [ -e "$links/torch/__init__.py" ]
}

if [ -f "$venv/.ready" ] && links_ok; then
    # point the editable install at this checkout (a fresh clone lives elsewhere); dependencies are already there
    "$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$root" >&2
    echo "$venv/bin/python"
    exit 0
fi

start=$SECONDS
echo "creating MONAI Label environment $venv (monailabel $MONAILABEL_VERSION, numpy $NUMPY_VERSION)" >&2
rm -rf "$venv" "$links"
"$py311" -m venv "$venv"
vpy="$venv/bin/python"
site="$("$vpy" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
"$vpy" -m pip install -q --upgrade pip setuptools wheel >&2
constraints="$venv/constraints.txt"
printf '%s\n' "numpy==$NUMPY_VERSION" "jsonschema<4" > "$constraints"

if [ "$own_torch" != 1 ]; then
    mkdir -p "$links"
    shopt -s nullglob
    for entry in "$torch_site"/{torch,torchgen,functorch,torchvision,triton,nvidia,cuda} \
                 "$torch_site"/{torch,torchvision,triton,nvidia_,cuda_}*.dist-info "$torch_site"/torchvision.libs; do
        name="$(basename "$entry")"
        [ -e "$links/$name" ] || ln -s "$entry" "$links/$name"
    done
    shopt -u nullglob
    echo "$links" > "$site/ldct_clip_linked_torch.pth"
    # pip sees the linked torch as installed: pin it so that no dependency asks for another one
    printf '%s\n' $torch_pins >> "$constraints"
fi

"$vpy" -m pip install -q -c "$constraints" -e "$root" "${SERVER_DEPS[@]}" >&2
"$vpy" -m pip install -q --no-deps "monailabel==$MONAILABEL_VERSION" >&2
# pydicom-seg 0.4.1 (imported by MONAI Label at start-up, used only for DICOM SEG, which this project never
# writes) imports pydicom 2's private module pydicom._storage_sopclass_uids; pydicom 3 (which ldct-clip and
# dicomweb-client need) has the same names in pydicom.uid. Give it that module, in this environment only.
cat > "$site/pydicom/_storage_sopclass_uids.py" <<'PY'
"""pydicom 2's SOP class UID module for pydicom-seg 0.4.1, from pydicom 3's pydicom.uid (ldct-clip shim)."""
from pydicom import uid as _uid

globals().update({k: v for k, v in vars(_uid).items() if isinstance(v, _uid.UID)})
PY

# check that the server, the bundle code and the DICOMweb datastore import, with numpy 1.26
"$vpy" - <<EOF >&2
import numpy, torch, torchvision
assert numpy.__version__ == "$NUMPY_VERSION", numpy.__version__
import monailabel.main, monailabel.app, monailabel.tasks.infer.bundle, monailabel.datastore.dicom  # noqa: F401
import ldct_clip.networks, ldct_clip.inference, ldct_clip.pacs  # noqa: F401
print(f"MONAI Label environment ok: monailabel {monailabel.__version__}, numpy {numpy.__version__}, torch {torch.__version__}")
EOF
touch "$venv/.ready"
echo "MONAI Label environment ready in $((SECONDS - start)) s" >&2
echo "$vpy"
