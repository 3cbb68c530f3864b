#!/usr/bin/env bash
# Installs what test/interop needs on a Debian 12 machine: Debian's
# chromium (as root, only if /usr/bin/chromium is missing) and the npm
# packages pinned by package-lock.json (only if node_modules is missing or
# older than the lock file). Idempotent; prints nothing on success and the
# failing step's output on failure.
set -euo pipefail

dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
log=$(mktemp)
trap 'rm -f "$log"' EXIT

run() {
	if ! "$@" >"$log" 2>&1; then
		echo "setup.sh: failed: $*" >&2
		cat "$log" >&2
		exit 1
	fi
}

if [ ! -x /usr/bin/chromium ]; then
	sudo=""
	if [ "$(id -u)" != 0 ]; then
		sudo="sudo"
	fi
	export DEBIAN_FRONTEND=noninteractive
	# An install from a stale package list fails: refresh it first.
	run $sudo apt-get update -q
	run $sudo apt-get install -y -q --no-install-recommends chromium
fi

for tool in node npm; do
	if ! command -v "$tool" >/dev/null; then
		echo "setup.sh: $tool is not installed (Node.js 18 or newer is needed)" >&2
		exit 1
	fi
done

# The stamp records a successful npm ci of the current package-lock.json.
stamp="$dir/node_modules/.gatework-setup"
if [ ! -f "$stamp" ] || [ "$dir/package-lock.json" -nt "$stamp" ] || [ "$dir/package.json" -nt "$stamp" ]; then
	# The tests use Debian's chromium; never download a browser.
	PUPPETEER_SKIP_DOWNLOAD=1 run npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
	touch "$stamp"
fi
