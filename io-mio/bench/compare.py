#!/usr/bin/env python3
"""midge side by side with Mosquitto and rumqttd, on this machine, with the same load.

    python3 io-mio/bench/compare.py                 # every scenario, 3 rounds, medians
    python3 io-mio/bench/compare.py --quick         # fewer messages per run
    python3 io-mio/bench/compare.py --only fanin-q1,latency-q1 --rounds 5
    python3 io-mio/bench/compare.py --scaling       # also the scaling curves
    python3 io-mio/bench/compare.py --report DIR    # tables and plots again from saved results

Installs what is missing (Mosquitto from Debian, rumqttd with cargo), builds midge and the
load generator midge-bench in release, then for each round and scenario starts each broker
fresh (configuration in a temporary directory, listeners on free 127.0.0.1 ports), runs
midge-bench against it with --broker-pid (the broker's CPU time and memory from /proc) and
stops it. The brokers take turns, the order rotating each round, so a change in the
machine's load over the run does not fall on one broker only.

Brokers:
  midge            the same mosquitto.conf as Mosquitto; midge always sets TCP_NODELAY
  mosquitto        Mosquitto with set_tcp_nodelay true
  mosquitto-nagle  Mosquitto with its default, set_tcp_nodelay false (Nagle's algorithm on)
  rumqttd          rumqttd, TOML configuration with the same limits where it has them

Each run's JSON object (from midge-bench --json), its latency histogram and the broker's log
go to the output directory; the markdown tables go to stdout and to results.md there, the
plots (hand-written SVG) to --plots.
"""

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The plotting module sits beside this script; no __pycache__ left in the source tree.
sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
import svgplot  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MIDGE = REPO / "target" / "release" / "midge"
BENCH = REPO / "target" / "release" / "midge-bench"
MOSQUITTO = Path("/usr/sbin/mosquitto")
BROKERS = ["midge", "mosquitto", "mosquitto-nagle", "rumqttd"]
# The scaling curves compare midge with Mosquitto as configured for latency, and rumqttd.
SCALING_BROKERS = ["midge", "mosquitto", "rumqttd"]

# Mosquitto's defaults, written out so that every broker gets them.
MAX_INFLIGHT_MESSAGES = 20
# QoS 1/2 messages in flight toward one client that rumqttd allows: fixed in its source
# (`MAX_INFLIGHT`), not configurable. `--window` can give midge and Mosquitto the same.
RUMQTTD_WINDOW = 100
MAX_QUEUED_MESSAGES = 1000
# One source address reaches about 28,000 connections per destination port; the connection
# curve spreads its connections over this many listeners.
SCALING_LISTENERS = 6
# Publishers keep at most Mosquitto's max_inflight_messages QoS 1/2 publishes unacknowledged,
# as an MQTT 5 client would once told Receive Maximum 20. With more (midge-bench's default is
# 100 per publisher), Mosquitto 2.0.11 drops messages toward the fan-in subscriber ("Outgoing
# messages are being dropped") although fewer than max_queued_messages are outstanding.
PUBLISHER_INFLIGHT = MAX_INFLIGHT_MESSAGES
# Even with 20, on an otherwise idle machine Mosquitto 2.0.11 reports dropping messages toward
# the fan-in subscriber within the first second of every QoS 1 and 2 fan-in run, with at most
# 500 outstanding (midge-bench's bound), and the run stalls: its count of queued messages
# drifts (its change log lists fixes to this accounting after 2.0.11). Mosquitto therefore
# runs with no queue limit (`max_queued_messages 0`). This only spares Mosquitto a bug: with
# at most 500 messages outstanding a correct broker never reaches 1,000 queued, so midge keeps
# the limit of 1,000.
MOSQUITTO_MAX_QUEUED_MESSAGES = 0
# Descriptors a broker or midge-bench needs besides one per connection.
FD_MARGIN = 100
# Connections in the handshake at once (idle and background connections). Below every
# broker's listen backlog (100 for Mosquitto, 128 for midge and rumqttd): with midge-bench's
# default of 512 the accept queues overflow, handshakes wait on SYN retransmits, and rumqttd,
# slow to accept, has connections reset. The connect rate is then the kernel's, not the broker's.
CONNECT_PARALLEL = 64


