// The interoperability scenarios MQTT.js runs against midge from a browser page. The query
// string names the broker (`broker`: a ws:// or wss:// URL), the protocol (`version`: 4 for
// MQTT 3.1.1, 5 for MQTT 5.0) and the prefix of every client id and topic (`prefix`).
//
// Each scenario records what MQTT.js saw as lines `scenario|what|details`; when all have run
// the lines are posted to /result, where the test compares them with what MQTT requires.
// Progress goes to /log as it happens, so a page that never finishes still explains itself.
'use strict';

const params = new URLSearchParams(location.search);
const BROKER = params.get('broker');
const VERSION = Number(params.get('version'));
const PREFIX = params.get('prefix');

// What must happen has this long: a scenario that takes longer is recorded as an error, and
// messages that have not come by then are missing from what it records.
const SCENARIO_LIMIT_MS = 8000;
const RECEIVE_LIMIT_MS = 5000;
// How long to keep listening for messages that must not come (duplicates, discarded wills).
const QUIET_MS = 300;

const started = performance.now();
const outcome = [];
// Every client a scenario opens, so that a failed scenario leaves none behind.
let openClients = [];

function log(text) {
    const line = `${Math.round(performance.now() - started)} ms: ${text}`;
    console.log(line);
    fetch('/log', { method: 'POST', body: line }).catch(() => {});
}

function record(scenario, ...fields) {
    outcome.push([scenario, ...fields].join('|'));
}

window.addEventListener('error', (event) => log(`page error: ${event.message}`));
window.addEventListener('unhandledrejection', (event) => log(`unhandled rejection: ${event.reason}`));

function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

