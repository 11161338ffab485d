#!/bin/bash
# Vendored from the team's shared test tools (shared/tools/build-fluent-bit.sh) so that `make test`
# builds Fluent Bit on any Debian machine, not only beside a shared/ folder.
# Builds Fluent Bit 1.8.15 from the C sources inside the npm package fluent-bit@0.0.3, for tests.
# Usage: build-fluent-bit.sh BUILD_DIR   -> BUILD_DIR/build/bin/fluent-bit  (about 80 s on 2 cores)
# The tarball lacks lib/onigmo, so Debian's Oniguruma (libonig-dev) is used through a one-line shim header.
set -euo pipefail
W=${1:?usage: build-fluent-bit.sh BUILD_DIR}
mkdir -p "$W" && cd "$W"
ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1 || apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends flex bison libonig-dev libyaml-dev libssl-dev cmake gcc g++ make >/dev/null
npm pack fluent-bit@0.0.3 >/dev/null 2>&1
tar xzf fluent-bit-0.0.3.tgz
SRC="$W/package/src/fluent-bit"
mkdir -p "$W/onigshim" && echo '#include <oniguruma.h>' > "$W/onigshim/onigmo.h"
cat > "$SRC/cmake/onigmo.cmake" <<CM
add_library(libonigmo SHARED IMPORTED GLOBAL)
set_target_properties(libonigmo PROPERTIES IMPORTED_LOCATION "/usr/lib/x86_64-linux-gnu/libonig.so")
include_directories($W/onigshim)
add_custom_target(onigmo)
CM
mkdir -p build && cd build
cmake "$SRC" -DCMAKE_BUILD_TYPE=Release -DFLB_RELEASE=On -DFLB_SHARED_LIB=Off -DFLB_EXAMPLES=Off \
  -DFLB_OUT_KAFKA=Off -DFLB_OUT_PGSQL=Off -DFLB_BACKTRACE=Off -DFLB_IN_SYSTEMD=Off \
  -DFLB_LUAJIT=Off -DFLB_FILTER_LUA=Off >cmake.log 2>&1
make -j"$(nproc)" fluent-bit-bin >build.log 2>&1
"$W/build/bin/fluent-bit" --version
