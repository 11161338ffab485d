#!/usr/bin/env bash
# Installs the system tools the tests drive for real, when missing: Debian's Prometheus
# (promtool) and Alertmanager (amtool), and Fluent Bit 1.8 built from source into
# .cache/fluent-bit (Debian has no package; scripts/build-fluent-bit.sh, ~80 s).
# Run by `make test`. Needs root and apt-get; elsewhere it says what is missing, and the
# tests that need a missing tool skip (or fail, under MAGERL_REQUIRE_TOOLS=1 as in CI).
set -euo pipefail
cd "$(dirname "$0")/.."
declare -A package_of=([promtool]=prometheus [amtool]=prometheus-alertmanager)
missing=()
for tool in "${!package_of[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${package_of[$tool]}")
done
root=0
[ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1 && root=1
if [ ${#missing[@]} -gt 0 ]; then
  if [ $root -eq 1 ]; then
    echo "installing Debian packages: ${missing[*]}" >&2
    ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1 || apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "note: tests need Debian packages: ${missing[*]} (install them, or those tests skip)" >&2
  fi
fi
fluent_bit=.cache/fluent-bit/build/bin/fluent-bit
builder=scripts/build-fluent-bit.sh
if ! command -v fluent-bit >/dev/null 2>&1 && [ ! -x "$fluent_bit" ] && [ -z "${MAGERL_FLUENT_BIT:-}" ]; then
  if [ $root -eq 1 ] && [ -f "$builder" ]; then
    echo "building Fluent Bit 1.8 into .cache/fluent-bit (about 80 s)" >&2
    bash "$builder" "$PWD/.cache/fluent-bit" >/dev/null
  else
    echo "note: Fluent Bit is missing (install it or set MAGERL_FLUENT_BIT); its tests skip" >&2
  fi
fi
# The Grafana schema check: TypeScript and @grafana/schema (Grafana 11.6) from npm, into .cache/ts.
if [ ! -x .cache/ts/node_modules/.bin/tsc ] || [ ! -d .cache/ts/node_modules/@grafana/schema ]; then
  if command -v npm >/dev/null 2>&1; then
    mkdir -p .cache/ts
    npm install --prefix .cache/ts --silent --no-audit --no-fund @grafana/schema@11.6.0 typescript@5 >/dev/null
  else
    echo "note: npm is missing: the dashboard schema check skips" >&2
  fi
fi
