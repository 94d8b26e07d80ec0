# Shared by the check scripts: a consento server of their own on a free port, its admin
# token, JSON calls to its API, and the tools they need. Source it from the repository root.

ADMIN_EMAIL=checks@example.org
ADMIN_PASSWORD="an admin passphrase for the checks"
BIN=${BIN:-${CONSENTO_BIN:-target/release/consento}}
POSTGRES=${CONSENTO_CHECK_POSTGRES:-postgres://postgres@127.0.0.1:5432}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Installs a Debian package when its command is missing.
need() {
  local command=$1 package=${2:-$1}
  command -v "$command" > /dev/null && return
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$package" > /dev/null
}

# cpu_budget CORES NAME: a CPU cgroup (cgroup v1 `cpu` controller) whose processes may use
# at most CORES cores' worth of time however many cores they run on, as if on a machine of
# their own that size; prints its folder. Remove it with `rmdir` once its processes ended.
cpu_budget() {
  local folder=/sys/fs/cgroup/cpu/$2
  mkdir -p "$folder"
  echo 100000 > "$folder/cpu.cfs_period_us"
  local quota
  quota=$(awk -v cores="$1" 'BEGIN { printf "%d", cores * 100000 }')
  echo "$quota" > "$folder/cpu.cfs_quota_us"
  echo "$folder"
}

build_release() {
  [ "$BIN" != target/release/consento ] || cargo build --release --locked --quiet
}

# start_server DATA_DIR PORT [NAME=VALUE ...]: starts consento in the background (pinned to
# the CPUs in $PIN when set; held to $CPU_BUDGET cores when set, see cpu_budget), waits
# until it answers, and sets $server to its pid.
start_server() {
  local data=$1 port=$2
  shift 2
  local pin=()
  [ -z "${PIN:-}" ] || pin=(taskset -c "$PIN")
  # The shell enters the cgroup, then becomes consento (env cannot run a shell function).
  [ -z "${CPU_BUDGET:-}" ] ||
    pin=(sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$(cpu_budget "$CPU_BUDGET" "consento-$port")" "${pin[@]}")
  env CONSENTO_DATA_DIR="$data" CONSENTO_LISTEN="127.0.0.1:$port" CONSENTO_PLUGINS_DIR="$PWD/plugins" \
    CONSENTO_ADMIN_EMAIL="$ADMIN_EMAIL" CONSENTO_ADMIN_PASSWORD="$ADMIN_PASSWORD" CONSENTO_LOG=warn \
    CONSENTO_PUBLIC_RATE_LIMIT_PER_MINUTE=1000000000 "$@" "${pin[@]}" "$BIN" serve >> "$data/server.log" 2>&1 &
  server=$!
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$port/healthz" > /dev/null && return 0
    kill -0 "$server" 2> /dev/null || break
    sleep 0.05
  done
  echo "consento did not start; its log:" >&2
  cat "$data/server.log" >&2
  return 1
}

# admin_token BASE_URL
admin_token() {
  curl -sf -X POST "$1/api/v1/auth/token" -H 'Content-Type: application/json' \
    -d "{\"email\": \"$ADMIN_EMAIL\", \"password\": \"$ADMIN_PASSWORD\"}" | json access_token
}

# api METHOD PATH [BODY]: a call as the admin ($base and $token set), printing the answer.
api() {
  curl -sf -X "$1" "$base$2" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' ${3:+-d "$3"}
}

# json PATH: reads a JSON document on stdin and prints one field (`report.imported`).
json() {
  python3 -c 'import functools, json, sys; print(functools.reduce(lambda d, k: d[k], sys.argv[1].split("."), json.load(sys.stdin)))' "$1"
}

# create_database NAME / drop_database NAME, on the PostgreSQL server of the checks.
create_database() {
  psql -q "$POSTGRES/postgres" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" > /dev/null
}

drop_database() {
  psql -q "$POSTGRES/postgres" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" > /dev/null 2>&1 || true
}