# ---------------------------------------------------------------------------------------------
# Scenarios


class Scenario:
    """One midge-bench invocation, the same for every broker."""

    def __init__(self, name, kind, args, messages, quick_messages, title, listeners=1,
                 timeout_s=120):
        self.timeout_s = timeout_s
        self.name = name
        self.kind = kind  # "throughput", "latency" or "idle"
        self.args = args
        self.messages = messages
        self.quick_messages = quick_messages
        self.title = title
        self.listeners = listeners

    def bench_args(self, quick):
        n = self.quick_messages if quick else self.messages
        if not n:
            return list(self.args)
        return self.args + ["--messages", str(n), "--inflight", str(PUBLISHER_INFLIGHT)]

    def connections(self):
        """How many client connections the run opens."""
        flags = dict(zip(self.args[1::2], self.args[2::2]))
        count = int(flags.get("--background-connections", 0))
        shape = self.args[0]
        if shape == "fan-in":
            count += int(flags.get("--publishers", 4)) + 1
        elif shape == "fan-out":
            count += int(flags.get("--subscribers", 50)) + 1
        elif shape == "pairs":
            count += 2 * int(flags.get("--pairs", 10))
        else:
            count += int(flags.get("--connections", 10_000))
        return count


def fixed_scenarios():
    fan_in = ["fan-in", "--publishers", "4"]
    fan_out = ["fan-out", "--subscribers", "50"]
    return [
        Scenario("fanin-q0", "throughput", fan_in + ["--qos", "0"], 250_000, 50_000,
                 "Fan-in 4 -> 1, QoS 0"),
        Scenario("fanin-q1", "throughput", fan_in + ["--qos", "1"], 100_000, 25_000,
                 "Fan-in 4 -> 1, QoS 1"),
        Scenario("fanin-q2", "throughput", fan_in + ["--qos", "2"], 50_000, 12_500,
                 "Fan-in 4 -> 1, QoS 2"),
        Scenario("fanout-q0", "throughput", fan_out + ["--qos", "0"], 20_000, 5_000,
                 "Fan-out 1 -> 50, QoS 0"),
        Scenario("fanout-q1", "throughput", fan_out + ["--qos", "1"], 10_000, 2_500,
                 "Fan-out 1 -> 50, QoS 1"),
        # 5,000 messages a second: 10 s, or 5 s in quick mode.
        Scenario("latency-q1", "latency",
                 ["pairs", "--pairs", "1", "--qos", "1", "--rate", "5000"], 50_000, 25_000,
                 "Latency: 1 publisher -> 1 subscriber, QoS 1, 5,000 msg/s"),
        Scenario("idle-10k", "idle", ["idle", "--connections", "10000"], 0, 0,
                 "Idle connections: 10,000"),
    ]


SUBSCRIPTION_POINTS = [0, 1_000, 10_000, 100_000, 1_000_000]
CONNECTION_POINTS = [0, 1_000, 10_000, 100_000]


def scaling_scenarios():
    """Fan-in QoS 0 with background subscriptions no message matches (one idle connection per
    1,000 of them), then with idle background connections."""
    fan_in = ["fan-in", "--publishers", "4", "--qos", "0"]
    out = []
    for subs in SUBSCRIPTION_POINTS:
        conns = max(1, subs // 1000) if subs else 0
        args = fan_in + ["--background-subscriptions", str(subs),
                         "--background-connections", str(conns)]
        out.append(Scenario(f"subs-{subs}", "scaling-subs", args, 250_000, 100_000,
                            f"Fan-in QoS 0 with {subs} background subscriptions",
                            timeout_s=600))
    for conns in CONNECTION_POINTS:
        args = fan_in + ["--background-connections", str(conns)]
        out.append(Scenario(f"conns-{conns}", "scaling-conns", args, 250_000, 100_000,
                            f"Fan-in QoS 0 with {conns} background connections",
                            listeners=SCALING_LISTENERS, timeout_s=600))
    return out


# ---------------------------------------------------------------------------------------------
# Installing and building


def run_quietly(cmd, **kw):
    try:
        return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              check=False, **kw).returncode
    except FileNotFoundError:
        return None


