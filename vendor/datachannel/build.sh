#!/usr/bin/env bash
# Rebuilds vendor/datachannel/linux-x64-gnu/node_datachannel.node: node-datachannel's own C++
# bindings (from the installed node-datachannel package) over libdatachannel v0.24.5 with
# libdatachannel-dtls-start.patch applied, without media (can-sync uses data channels only),
# OpenSSL and libstdc++ linked statically, stripped.
#
# It builds inside a Debian 11 (bullseye) root made with debootstrap, as upstream's prebuilt
# binary is built (GCC 10, OpenSSL 1.1.1w): the binary then needs only glibc 2.30, and its DTLS
# records cost what upstream's do (a Debian 12 build, with OpenSSL 3.0, was ~8 % slower on
# loopback). Needs root, debootstrap and a Debian mirror; patch and a libdatachannel v0.24.5
# checkout with its submodules: LIBDATACHANNEL_SRC=<dir>, or a clone from GitHub when unset.
# Run after `pnpm install`; it rewrites the binary and SHA256SUMS next to this script.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
source "$root/scripts/toolchain.sh"
version=0.33.4 # node-datachannel: its bindings must match the JS that loads them
binding="$root/node_modules/.pnpm/node-datachannel@$version/node_modules/node-datachannel"
[ -f "$binding/CMakeLists.txt" ] || { echo "build.sh: node-datachannel $version is not installed (run pnpm install)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "build.sh: needs root (debootstrap, chroot)" >&2; exit 1; }

# The build root, kept between runs (~600 MB).
chroot_dir="${BUILD_ROOT:-/var/tmp/can-sync-bullseye}"
if [ ! -x "$chroot_dir/usr/bin/cmake" ]; then
  debootstrap --variant=minbase bullseye "$chroot_dir" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
  chroot "$chroot_dir" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive chroot "$chroot_dir" apt-get install -y -qq --no-install-recommends g++ make cmake libssl-dev
fi

work="$chroot_dir/build"
rm -rf "$work" && mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
if [ -n "${LIBDATACHANNEL_SRC:-}" ]; then
  cp -r "$LIBDATACHANNEL_SRC" "$work/libdatachannel"
else
  git clone --quiet --depth 1 --branch v0.24.5 --recurse-submodules --shallow-submodules \
    https://github.com/paullouisageneau/libdatachannel.git "$work/libdatachannel"
fi
grep -q '#define RTC_VERSION "0.24.5"' "$work/libdatachannel/include/rtc/version.h" ||
  { echo "build.sh: ${LIBDATACHANNEL_SRC:-the clone} is not libdatachannel v0.24.5" >&2; exit 1; }
patch --quiet -d "$work/libdatachannel" -p1 < "$here/libdatachannel-dtls-start.patch"

# node-datachannel's CMakeLists fetches libdatachannel into _deps/ and reads the N-API headers
# from its own node_modules: give it both, offline.
cp -r "$binding" "$work/binding"
rm -rf "$work/binding/node_modules" && mkdir -p "$work/headers" "$work/binding/build/_deps"
(cd "$work/headers" && echo '{"private":true}' > package.json &&
  pnpm add --silent node-addon-api@8.5.0 node-api-headers@1.9.0 >/dev/null)
cp -rL "$work/headers/node_modules" "$work/binding/node_modules"
mv "$work/libdatachannel" "$work/binding/build/_deps/libdatachannel-src"
chroot "$chroot_dir" cmake -S /build/binding -B /build/binding/build -DCMAKE_BUILD_TYPE=Release \
  -DNO_MEDIA=ON -DNO_EXAMPLES=ON -DNO_TESTS=ON \
  -DCMAKE_JS_INC=/build/binding/node_modules/node-api-headers/include \
  -DFETCHCONTENT_FULLY_DISCONNECTED=ON \
  -DFETCHCONTENT_SOURCE_DIR_LIBDATACHANNEL=/build/binding/build/_deps/libdatachannel-src >/dev/null
chroot "$chroot_dir" cmake --build /build/binding/build --target node_datachannel -j "$(nproc)" >/dev/null
strip -o "$here/linux-x64-gnu/node_datachannel.node" "$work/binding/build/node_datachannel.node"
(cd "$here" && sha256sum linux-x64-gnu/node_datachannel.node > SHA256SUMS)
echo "built $(cat "$here/SHA256SUMS")"
