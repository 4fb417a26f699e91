# Helpers shared by ./dev and the scripts. Sourced, not executed, from the
# root of the clone.

# Builds live outside the clone, so a fresh clone at the same path (CI's
# checkout) reuses them: cargo's target directory, and RocksDB's C++
# library, compiled once per machine (ensure_rocksdb_lib).
#
# The target directory is one per clone path. Cargo decides that a path
# crate is fresh by comparing file times, so clones sharing one target
# directory run each other's builds: a clone whose sources are older than
# another clone's last build runs that clone's code, and tests read the
# other clone's testdata (the path is compiled in).
MAKO_CACHE="${MAKO_CACHE:-$HOME/.cache/mako-in-rust}"
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
  mako_clone="$(pwd -P)"
  CARGO_TARGET_DIR="$MAKO_CACHE/target/$(basename "$mako_clone")-$(printf '%s' "$mako_clone" | sha256sum | cut -c 1-8)"
  unset mako_clone
fi
export CARGO_TARGET_DIR

# Runs a labelled step and reports its duration.
step() {
  local label="$1"
  shift
  echo "==> $label"
  local start=$SECONDS
  "$@"
  echo "<== $label ($((SECONDS - start)) s)"
}

# Installs Debian packages when a command is missing (as root, or via sudo).
apt_install() {
  local sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  echo "installing Debian packages: $*"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# What every cargo command of ours needs first: libclang (bindgen reads
# RocksDB's C header), clang++ (compiles RocksDB's C++: see rocksdb_cxx),
# g++ (the C++ standard library, and the linker driver cargo uses), and
# RocksDB's library. Call it before any cargo command: they must all see
# the same ROCKSDB_* variables, or librocksdb-sys's build script runs again
# for the one that differs.
ensure_build_deps() {
  local missing=()
  dpkg -s libclang-dev >/dev/null 2>&1 || missing+=(libclang-dev)
  command -v g++ >/dev/null 2>&1 || missing+=(g++)
  if [ -z "${CXX:-}" ] && ! command -v clang++ >/dev/null 2>&1; then missing+=(clang); fi
  if [ ${#missing[@]} -gt 0 ]; then
    apt_install "${missing[@]}"
  fi
  ensure_rocksdb_lib
}

# Part of the RocksDB library's key: bump it when build_rocksdb_lib changes
# what it builds (not for a change of wording).
ROCKSDB_RECIPE=2

# The C++ compiler for RocksDB: $CXX when set, else clang++. On this kind of
# machine clang++ 14 compiles RocksDB's sources at -O2 in 13% less CPU time
# than g++ 12 (a sample of 13 of its files: 66 s against 76 s), and that
# build is most of a cold setup. Debian's clang uses g++'s libstdc++, as the
# Rust side links.
rocksdb_cxx() {
  if [ -n "${CXX:-}" ]; then
    echo "$CXX"
  elif command -v clang++ >/dev/null 2>&1; then
    echo clang++
  else
    echo g++
  fi
}

# RocksDB's C++ (about 340 files, most of a cold build) is compiled once per
# machine rather than once per cargo profile and command: cargo gives
# release, dev, clippy's check and the tests each their own run of
# librocksdb-sys's build script, and each compiled the C++ again (20
# minutes apiece on two cores).
#
# The first call runs that build script once, in a target directory of its
# own, with the release profile's settings for it in Cargo.toml (-O2 as
# RocksDB's own Makefile builds a release, no debug info) and the CXXFLAGS
# of .cargo/config.toml, and keeps the static library under
# $MAKO_CACHE/rocksdb/<version>-<key>. Every cargo command then links it
# through the crate's supported ROCKSDB_LIB_DIR and ROCKSDB_STATIC: the
# build script only generates the bindings (seconds). The key hashes what
# shapes the C++ build (the crate's version, .cargo/config.toml, the
# profile override, the rocksdb dependency line, the compiler, RUSTFLAGS
# and the C++ environment, ROCKSDB_RECIPE), so a change to any of them
# builds a new library beside the old. MAKO_ROCKSDB_FROM_SOURCE=1 skips
# all this and lets cargo compile RocksDB as plain cargo does.
ensure_rocksdb_lib() {
  if [ -n "${MAKO_ROCKSDB_FROM_SOURCE:-}" ]; then
    unset ROCKSDB_LIB_DIR ROCKSDB_STATIC
    return 0
  fi
  local version key dir
  version="$(awk '$0 == "name = \"librocksdb-sys\"" { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)"
  if [ -z "$version" ]; then
    echo "ensure_rocksdb_lib: librocksdb-sys not found in Cargo.lock" >&2
    return 1
  fi
  key="$(
    {
      echo "$version"
      cat .cargo/config.toml
      sed -n '/^\[profile\.release\.package\.librocksdb-sys\]/,/^$/p' Cargo.toml
      grep '^rocksdb' Cargo.toml
      "$(rocksdb_cxx)" --version | head -n 1
      echo "RUSTFLAGS=${RUSTFLAGS-} CXX=${CXX-} CXXFLAGS=${CXXFLAGS-} CXXSTDLIB=${CXXSTDLIB-}"
      echo "recipe $ROCKSDB_RECIPE"
    } | sha256sum | cut -c 1-12
  )"
  dir="$MAKO_CACHE/rocksdb/${version#*+}-$key"
  if [ ! -f "$dir/librocksdb.a" ]; then
    mkdir -p "$MAKO_CACHE/rocksdb"
    # Two commands started at once build it once: the second waits.
    (
      flock 9
      if [ ! -f "$dir/librocksdb.a" ]; then build_rocksdb_lib "$dir"; fi
    ) 9>"$MAKO_CACHE/rocksdb/.lock" || return 1
  fi
  export ROCKSDB_LIB_DIR="$dir" ROCKSDB_STATIC=1
}

# Compiles RocksDB's C++ with librocksdb-sys's own build script into a
# throwaway target directory and moves the library to $1.
build_rocksdb_lib() {
  local dest="$1" tmp start=$SECONDS
  tmp="$(mktemp -d "$MAKO_CACHE/rocksdb/build.XXXXXX")"
  echo "==> compiling RocksDB's C++ once for this machine (about 20 minutes on two cores; once per machine) into $dest"
  local cxx cc
  cxx="$(rocksdb_cxx)"
  cc="${CC:-$(case "$cxx" in clang++*) echo "${cxx/clang++/clang}" ;; *) echo cc ;; esac)}"
  echo "    with $cxx ($("$cxx" --version | head -n 1))"
  if ! env -u ROCKSDB_LIB_DIR -u ROCKSDB_STATIC CARGO_TARGET_DIR="$tmp/target" CXX="$cxx" CC="$cc" \
    cargo build --release --locked -p librocksdb-sys; then
    rm -rf "$tmp"
    return 1
  fi
  local libs=("$tmp"/target/release/build/librocksdb-sys-*/out/librocksdb.a)
  if [ ${#libs[@]} != 1 ] || [ ! -f "${libs[0]}" ]; then
    echo "build_rocksdb_lib: expected one librocksdb.a, found: ${libs[*]}" >&2
    rm -rf "$tmp"
    return 1
  fi
  mkdir "$tmp/lib"
  mv "${libs[0]}" "$tmp/lib/"
  rm -rf "$dest"
  mv "$tmp/lib" "$dest"
  rm -rf "$tmp"
  echo "<== RocksDB's C++ compiled ($((SECONDS - start)) s)"
}

# psql is a test client of the end-to-end tests.
ensure_psql() {
  command -v psql >/dev/null 2>&1 || apt_install postgresql-client
}

# The PostgreSQL 15 server binaries, for side-by-side runs.
pg_bindir() {
  local dir
  for dir in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
      echo "$dir"
      return 0
    fi
  done
  return 1
}

ensure_postgres_server() {
  pg_bindir >/dev/null || apt_install postgresql
  pg_bindir >/dev/null || { echo "PostgreSQL server binaries not found after install" >&2; return 1; }
}

# Starts a throwaway PostgreSQL in a new temp dir on a free port, C locale,
# trust auth, default durability settings. SERIALIZABLE TPC-C needs more
# predicate locks than the default 64 per transaction (else "out of shared
# memory", 53200), so that is raised; it does not change durability. Sets PG_TMP and PG_PORT; stop it
# with pg_throwaway_stop. PostgreSQL refuses to run as root, so as root the
# server runs as the unprivileged user `nobody`.
pg_throwaway_start() {
  ensure_postgres_server
  local bin
  bin="$(pg_bindir)"
  PG_TMP="$(mktemp -d /tmp/mako-pg.XXXXXX)"
  PG_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  local as=()
  if [ "$(id -u)" = 0 ]; then
    chown nobody "$PG_TMP"
    chmod 700 "$PG_TMP"
    as=(runuser -u nobody --)
  fi
  "${as[@]}" "$bin/initdb" -D "$PG_TMP/data" --locale=C -E UTF8 -A trust -U postgres >"$PG_TMP/initdb.log" 2>&1 \
    || { cat "$PG_TMP/initdb.log" >&2; return 1; }
  "${as[@]}" "$bin/pg_ctl" -D "$PG_TMP/data" -l "$PG_TMP/server.log" -w \
    -o "-p $PG_PORT -k $PG_TMP -c listen_addresses=127.0.0.1 -c max_pred_locks_per_transaction=1024" start >/dev/null \
    || { cat "$PG_TMP/server.log" >&2; return 1; }
  PG_STOP_AS=("${as[@]}")
  PG_BIN="$bin"
  echo "throwaway PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT (data in $PG_TMP)"
}

pg_throwaway_stop() {
  if [ -n "${PG_TMP:-}" ]; then
    "${PG_STOP_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_TMP/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$PG_TMP"
    PG_TMP=""
  fi
}
