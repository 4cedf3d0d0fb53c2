#!/usr/bin/env bash
# The main job on the built-in example: make a low-dose CT sample offline, denoise it with the MONAI bundle.
# Outputs (NIfTI, derived DICOM series, PNG) go to ${1:-example_output}.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-example_output}"
python="$(bash "$root/scripts/env.sh" | tail -n 1)"
"$python" "$root/scripts/make_example.py" "$out/input"
# the shipped demo weights (ldct_clip/pretrained/demo_ct.pt): demo weights trained on synthetic data, not the
# paper's CLIP model; LDCT_CLIP_WEIGHTS=/path/to/model.pt runs other weights
weights="${LDCT_CLIP_WEIGHTS:-demo}"
echo "weights: $weights$([ "$weights" = demo ] && echo " (demo weights trained on synthetic data, not the paper's CLIP model)")"
"$python" -m monai.bundle run \
    --config_file "$root/monai_bundle/configs/inference.json" \
    --meta_file "$root/monai_bundle/configs/metadata.json" \
    --logging_file "$root/monai_bundle/configs/logging.conf" \
    --dataset_dir "$out/input" --output_dir "$out/denoised" \
    --weights "$weights"
echo "outputs in $out/denoised (PNG: input, denoised, difference at a soft-tissue window)"