function withLimit(promise, ms, what) {
    let timer;
    const limit = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no outcome within ${ms} ms`)), ms);
    });
    return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

// A received PUBLISH as one line: topic, QoS, retain flag, payload.
function describeMessage(topic, payload, packet) {
    return ['message', topic, packet.qos, packet.retain, new TextDecoder().decode(payload)].join('|');
}

// Connects a client and resolves once the broker accepted it, with the CONNACK, the messages
// the client receives (recorded from the start: a resumed session delivers right after
// CONNACK) and the types of the packets the client sends.
function connect(clientId, options = {}) {
    const client = mqtt.connect(BROKER, {
        protocolVersion: VERSION,
        clientId,
        clean: true,
        // Every connection the scenarios make is deliberate: no reconnection behind their back.
        reconnectPeriod: 0,
        connectTimeout: SCENARIO_LIMIT_MS,
        // Connects once the listeners below are in place, so that CONNECT is seen too.
        manualConnect: true,
        ...options,
    });
    openClients.push(client);
    const connection = { client, received: [], sent: [], closed: false };
    client.on('message', (topic, payload, packet) => {
        connection.received.push(describeMessage(topic, payload, packet));
    });
    client.on('packetsend', (packet) => connection.sent.push(packet.cmd));
    // An 'error' event without a listener would throw.
    client.on('error', (error) => log(`${clientId}: ${error.message}`));
    client.on('close', () => {
        connection.closed = true;
    });
    const connected = new Promise((resolve, reject) => {
        client.once('connect', (connack) => {
            log(`${clientId} connected, session present ${connack.sessionPresent}`);
            connection.connack = connack;
            resolve(connection);
        });
        client.once('error', (error) => reject(new Error(`${clientId}: ${error.message}`)));
        client.once('close', () => reject(new Error(`${clientId}: closed before CONNACK`)));
    });
    client.connect();
    return connected;
}

// Subscribes and resolves with the granted QoS of each filter, comma separated.
async function subscribe(connection, filters) {
    const granted = await connection.client.subscribeAsync(filters);
    return granted.map((g) => g.qos).join(',');
}

// Publishes and resolves once the exchange the QoS requires is complete.
async function publish(connection, topic, payload, options) {
    await connection.client.publishAsync(topic, payload, options);
}

// Ends the connection: with DISCONNECT, or, when `drop` is set, by closing the WebSocket with
// no DISCONNECT (MQTT.js destroys its stream), as a network failure would.
function close(connection, drop = false) {
    return new Promise((resolve) => {
        if (connection.closed) {
            resolve();
            return;
        }
        connection.client.once('close', resolve);
        connection.client.end(drop);
    });
}

// Resolves with what `connection` received once that is `count` messages (or after
// RECEIVE_LIMIT_MS, with fewer), listening QUIET_MS more so that a message beyond those is seen
// too.
async function receive(connection, count) {
    const deadline = performance.now() + RECEIVE_LIMIT_MS;
    while (connection.received.length < count && performance.now() < deadline) {
        await sleep(10);
    }
    await sleep(QUIET_MS);
    return connection.received;
}

// 1. Subscribe, then publish and receive at QoS 0, 1 and 2.
async function qos() {
    const topic = `${PREFIX}/qos`;
    const subscriber = await connect(`${PREFIX}-qos-sub`);
    record('qos', 'granted', await subscribe(subscriber, { [`${topic}/+`]: { qos: 2 } }));
    const publisher = await connect(`${PREFIX}-qos-pub`);
    for (const qos of [0, 1, 2]) {
        await publish(publisher, `${topic}/${qos}`, `payload at QoS ${qos}`, { qos });
        record('qos', 'published', qos);
    }
    for (const message of await receive(subscriber, 3)) {
        record('qos', message);
    }
    await close(publisher);
    await close(subscriber);
}

// 2. A retained message reaches a later subscriber with the retain flag set; one published
// while the subscription exists arrives without it.
async function retained() {
    const topic = `${PREFIX}/retained`;
    const publisher = await connect(`${PREFIX}-ret-pub`);
    await publish(publisher, topic, 'retained before the subscription', { qos: 1, retain: true });
    const subscriber = await connect(`${PREFIX}-ret-sub`);
    record('retained', 'granted', await subscribe(subscriber, { [topic]: { qos: 1 } }));
    await receive(subscriber, 1);
    await publish(publisher, topic, 'retained during the subscription', { qos: 1, retain: true });
    for (const message of await receive(subscriber, 2)) {
        record('retained', message);
    }
    await close(publisher);
    await close(subscriber);
}

// 3. The will of a client whose connection drops without DISCONNECT is published; the will of
// a client that sends DISCONNECT first is not (the control that shows the drop was one).
async function will() {
    const topic = `${PREFIX}/will`;
    const willOf = (payload) => ({ will: { topic, payload, qos: 1, retain: false } });
    const watcher = await connect(`${PREFIX}-will-sub`);
    record('will', 'granted', await subscribe(watcher, { [topic]: { qos: 1 } }));

    const polite = await connect(`${PREFIX}-will-polite`, willOf('will of the polite client'));
    await close(polite);
    record('will', 'polite client sent', polite.sent.join(','));

    const dropped = await connect(`${PREFIX}-will-drop`, willOf('will of the dropped client'));
    await close(dropped, true);
    record('will', 'dropped client sent', dropped.sent.join(','));

    for (const message of await receive(watcher, 1)) {
        record('will', message);
    }
    await close(watcher);
}

// 4. A persistent session keeps its subscriptions and queues QoS 1 and 2 messages while its
// client is away; the client reconnects with the same id and gets every one exactly once.
async function resume() {
    const topic = `${PREFIX}/resume`;
    const clientId = `${PREFIX}-resume`;
    const persistent =
        VERSION === 5 ? { clean: false, properties: { sessionExpiryInterval: 300 } } : { clean: false };

    const first = await connect(clientId, persistent);
    record('resume', 'first connection, session present', first.connack.sessionPresent);
    record(
        'resume',
        'granted',
        await subscribe(first, { [`${topic}/1`]: { qos: 1 }, [`${topic}/2`]: { qos: 2 } }),
    );
    await close(first);

    const publisher = await connect(`${PREFIX}-resume-pub`);
    for (const [qos, label] of [[1, 'a'], [2, 'a'], [1, 'b'], [2, 'b']]) {
        await publish(publisher, `${topic}/${qos}`, `queued ${label} at QoS ${qos}`, { qos });
    }
    await close(publisher);

    // A new client object: MQTT.js resubscribes on its own reconnections, and the messages
    // must come from the session the broker kept, not from a new subscription.
    const second = await connect(clientId, persistent);
    record('resume', 'second connection, session present', second.connack.sessionPresent);
    for (const message of await receive(second, 4)) {
        record('resume', message);
    }
    await close(second);
}

async function run(name, scenario) {
    log(`${name}: start`);
    try {
        await withLimit(scenario(), SCENARIO_LIMIT_MS, name);
        log(`${name}: done`);
    } catch (error) {
        record(name, 'error', error.message);
        log(`${name}: ${error.message}`);
    } finally {
        for (const client of openClients) {
            client.end(true);
        }
        openClients = [];
    }
}

async function main() {
    log(`MQTT.js against ${BROKER}, protocol version ${VERSION}`);
    for (const [name, scenario] of [['qos', qos], ['retained', retained], ['will', will], ['resume', resume]]) {
        await run(name, scenario);
    }
    await fetch('/result', { method: 'POST', body: outcome.join('\n') });
}

main().catch((error) => log(`failed: ${error.stack ?? error}`));
