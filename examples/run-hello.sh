#!/usr/bin/env bash
# Run the hello example end to end: import the busybox image, `berth up -d`, show what the client
# fetched by service name and what the published port serves on the host, then `berth down`.
# Needs root (namespaces, bridges). BERTH=path/to/berth (default: target/release/berth).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export BERTH="${BERTH:-$here/../target/release/berth}"
"$here/make-busybox-image.sh" berth-example/busybox:latest
cd "$here/hello"
"$BERTH" up -d
"$BERTH" ps
for _ in $(seq 1 20); do "$BERTH" logs --no-log-prefix client | grep -q . && break; sleep 0.5; done
echo "--- client fetched http://server/:"
"$BERTH" logs --no-log-prefix client
echo "--- host fetches http://127.0.0.1:${HELLO_PORT:-8080}/:"
curl -fsS "http://127.0.0.1:${HELLO_PORT:-8080}/"
"$BERTH" down