def ensure_mosquitto():
    if MOSQUITTO.exists():
        stop_system_mosquitto()
        return
    if os.geteuid() != 0:
        sys.exit("Mosquitto is missing: run as root, or `apt-get install mosquitto` first")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print("installing mosquitto (apt-get)", flush=True)
    subprocess.run(["apt-get", "update"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "mosquitto"], check=True, env=env)
    stop_system_mosquitto(installed_now=True)


def system_mosquitto_pids():
    """Mosquitto processes this script did not start (the package's service, say)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == "mosquitto":
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def stop_system_mosquitto(installed_now=False):
    """The Debian package starts a service on port 1883: stop and disable it, so it neither
    competes for the CPU nor answers in place of the brokers measured."""
    if not installed_now and not system_mosquitto_pids():
        return
    if os.geteuid() != 0:
        print("warning: a mosquitto process is running; it competes for the CPU", flush=True)
        return
    run_quietly(["systemctl", "disable", "--now", "mosquitto"])
    run_quietly(["service", "mosquitto", "stop"])
    run_quietly(["update-rc.d", "mosquitto", "disable"])
    time.sleep(0.5)
    left = system_mosquitto_pids()
    if left:
        print(f"warning: mosquitto still running as pid {left}", flush=True)


def find_rumqttd():
    found = shutil.which("rumqttd")
    if found:
        return Path(found)
    cargo_bin = Path.home() / ".cargo" / "bin" / "rumqttd"
    return cargo_bin if cargo_bin.exists() else None


def ensure_rumqttd():
    path = find_rumqttd()
    if path:
        return path
    # Without --locked: rumqttd 0.20's lock file pins a `metrics` release that no longer
    # builds with current compilers.
    print("installing rumqttd (cargo install)", flush=True)
    subprocess.run(["cargo", "install", "rumqttd"], check=True)
    path = find_rumqttd()
    if not path:
        sys.exit("cargo install rumqttd did not leave a rumqttd binary")
    return path


def build_midge():
    print("building midge and midge-bench (release)", flush=True)
    subprocess.run(["cargo", "build", "--release", "-p", "midge", "--bins"], cwd=REPO,
                   check=True)


def raise_open_files_limit():
    """Idle connections need a descriptor each, in the broker and in midge-bench; children
    inherit the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        ceiling = int(Path("/proc/sys/fs/nr_open").read_text())
    except (OSError, ValueError):
        ceiling = hard
    for limit in (ceiling, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
            return limit
        except (ValueError, OSError):
            continue
    return soft


# ---------------------------------------------------------------------------------------------
# Brokers


def free_ports(n):
    """Ports the kernel hands out for port 0, released just before the broker binds them."""
    sockets, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
        ports.append(s.getsockname()[1])
    for s in sockets:
        s.close()
    return ports


def mosquitto_conf(ports, nodelay, max_queued=MAX_QUEUED_MESSAGES,
                   window=MAX_INFLIGHT_MESSAGES):
    """The mosquitto.conf midge and Mosquitto both read (Mosquitto with no queue limit, see
    MOSQUITTO_MAX_QUEUED_MESSAGES)."""
    lines = ["# Written by io-mio/bench/compare.py: read by midge and by Mosquitto."]
    for port in ports:
        lines += [f"listener {port} 127.0.0.1", "max_connections -1"]
    lines += [
        "allow_anonymous true",
        f"max_inflight_messages {window}",
        f"max_queued_messages {max_queued}",
        # A log line per connect and disconnect would be measured along with the broker.
        "connection_messages false",
        "log_dest stderr",
    ]
    if nodelay:
        lines.append("set_tcp_nodelay true")
    return "\n".join(lines) + "\n"


def rumqttd_toml(ports, connections):
    """rumqttd's configuration: one v4 (MQTT 3.1.1) server per port, no connection throttle,
    room for the run's connections, its defaults otherwise; no metrics, console or
    prometheus."""
    lines = [
        "id = 0",
        "",
        "[router]",
        "id = 0",
        f"max_connections = {connections}",
        "max_outgoing_packet_count = 200",
        "max_segment_size = 104857600",
        "max_segment_count = 10",
    ]
    for i, port in enumerate(ports, start=1):
        lines += [
            "",
            f"[v4.{i}]",
            f'name = "v4-{i}"',
            f'listen = "127.0.0.1:{port}"',
            "next_connection_delay_ms = 0",
            f"[v4.{i}.connections]",
            "connection_timeout_ms = 60000",
            "max_payload_size = 20480",
            "max_inflight_count = 100",
            "dynamic_filters = true",
        ]
    return "\n".join(lines) + "\n"


# max_inflight_messages for midge and Mosquitto in this run (`--window`).
WINDOW = MAX_INFLIGHT_MESSAGES


def broker_command(broker, workdir, ports, connections, rumqttd):
    if broker in ("midge", "mosquitto", "mosquitto-nagle"):
        conf = workdir / "mosquitto.conf"
        max_queued = (MAX_QUEUED_MESSAGES if broker == "midge"
                      else MOSQUITTO_MAX_QUEUED_MESSAGES)
        conf.write_text(mosquitto_conf(ports, nodelay=broker != "mosquitto-nagle",
                                       max_queued=max_queued, window=WINDOW))
        binary = MIDGE if broker == "midge" else MOSQUITTO
        return [str(binary), "-c", str(conf)]
    if broker == "rumqttd":
        conf = workdir / "rumqttd.toml"
        conf.write_text(rumqttd_toml(ports, connections))
        return [str(rumqttd), "-q", "-c", str(conf)]
    raise ValueError(broker)


def wait_listening(ports, proc, deadline_s=15.0):
    deadline = time.monotonic() + deadline_s
    for port in ports:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"broker exited with code {proc.returncode} at start")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"broker not listening on {port} after {deadline_s} s")
                time.sleep(0.05)


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def run_one(broker, scenario, quick, out, tag, rumqttd):
    """Starts `broker`, runs `scenario` against it, stops it; returns midge-bench's result
    with the run's context added (or a failure record)."""
    record = {"broker": broker, "scenario": scenario.name, "kind": scenario.kind, "tag": tag,
              "load_before": os.getloadavg()[0]}
    # Broker and midge-bench each need a descriptor per connection, and a few more.
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if scenario.connections() + FD_MARGIN > limit:
        record.update(ok=0, skipped=1, error=f"not run: {scenario.connections():,} "
                      f"connections need more descriptors than the open files limit, {limit:,}")
        return save(out, record)
    ports = free_ports(scenario.listeners)
    latency_file = out / "latency" / f"{scenario.name}-{broker}-{tag}.tsv"
    log_file = out / "logs" / f"{scenario.name}-{broker}-{tag}.log"
    with tempfile.TemporaryDirectory(prefix=f"bench-{broker}-") as tmp, \
            open(log_file, "wb") as log:
        cmd = broker_command(broker, Path(tmp), ports, scenario.connections() + 100, rumqttd)
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
        try:
            wait_listening(ports, proc)
            args = [str(BENCH)] + scenario.bench_args(quick)
            for port in ports:
                args += ["--addr", f"127.0.0.1:{port}"]
            args += ["--connect-parallel", str(CONNECT_PARALLEL)]
            args += ["--broker-pid", str(proc.pid), "--label", broker, "--json",
                     "--timeout", str(scenario.timeout_s)]
            if scenario.kind != "idle":
                args += ["--latency-out", str(latency_file)]
            record["command"] = " ".join(a for a in args)
            done = subprocess.run(args, capture_output=True, text=True,
                                  timeout=scenario.timeout_s + 60)
            lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
            if lines:
                result = json.loads(lines[-1])
                # midge-bench's own scenario name (fan-in, ...) next to this script's.
                result["bench_scenario"] = result.pop("scenario", None)
                record.update(result)
            record["exit_code"] = done.returncode
            if done.returncode != 0:
                record["ok"] = 0
                record["error"] = done.stderr.strip()[-500:]
            if proc.poll() is not None:
                record["ok"] = 0
                record["error"] = (record.get("error", "") +
                                   f" broker exited with code {proc.returncode}").strip()
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            record["ok"] = 0
            record["error"] = str(e)
        finally:
            stop(proc)
    record["load_after"] = os.getloadavg()[0]
    return save(out, record)


