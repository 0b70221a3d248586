#!/usr/bin/env bash
# The whole test suite. Installs moto's server (PyPI moto[server]) if it is missing; the
# tests start it themselves on a free loopback port (see tests/moto_server.py).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c "import moto.moto_server.werkzeug_app, werkzeug" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check 'moto[server]'
fi
cargo test --workspace
