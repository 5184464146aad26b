#!/usr/bin/env bash
# Vendors the operator console's browser dependencies (uPlot) into
# console/static/vendor: `npm ci` on the committed console/package.json and
# package-lock.json, then the dist files are copied. The vendored files are
# committed (the binary embeds them; nothing is fetched at run time or at
# build time); node_modules is not. Run it after changing the version in
# package.json (then `npm install --package-lock-only` first to update the
# lock file). `make console-vendor` runs it.
set -euo pipefail
cd "$(dirname "$0")/../console"
command -v npm >/dev/null 2>&1 || { echo "vendor-console: npm not on PATH (Debian: apt-get install npm)" >&2; exit 1; }
npm ci --ignore-scripts --no-audit --no-fund
src=node_modules/uplot
dst=static/vendor
mkdir -p "$dst"
cp "$src/dist/uPlot.iife.min.js" "$dst/uPlot.iife.min.js"
cp "$src/dist/uPlot.min.css" "$dst/uPlot.min.css"
cp "$src/LICENSE" "$dst/uPlot.LICENSE"
version=$(node -p 'require("./node_modules/uplot/package.json").version')
echo "uPlot $version (npm package uplot; files copied by scripts/vendor-console.sh)" >"$dst/VERSIONS"
rm -rf node_modules
echo "vendored uPlot $version into console/$dst"
