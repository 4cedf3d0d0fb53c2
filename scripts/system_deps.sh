#!/usr/bin/env bash
# Debian packages the tests use: dicom3tools (dciodvfy, the DICOM conformance checker); orthanc and
# orthanc-dicomweb (a real PACS with DICOMweb on 127.0.0.1, for tests/test_pacs.py and tests/test_monailabel.py;
# the tests start their own Orthanc with a generated configuration, never the system service); chromium, nodejs
# and npm (tests/test_viewer.py opens the derived series in OHIF, fetched from npm by scripts/setup_viewer.sh,
# with headless chromium); util-linux's mount (tests/test_fault_disk_full.py mounts a small tmpfs).
set -euo pipefail
missing=()
command -v dciodvfy >/dev/null 2>&1 || missing+=(dicom3tools)
command -v Orthanc >/dev/null 2>&1 || missing+=(orthanc)
ls /usr/share/orthanc/plugins/libOrthancDicomWeb.so* >/dev/null 2>&1 || missing+=(orthanc-dicomweb)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v mount >/dev/null 2>&1 || missing+=(mount)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        # (a system Orthanc service that the package may start, on port 8042, is not used by the tests)
        apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
    else
        echo "note: install ${missing[*]} (apt-get) for the DICOM conformance, PACS and viewer tests" >&2
    fi
fi
