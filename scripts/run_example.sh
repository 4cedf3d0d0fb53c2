#!/usr/bin/env bash
# The main job on the built-in example: make a low-dose CT sample offline, denoise it with the MONAI bundle.
# Outputs (NIfTI, derived DICOM series, PNG) go to ${1:-example_output}.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-example_output}"
python="$(bash "$root/scripts/env.sh" | tail -n 1)"
"$python" "$root/scripts/make_example.py" "$out/input"
# no trained weights ship with the project: run untrained and say so (the workflow prints a warning)
"$python" -m monai.bundle run \
    --config_file "$root/monai_bundle/configs/inference.json" \
    --meta_file "$root/monai_bundle/configs/metadata.json" \
    --logging_file "$root/monai_bundle/configs/logging.conf" \
    --dataset_dir "$out/input" --output_dir "$out/denoised" \
    --allow_untrained True
echo "outputs in $out/denoised (PNG: input, denoised, difference at a soft-tissue window)"
