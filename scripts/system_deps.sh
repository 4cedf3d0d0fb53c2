#!/usr/bin/env bash
# Debian packages the tests use: dicom3tools (dciodvfy, the DICOM conformance checker).
set -euo pipefail
missing=()
command -v dciodvfy >/dev/null 2>&1 || missing+=(dicom3tools)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
    else
        echo "note: install ${missing[*]} (apt-get) for the DICOM conformance tests" >&2
    fi
fi