def save(out, record):
    name = f"{record['scenario']}-{record['broker']}-{record['tag']}.json"
    (out / "raw" / name).write_text(json.dumps(record, indent=1) + "\n")
    return record


def describe(record):
    if record.get("ok"):
        if record["kind"] == "idle":
            return (f"{record.get('connects_per_s', 0):,.0f} connects/s, "
                    f"{record.get('broker_kib_per_connection', 0):.2f} KiB/conn")
        return (f"{record.get('deliveries_per_s', 0):,.0f} msgs/s, "
                f"{record.get('deliveries_per_broker_cpu_s', 0):,.0f} per CPU s, "
                f"p99 {record.get('latency_p99_us', 0):,.0f} us")
    return "FAILED: " + record.get("error", "delivery check failed")


def run_all(scenarios, brokers, rounds, quick, out, rumqttd):
    for r in range(rounds):
        # Rotate the order each round.
        order = brokers[r % len(brokers):] + brokers[:r % len(brokers)]
        for scenario in scenarios:
            for broker in order:
                record = run_one(broker, scenario, quick, out, f"r{r + 1}", rumqttd)
                print(f"round {r + 1}/{rounds} {scenario.name:<12} {broker:<16} "
                      f"load {record['load_before']:.2f}  {describe(record)}", flush=True)


