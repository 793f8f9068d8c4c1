#!/bin/sh
# Runs the conformance suite against Eclipse Mosquitto: installs the Debian package if
# mosquitto is missing (with apt-get, as root or through sudo), starts it on a free loopback
# port with a temporary configuration (anonymous clients allowed, persistence off), runs
# `cargo test -p midge-conformance --test conformance` with MIDGE_CONFORMANCE_ADDR pointing at
# it, prints the results and stops it. Extra arguments go to the test binary, e.g.
#   conformance/run-against-mosquitto.sh --test-threads=4
#   conformance/run-against-mosquitto.sh mqtt_3_1_2
# The failing tests are Mosquitto's differences from the specifications (or the suite's bugs):
# record them in conformance/mosquitto.tsv and regenerate COVERAGE.md.
set -eu

cd "$(dirname "$0")/.."

if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
    echo "installing mosquitto (Debian package)" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto
    # The package starts a system service on port 1883; the suite runs its own instance.
    if command -v systemctl >/dev/null 2>&1; then
        $SUDO systemctl stop mosquitto >/dev/null 2>&1 || true
        $SUDO systemctl disable mosquitto >/dev/null 2>&1 || true
    fi
    $SUDO service mosquitto stop >/dev/null 2>&1 || true
fi
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)

# A free port: bind port 0, read it back, release it.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
DIR=$(mktemp -d)
cat >"$DIR/mosquitto.conf" <<CONF
listener $PORT 127.0.0.1
allow_anonymous true
persistence false
log_dest file $DIR/mosquitto.log
CONF

"$MOSQUITTO" -c "$DIR/mosquitto.conf" &
PID=$!
cleanup() {
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

# Wait for the listener.
i=0
until python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 1).close()" 2>/dev/null; do
    i=$((i + 1))
    if [ "$i" -ge 50 ]; then
        echo "mosquitto did not start; its log:" >&2
        cat "$DIR/mosquitto.log" >&2 || true
        exit 1
    fi
    sleep 0.1
done
echo "$("$MOSQUITTO" -h 2>/dev/null | head -n 1) on 127.0.0.1:$PORT" >&2

status=0
MIDGE_CONFORMANCE_ADDR="127.0.0.1:$PORT" \
    cargo test -p midge-conformance --test conformance -- "$@" || status=$?
exit "$status"
