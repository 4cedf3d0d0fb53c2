#!/usr/bin/env bash
# Make (or reuse) the viewer test's npm folder and print its path on the last line.
#
# tests/test_viewer.py opens the derived series in OHIF, the web viewer MONAI Label users work in: the
# published @ohif/app package holds its built static app (dist/), served by the test next to Orthanc's
# DICOMweb; playwright-core drives Debian's chromium (scripts/system_deps.sh installs it) headless.
# Pinned versions; the folder is keyed by them and marked ready only after a complete install.
set -euo pipefail
OHIF_VERSION=3.13.2
PLAYWRIGHT_VERSION=1.65.2
cache="${LDCT_CLIP_CACHE:-$HOME/.cache/ldct-clip}"
dir="$cache/viewer-ohif-$OHIF_VERSION-playwright-$PLAYWRIGHT_VERSION"
command -v npm >/dev/null 2>&1 || { echo "error: npm not found (apt-get install npm)" >&2; exit 1; }
mkdir -p "$cache"
exec 9>"$dir.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi
if [ ! -f "$dir/.ready" ]; then
    rm -rf "$dir"
    mkdir -p "$dir"
    echo '{"name": "ldct-clip-viewer-test", "private": true}' > "$dir/package.json"
    # playwright-core has no dependencies and never downloads a browser by itself
    npm install --prefix "$dir" --no-audit --no-fund --ignore-scripts --loglevel=error \
        "playwright-core@$PLAYWRIGHT_VERSION" >&2
    # @ohif/app: only its published, prebuilt dist/ is needed, not its build dependencies (which npm cannot
    # even resolve: @ohif/i18n@3.13.2 is not published), so fetch the package itself (npm checks its integrity)
    (cd "$dir" && npm pack --silent "@ohif/app@$OHIF_VERSION" >&2)
    mkdir -p "$dir/ohif"
    tar -xzf "$dir"/ohif-app-"$OHIF_VERSION".tgz -C "$dir/ohif" --strip-components=1
    rm -f "$dir"/ohif-app-"$OHIF_VERSION".tgz
    test -f "$dir/ohif/dist/index.html"
    touch "$dir/.ready"
fi
echo "$dir"