# ---------------------------------------------------------------------------------------------
# Reporting


def load_records(out):
    records = []
    for path in sorted((out / "raw").glob("*.json")):
        records.append(json.loads(path.read_text()))
    return records


def median_of(records, key):
    values = [r[key] for r in records if r.get("ok") and isinstance(r.get(key), (int, float))]
    return statistics.median(values) if values else None


def fmt_int(v):
    return "n/a" if v is None else f"{v:,.0f}"


def fmt_us(v):
    if v is None:
        return "n/a"
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def fmt_ratio(v):
    return "n/a" if v is None else f"{v:.2f}x"


def ratio(a, b):
    return a / b if a is not None and b else None


# Columns per kind of scenario: (JSON key, header, formatter).
COLUMNS = {
    "throughput": [
        ("deliveries_per_s", "msgs/s delivered", fmt_int),
        ("deliveries_per_broker_cpu_s", "deliveries per broker CPU s", fmt_int),
        ("latency_p50_us", "p50 us", fmt_us),
        ("latency_p99_us", "p99 us", fmt_us),
        ("latency_p999_us", "p99.9 us", fmt_us),
    ],
    "idle": [
        ("connects_per_s", "connects/s", fmt_int),
        ("broker_kib_per_connection", "KiB per idle connection", lambda v: "n/a" if v is None
         else f"{v:.2f}"),
        ("broker_cpu_us_per_connect", "broker CPU us per connect", fmt_us),
    ],
}
COLUMNS["latency"] = COLUMNS["throughput"]
# midge's ratio to each peer: (JSON key, header). A ratio above 1 is midge ahead for rates,
# behind for latency and memory.
RATIOS = {
    "throughput": [("deliveries_per_s", "midge / peer, msgs/s"),
                   ("deliveries_per_broker_cpu_s", "midge / peer, per CPU s")],
    "latency": [("deliveries_per_broker_cpu_s", "midge / peer, per CPU s"),
                ("latency_p99_us", "midge / peer, p99 (below 1: midge faster)")],
    "idle": [("connects_per_s", "midge / peer, connects/s"),
             ("broker_kib_per_connection", "midge / peer, KiB (below 1: midge smaller)")],
}


