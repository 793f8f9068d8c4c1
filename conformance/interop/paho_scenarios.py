"""Interoperability scenarios for the broker, driven by Python paho-mqtt (2.x, and 1.x where its
callbacks differ), over TCP, TLS, WebSocket or WebSocket over TLS, in MQTT 3.1.1 or 5.0.

The script only acts and reports: it prints one line for each CONNACK, SUBACK and message its
clients receive, and the test that runs it (tests/interop_paho.rs) compares those lines with what
the broker must produce. A step that cannot complete (a refused connection, a publish never
acknowledged) prints FAIL and exits with status 1. Every wait has a deadline.

Usage: paho_scenarios.py SCENARIO --port N --transport tcp|tls|ws|wss --version 4|5
                         --ca-file PEM --id-prefix ID --root TOPIC
"""

import argparse
import queue
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

HOST = "127.0.0.1"
# How long any single step may take.
TIMEOUT = 10
# How long to keep listening after the expected messages, so that a duplicate or a stray message
# is reported too.
QUIET = 0.3
# How long the broker keeps a persistent MQTT 5 session after the connection ends.
SESSION_EXPIRY = 300


def fail(what):
    print("FAIL", what, flush=True)
    sys.exit(1)


def report(*fields):
    print(*fields, flush=True)


def code(value):
    """A reason code or granted QoS as an int: paho 2 gives ReasonCode objects, 1.x ints."""
    return getattr(value, "value", value)


def session_present(flags):
    """The Session Present flag of a CONNACK: paho 2 gives ConnectFlags, 1.x a dict."""
    if isinstance(flags, dict):
        return int(flags["session present"])
    return int(flags.session_present)


