#!/usr/bin/env bash
# Installs the system tools the tests drive for real (Debian packages), when missing.
# Run by `make test`. Needs root and apt-get; elsewhere it says what to install, and the
# tests that need a missing tool skip (or fail, under MAGERL_REQUIRE_TOOLS=1 as in CI).
set -euo pipefail
declare -A package_of=([promtool]=prometheus [amtool]=prometheus-alertmanager)
missing=()
for tool in "${!package_of[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${package_of[$tool]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: tests need Debian packages: ${missing[*]} (install them, or those tests skip)" >&2
  exit 0
fi
echo "installing Debian packages: ${missing[*]}" >&2
ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1 || apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