def error_text(record):
    """midge-bench's complaints on one line."""
    text = record.get("error") or "delivery check failed"
    lines = [ln.replace("midge-bench: FAILED: ", "").replace("midge-bench: ", "")
             for ln in text.splitlines() if ln.strip()]
    return "; ".join(lines)


def scenario_table(scenario, records, brokers):
    kind = scenario.kind
    columns, ratios = COLUMNS[kind], RATIOS[kind]
    head = ["Broker", "runs ok"] + [h for _, h, _ in columns] + [h for _, h in ratios]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    mine = [r for r in records if r["scenario"] == scenario.name]
    medians = {}
    for broker in brokers:
        runs = [r for r in mine if r["broker"] == broker]
        medians[broker] = {key: median_of(runs, key) for key, _, _ in columns}
        medians[broker]["runs"] = (sum(1 for r in runs if r.get("ok")), len(runs))
    for broker in brokers:
        ok, total = medians[broker]["runs"]
        if total == 0:
            continue
        cells = [broker, f"{ok}/{total}"]
        cells += [f(medians[broker][key]) for key, _, f in columns]
        for key, _ in ratios:
            if broker == "midge":
                cells.append("")
            else:
                cells.append(fmt_ratio(ratio(medians.get("midge", {}).get(key),
                                             medians[broker][key])))
        rows.append("| " + " | ".join(cells) + " |")
    failures = [f"- {r['broker']} {r['tag']}: {error_text(r)}" for r in mine if not r.get("ok")]
    loads = [r["load_before"] for r in mine]
    text = f"### {scenario.name}: {scenario.title}\n\n" + "\n".join(rows) + "\n"
    if loads:
        text += (f"\nLoad average (1 min) at the start of these runs: "
                 f"{min(loads):.2f} to {max(loads):.2f}.\n")
    if failures:
        text += "\nFailed runs:\n" + "\n".join(failures) + "\n"
    return text


def scaling_table(kind, points, records, brokers):
    name = "subs" if kind == "scaling-subs" else "conns"
    what = "background subscriptions" if name == "subs" else "background connections"
    head = ["Broker"] + [svgplot.number_label(p) if p else "0" for p in points]
    rows = [f"Deliveries per broker CPU second, fan-in QoS 0, by {what}:", "",
            "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for broker in [b for b in brokers if any(r["kind"] == kind and r["broker"] == b
                                             for r in records)]:
        cells = [broker]
        for p in points:
            runs = [r for r in records if r["scenario"] == f"{name}-{p}" and r["broker"] == broker]
            v = median_of(runs, "deliveries_per_broker_cpu_s")
            if v is not None:
                cells.append(fmt_int(v))
            elif runs and all(r.get("skipped") for r in runs):
                cells.append("not run")
            else:
                cells.append("failed" if runs else "")
        rows.append("| " + " | ".join(cells) + " |")
    mine = [r for r in records if r["kind"] == kind and not r.get("ok")]
    failures = [f"- {r['broker']} {r['scenario']} {r['tag']}: {error_text(r)}"
                for r in mine if not r.get("skipped")]
    if len(failures) > 12:
        failures = failures[:12] + [f"- and {len(failures) - 12} more"]
    text = "\n".join(rows) + "\n"
    skipped = sorted({r["error"] for r in mine if r.get("skipped")})
    if skipped:
        text += "\n" + "\n".join(f"{s.capitalize()}." for s in skipped) + "\n"
    if failures:
        text += "\nFailed runs:\n" + "\n".join(failures) + "\n"
    return text


def latency_cdf(out, broker):
    """The latency scenario's distribution for `broker`, every round's histogram summed:
    [(microseconds, cumulative fraction)]."""
    counts = {}
    for path in (out / "latency").glob(f"latency-q1-{broker}-*.tsv"):
        for line in path.read_text().splitlines()[1:]:
            ns, count = line.split("\t")
            counts[int(ns)] = counts.get(int(ns), 0) + int(count)
    total = sum(counts.values())
    if not total:
        return []
    seen, points = 0, []
    for ns in sorted(counts):
        seen += counts[ns]
        points.append((max(ns, 1) / 1e3, seen / total))
    return points


