#!/usr/bin/env bash
# Installs what test/workerkit needs: the npm packages of
# examples/node-worker pinned by its package-lock.json (only if
# node_modules is missing or older than the lock file). The webhook
# backend (examples/webhook-backend) needs none. Idempotent; prints
# nothing on success and the failing step's output on failure.
set -euo pipefail

dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../examples/node-worker" && pwd)
for tool in node npm; do
	if ! command -v "$tool" >/dev/null; then
		echo "workerkit/setup.sh: $tool is not installed (Node.js 18 or newer is needed)" >&2
		exit 1
	fi
done
stamp="$dir/node_modules/.gatework-setup"
if [ ! -f "$stamp" ] || [ "$dir/package-lock.json" -nt "$stamp" ] || [ "$dir/package.json" -nt "$stamp" ]; then
	log=$(mktemp)
	trap 'rm -f "$log"' EXIT
	if ! npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >"$log" 2>&1; then
		echo "workerkit/setup.sh: npm ci failed in $dir" >&2
		cat "$log" >&2
		exit 1
	fi
	touch "$stamp"
fi