class Scenario:
    def __init__(self, args):
        self.args = args
        self.protocol = mqtt.MQTTv5 if args.version == "5" else mqtt.MQTTv311

    def topic(self, suffix):
        return "%s/%s" % (self.args.root, suffix)

    def client(self, name, persistent=False):
        """A client named `name` (its id is the id prefix plus the name), not yet connected.

        The callbacks take the arguments of both callback API versions: paho 2's VERSION2 and
        paho 1.x's (the index of each argument used is the same in both)."""
        kwargs = {
            "client_id": self.args.id_prefix + name,
            "protocol": self.protocol,
            "transport": "websockets" if self.args.transport in ("ws", "wss") else "tcp",
        }
        if hasattr(mqtt, "CallbackAPIVersion"):
            kwargs["callback_api_version"] = mqtt.CallbackAPIVersion.VERSION2
        if self.protocol == mqtt.MQTTv311:
            # MQTT 5 takes Clean Start with each connect instead.
            kwargs["clean_session"] = not persistent
        c = mqtt.Client(**kwargs)
        if self.args.transport in ("ws", "wss"):
            c.ws_set_options(path="/mqtt")
        if self.args.transport in ("tls", "wss"):
            c.tls_set(ca_certs=self.args.ca_file)
        c.name = name
        c.persistent = persistent
        c.connacks = queue.Queue()
        c.subacks = queue.Queue()
        c.messages = queue.Queue()
        c.on_connect = lambda c, _u, flags, rc, *_: c.connacks.put((flags, rc))
        c.on_subscribe = lambda c, _u, _mid, granted, *_: c.subacks.put(granted)
        c.on_message = lambda c, _u, msg: c.messages.put(msg)
        return c

    def start_connect(self, c):
        kwargs = {"keepalive": 30}
        if self.protocol == mqtt.MQTTv5:
            kwargs["clean_start"] = not c.persistent
            if c.persistent:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = SESSION_EXPIRY
                kwargs["properties"] = props
        try:
            c.connect(HOST, self.args.port, **kwargs)
        except OSError as e:
            fail("connect %s: %s" % (c.name, e))

    def report_connack(self, c):
        try:
            flags, rc = c.connacks.get(timeout=TIMEOUT)
        except queue.Empty:
            fail("no CONNACK for " + c.name)
        report("CONNACK", c.name, "session_present=%d" % session_present(flags), "code=%d" % code(rc))
        if code(rc) != 0:
            fail("connection of %s refused" % c.name)

    def connect(self, c):
        """Connects `c` with a network thread of its own and reports its CONNACK."""
        self.start_connect(c)
        c.loop_start()
        self.report_connack(c)

    def subscribe(self, c, topic, qos):
        c.subscribe(topic, qos)
        try:
            granted = c.subacks.get(timeout=TIMEOUT)
        except queue.Empty:
            fail("no SUBACK for " + c.name)
        report("SUBACK", c.name, *[code(g) for g in granted])

    def publish(self, c, topic, payload, qos, retain=False):
        """Publishes and waits until the broker has acknowledged the message (PUBACK at QoS 1,
        PUBCOMP at QoS 2; at QoS 0 until it is written to the socket)."""
        info = c.publish(topic, payload, qos=qos, retain=retain)
        deadline = time.monotonic() + TIMEOUT
        while not info.is_published() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not info.is_published():
            fail("publish to " + topic)

    def receive(self, c, count):
        """Reports the first `count` messages `c` receives, then any that follow within QUIET."""
        for _ in range(count):
            try:
                self.report_message(c, c.messages.get(timeout=TIMEOUT))
            except queue.Empty:
                report("TIMEOUT", c.name)
                return
        while True:
            try:
                self.report_message(c, c.messages.get(timeout=QUIET))
            except queue.Empty:
                return

    def report_message(self, c, m):
        report(
            "MSG",
            c.name,
            m.topic,
            "qos=%d" % m.qos,
            "retain=%d" % int(m.retain),
            m.payload.decode(),
        )

    def close(self, *clients):
        for c in clients:
            c.disconnect()
            c.loop_stop()

    def qos(self):
        """A subscriber at QoS 2 receives a message published at each QoS, at that QoS."""
        sub = self.client("sub")
        self.connect(sub)
        self.subscribe(sub, self.topic("qos/#"), 2)
        pub = self.client("pub")
        self.connect(pub)
        for qos in (0, 1, 2):
            self.publish(pub, self.topic("qos/%d" % qos), "at qos %d" % qos, qos)
        self.receive(sub, 3)
        self.close(sub, pub)

    def retained(self):
        """A message published with the retain flag reaches a later subscriber, retained."""
        pub = self.client("pub")
        self.connect(pub)
        self.publish(pub, self.topic("retained"), "kept", 1, retain=True)
        late = self.client("late")
        self.connect(late)
        self.subscribe(late, self.topic("retained"), 1)
        self.receive(late, 1)
        self.close(pub, late)

    def will(self):
        """The will of a client whose connection ends without DISCONNECT reaches a subscriber."""
        sub = self.client("sub")
        self.connect(sub)
        self.subscribe(sub, self.topic("will"), 1)
        gone = self.client("gone")
        gone.will_set(self.topic("will"), "gone", qos=1, retain=False)
        # Driven by hand, without a network thread, so that nothing writes to the socket after
        # CONNACK: closing it is the end of the connection, with no DISCONNECT.
        self.start_connect(gone)
        deadline = time.monotonic() + TIMEOUT
        while gone.connacks.empty() and time.monotonic() < deadline:
            gone.loop(timeout=0.05)
        self.report_connack(gone)
        gone.socket().close()
        self.receive(sub, 1)
        self.close(sub)

    def session(self):
        """A persistent session keeps its subscription and the QoS 1 and 2 messages published
        while its client is away; the client reconnects to Session Present and gets each once."""
        away = self.client("away", persistent=True)
        self.connect(away)
        self.subscribe(away, self.topic("session/#"), 2)
        self.close(away)
        pub = self.client("pub")
        self.connect(pub)
        self.publish(pub, self.topic("session/1"), "queued at qos 1", 1)
        self.publish(pub, self.topic("session/2"), "queued at qos 2", 2)
        back = self.client("away", persistent=True)
        self.connect(back)
        self.receive(back, 2)
        self.close(pub, back)


SCENARIOS = {
    "qos": Scenario.qos,
    "retained": Scenario.retained,
    "will": Scenario.will,
    "session": Scenario.session,
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--transport", choices=["tcp", "tls", "ws", "wss"], required=True)
    parser.add_argument("--version", choices=["4", "5"], required=True)
    parser.add_argument("--ca-file", required=True)
    parser.add_argument("--id-prefix", required=True)
    parser.add_argument("--root", required=True)
    args = parser.parse_args()
    SCENARIOS[args.scenario](Scenario(args))
    report("DONE")


if __name__ == "__main__":
    main()