def plot_latency(out, plots, brokers):
    series = [(b, latency_cdf(out, b), False) for b in brokers]
    series = [s for s in series if s[1]]
    if not series:
        return None
    lo = min(p[0][0] for _, p, _ in series)
    hi = max(p[-1][0] for _, p, _ in series)
    # Latency on the x axis, the cumulative fraction on the y axis.
    svg = svgplot.chart(
        "Latency CDF, QoS 1, 1 publisher -> 1 subscriber at 5,000 msg/s",
        "latency, microseconds (log scale)",
        "messages delivered within (nines scale)",
        svgplot.LogAxis(lo, hi), svgplot.NinesAxis(4), series,
        note="all rounds summed; 64-byte payloads, MQTT 3.1.1, loopback",
    )
    path = plots / "latency-q1-cdf.svg"
    path.write_text(svg)
    return path


def plot_scaling(kind, points, records, plots, brokers):
    name = "subs" if kind == "scaling-subs" else "conns"
    what = "background subscriptions" if name == "subs" else "background idle connections"
    series, values = [], []
    for broker in brokers:
        line = []
        for p in points:
            runs = [r for r in records if r["scenario"] == f"{name}-{p}" and r["broker"] == broker]
            v = median_of(runs, "deliveries_per_broker_cpu_s")
            if v:
                line.append((p, v))
                values.append(v)
        if line:
            series.append((broker, line))
    if not series:
        return None
    labels = [svgplot.number_label(p) if p else "0" for p in points]
    svg = svgplot.chart(
        f"Fan-in QoS 0: cost per message against {what}",
        what,
        "deliveries per broker CPU second (log)",
        svgplot.CategoryAxis(points, labels), svgplot.LogAxis(min(values), max(values)), series,
        note="higher is cheaper; 4 publishers -> 1 subscriber, 64-byte payloads",
    )
    path = plots / f"scaling-{name}.svg"
    path.write_text(svg)
    return path


def machine_description(rumqttd):
    def first_line(cmd):
        try:
            text = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (text.stdout or text.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "unknown"

    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "rustc": first_line(["rustc", "--version"]),
        "mosquitto": first_line([str(MOSQUITTO), "-h"]),
        "rumqttd": first_line([str(rumqttd), "-V"]) if rumqttd else "not installed",
        "midge_commit": first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
        "load_average": os.getloadavg(),
        "window": WINDOW,
    }


def report(out, plots, brokers, scenarios):
    records = load_records(out)
    if not records:
        sys.exit(f"no results in {out / 'raw'}")
    present = [b for b in BROKERS if any(r["broker"] == b for r in records)]
    brokers = [b for b in brokers if b in present] or present
    parts = []
    machine = out / "machine.json"
    if machine.exists():
        m = json.loads(machine.read_text())
        parts.append(
            f"Machine: {m['cpus']} x {m['cpu']}, {m['memory_gib']} GiB, Linux {m['kernel']}, "
            f"{m['rustc']}; {m['mosquitto']}; {m['rumqttd']}; midge {m['midge_commit']}. "
            f"Load average at the start: {m['load_average'][0]:.2f}. "
            f"In flight toward a client: midge and Mosquitto "
            f"{m.get('window', MAX_INFLIGHT_MESSAGES)}, rumqttd {RUMQTTD_WINDOW}.\n")
    for scenario in scenarios:
        if any(r["scenario"] == scenario.name for r in records):
            parts.append(scenario_table(scenario, records, brokers))
    plots.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, points in (("scaling-subs", SUBSCRIPTION_POINTS),
                         ("scaling-conns", CONNECTION_POINTS)):
        if any(r["kind"] == kind for r in records):
            parts.append(scaling_table(kind, points, records, brokers))
            written.append(plot_scaling(kind, points, records, plots, brokers))
    written.append(plot_latency(out, plots, brokers))
    text = "\n".join(parts)
    (out / "results.md").write_text(text)
    print("\n" + text)
    for path in written:
        if path:
            print(f"plot: {path}")


