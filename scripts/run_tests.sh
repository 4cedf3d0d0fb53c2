#!/usr/bin/env bash
# Run the test suite in the project environment (made on first use). Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/system_deps.sh"
python="$(bash "$root/scripts/env.sh" | tail -n 1)"
cd "$root"
exec "$python" -m pytest "$@"
