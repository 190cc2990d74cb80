#!/usr/bin/env bash
# Runs every fuzz target in the module (func FuzzXxx in a _test.go file)
# for FUZZTIME each (default 10s), one after the other. The committed seed
# corpora in <pkg>/testdata/fuzz/<FuzzName>/ also run as ordinary tests in
# `go test`. A failing input is written to testdata/fuzz/<FuzzName>/ and the
# script exits non-zero; commit that file with the fix as a regression seed.
#
#   .ci/fuzz.sh                      # all targets, 10s each
#   FUZZTIME=5m .ci/fuzz.sh ./shard  # one package, longer
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME="${FUZZTIME:-10s}"
pkgs=("$@")
if [ ${#pkgs[@]} -eq 0 ]; then
	pkgs=(./...)
fi
failed=0
while read -r pkg dir; do
	targets=$(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u || true)
	for f in $targets; do
		echo "=== fuzz $pkg $f for $FUZZTIME"
		if ! go test -run='^$' -fuzz="^${f}\$" -fuzztime="$FUZZTIME" "$pkg"; then
			echo "--- FAIL: $pkg $f" >&2
			failed=1
		fi
	done
done < <(go list -f '{{.ImportPath}} {{.Dir}}' "${pkgs[@]}")
exit $failed