# ---------------------------------------------------------------------------------------------


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    all_names = [s.name for s in fixed_scenarios()]
    p.add_argument("--rounds", type=int, default=3, help="runs per broker and scenario")
    p.add_argument("--scaling-rounds", type=int, default=1,
                   help="runs per broker and point of the scaling curves")
    p.add_argument("--quick", action="store_true", help="fewer messages per run")
    p.add_argument("--only", help="comma-separated scenarios: " + ", ".join(all_names) +
                   "; or subs-scaling, conns-scaling")
    p.add_argument("--scaling", action="store_true",
                   help="also the scaling curves (subscriptions and connections)")
    p.add_argument("--brokers", default=",".join(BROKERS),
                   help="comma-separated subset of " + ", ".join(BROKERS))
    p.add_argument("--out", type=Path, help="results directory "
                   "(default target/bench-compare/DATE-TIME)")
    p.add_argument("--plots", type=Path, default=REPO / "io-mio" / "bench" / "plots",
                   help="where the SVG plots go")
    p.add_argument("--report", type=Path, metavar="DIR",
                   help="only print tables and draw plots from the results in DIR")
    p.add_argument("--no-install", action="store_true", help="do not install missing brokers")
    p.add_argument("--no-build", action="store_true", help="do not build midge")
    p.add_argument("--window", type=int, default=MAX_INFLIGHT_MESSAGES,
                   help="max_inflight_messages of midge and Mosquitto: QoS 1/2 messages in "
                   f"flight toward one client (default {MAX_INFLIGHT_MESSAGES}, Mosquitto's "
                   f"default; rumqttd's is fixed at {RUMQTTD_WINDOW})")
    return p.parse_args()


def select(args):
    """The fixed scenarios and the scaling points asked for."""
    wanted = set(args.only.split(",")) if args.only else None
    fixed = [s for s in fixed_scenarios() if wanted is None or s.name in wanted]
    scaling = []
    for s in scaling_scenarios():
        curve = "subs-scaling" if s.kind == "scaling-subs" else "conns-scaling"
        if (wanted is not None and curve in wanted) or (args.scaling and wanted is None):
            scaling.append(s)
    known = {s.name for s in fixed_scenarios()} | {"subs-scaling", "conns-scaling"}
    if wanted and wanted - known:
        sys.exit(f"unknown scenario(s): {', '.join(sorted(wanted - known))}")
    return fixed, scaling


def main():
    args = parse_args()
    brokers = [b for b in args.brokers.split(",") if b]
    for b in brokers:
        if b not in BROKERS:
            sys.exit(f"unknown broker {b}")
    if args.report:
        report(args.report, args.plots, brokers, fixed_scenarios())
        return
    fixed, scaling = select(args)
    global WINDOW
    WINDOW = args.window
    rumqttd = None
    if not args.no_install:
        if any(b.startswith("mosquitto") for b in brokers):
            ensure_mosquitto()
        if "rumqttd" in brokers:
            rumqttd = ensure_rumqttd()
    else:
        rumqttd = find_rumqttd()
    if not args.no_build:
        build_midge()
    limit = raise_open_files_limit()
    out = args.out or REPO / "target" / "bench-compare" / time.strftime("%Y%m%d-%H%M%S")
    for sub in ("raw", "latency", "logs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    (out / "machine.json").write_text(json.dumps(machine_description(rumqttd), indent=1) + "\n")
    print(f"results in {out}; open files limit {limit}", flush=True)
    run_all(fixed, brokers, args.rounds, args.quick, out, rumqttd)
    scaling_brokers = [b for b in brokers if b in SCALING_BROKERS]
    run_all(scaling, scaling_brokers, args.scaling_rounds, args.quick, out, rumqttd)
    report(out, args.plots, brokers, fixed_scenarios())


if __name__ == "__main__":
    main()
