# Helpers shared by ./dev and the scripts. Sourced, not executed.

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

# RocksDB (built from source by the rocksdb crate) needs libclang for
# bindgen, and a C++ compiler.
ensure_build_deps() {
  local missing=()
  dpkg -s libclang-dev >/dev/null 2>&1 || missing+=(libclang-dev)
  command -v g++ >/dev/null 2>&1 || missing+=(g++)
  if [ ${#missing[@]} -gt 0 ]; then
    apt_install "${missing[@]}"
  fi
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
