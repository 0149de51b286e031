#!/usr/bin/env bash
# Prints the wall time of each compilation step of the last build, slowest first, from Ninja's log.
# Run it after a clean build (`rm -rf build && ./scripts/test.sh`) for figures like those in
# docs/performance.md. Times under parallel builds include contention for the cores (see `jobs` below).
#
# Usage: scripts/compile_times.sh [build-dir] [how-many]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$repo/build}
most=${2:-40}
log="$build/.ninja_log"
[ -f "$log" ] || { echo "no $log: build with Ninja first" >&2; exit 2; }
# .ninja_log v5: start_ms end_ms mtime output hash. Keep the last entry per output.
awk -F'\t' 'NR > 1 { t[$4] = ($2 - $1) / 1000.0 } END { for (o in t) printf "%8.1f s  %s\n", t[o], o }' "$log" |
  sort -rn | head -n "$most"
awk -F'\t' 'NR > 1 { t[$4] = ($2 - $1) / 1000.0 } END { s = 0; n = 0; for (o in t) { s += t[o]; n++ } printf "%8.1f s  in all, %d steps\n", s, n }' "$log"
