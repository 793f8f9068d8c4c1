//! Command line options.

use midge_core::codec::{ProtocolVersion, QoS};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

pub const USAGE: &str = "\
usage: midge-bench SCENARIO [OPTIONS]

scenarios:
  fan-in     P publishers, one subscriber to all of them (--publishers, default 4)
  fan-out    one publisher, N subscribers (--subscribers, default 50)
  pairs      N publisher/subscriber pairs, each on its own topic (--pairs, default 10)
  idle       N connections that connect and stay idle: connect rate and broker memory per
             connection (--connections, default 10000)

options:
  --addr HOST:PORT      broker address; repeat to spread connections over several listeners
                        (default 127.0.0.1:1883)
  --qos 0|1|2           QoS of publishes and subscriptions (default 0)
  --payload BYTES       payload size, at least 20 (default 64)
  --messages N          messages per publisher (default 100000)
  --ahead N             how many messages may be outstanding toward one subscriber (sent, not
                        yet received), shared by the publishers it hears (default 500)
  --inflight N          unacknowledged QoS 1/2 publishes per publisher (default 100)
  --rate MSGS_PER_S     publish at this total rate instead of as fast as possible (latency)
  --mqtt 3.1.1|5        protocol version (default 3.1.1)
  --background-connections N  message scenarios: idle connections held during the run
  --background-subscriptions N subscriptions no message matches, spread over the background
                        connections (at least one), held during the run
  --broker-pid PID      measure the broker's CPU time and memory from /proc
  --connect-parallel N  idle: connections in the handshake at once (default 64; many more
                        overflow a listen backlog and measure its overflow)
  --hold SECONDS        idle: keep the connections open this long after the last CONNACK
  --timeout SECONDS     give up after this long (default 300)
  --latency-out FILE    write the latency distribution (bucket ns, count) as TSV
  --json                print the result as one JSON object
  --label TEXT          a label copied into the result (the broker's name, say)";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    FanIn { publishers: usize },
    FanOut { subscribers: usize },
    Pairs { pairs: usize },
    Idle { connections: usize },
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::FanIn { .. } => "fan-in",
            Scenario::FanOut { .. } => "fan-out",
            Scenario::Pairs { .. } => "pairs",
            Scenario::Idle { .. } => "idle",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub scenario: Scenario,
    pub addrs: Vec<SocketAddr>,
    pub qos: QoS,
    pub payload: usize,
    pub messages: u64,
    pub ahead: u64,
    pub inflight: u16,
    pub rate: Option<f64>,
    pub version: ProtocolVersion,
    pub background_connections: usize,
    pub background_subscriptions: usize,
    pub broker_pid: Option<u32>,
    pub connect_parallel: usize,
    pub hold: Duration,
    pub timeout: Duration,
    pub latency_out: Option<PathBuf>,
    pub json: bool,
    pub label: String,
}

pub fn parse(args: &[String]) -> Result<Options, String> {
    let mut it = args.iter();
    let scenario_name = it.next().ok_or("no scenario given")?;
    let mut count: Option<usize> = None;
    let mut count_flag = "";
    let mut o = Options {
        scenario: Scenario::FanIn { publishers: 4 },
        addrs: Vec::new(),
        qos: QoS::AtMostOnce,
        payload: 64,
        messages: 100_000,
        ahead: 500,
        inflight: 100,
        rate: None,
        version: ProtocolVersion::V3_1_1,
        background_connections: 0,
        background_subscriptions: 0,
        broker_pid: None,
        connect_parallel: 64,
        hold: Duration::ZERO,
        timeout: Duration::from_secs(300),
        latency_out: None,
        json: false,
        label: String::new(),
    };
    while let Some(flag) = it.next() {
        if flag == "--json" {
            o.json = true;
            continue;
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?
            .as_str();
        let number = |what: &str| -> Result<u64, String> {
            value
                .parse::<u64>()
                .map_err(|_| format!("{what}: not a number: {value}"))
        };
        match flag.as_str() {
            "--addr" => o.addrs.push(
                value
                    .to_socket_addrs()
                    .map_err(|e| format!("--addr {value}: {e}"))?
                    .next()
                    .ok_or_else(|| format!("--addr {value}: no address"))?,
            ),
            "--publishers" | "--subscribers" | "--pairs" | "--connections" => {
                count = Some(number(flag)? as usize);
                count_flag = flag.as_str();
            }
            "--qos" => {
                o.qos = QoS::from_bits(number("--qos")? as u8).ok_or("--qos must be 0, 1 or 2")?
            }
            "--payload" => o.payload = number("--payload")? as usize,
            "--messages" => o.messages = number("--messages")?,
            "--ahead" => o.ahead = number("--ahead")?.max(1),
            "--inflight" => {
                o.inflight = u16::try_from(number("--inflight")?)
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or("--inflight must be 1 to 65535")?
            }
            "--rate" => {
                let rate: f64 = value.parse().map_err(|_| format!("--rate: {value}"))?;
                if !(rate > 0.0 && rate.is_finite()) {
                    return Err("--rate must be positive".into());
                }
                o.rate = Some(rate);
            }
            "--mqtt" => {
                o.version = match value {
                    "3.1.1" | "4" => ProtocolVersion::V3_1_1,
                    "5" | "5.0" => ProtocolVersion::V5,
                    _ => return Err(format!("--mqtt {value}: use 3.1.1 or 5")),
                }
            }
            "--background-connections" => o.background_connections = number(flag)? as usize,
            "--background-subscriptions" => o.background_subscriptions = number(flag)? as usize,
            "--broker-pid" => o.broker_pid = Some(number("--broker-pid")? as u32),
            "--connect-parallel" => {
                o.connect_parallel = (number("--connect-parallel")? as usize).max(1)
            }
            "--hold" => o.hold = Duration::from_secs(number("--hold")?),
            "--timeout" => o.timeout = Duration::from_secs(number("--timeout")?),
            "--latency-out" => o.latency_out = Some(PathBuf::from(value)),
            "--label" => o.label = value.to_owned(),
            other => return Err(format!("unknown option {other}")),
        }
    }
    let expected_flag = match scenario_name.as_str() {
        "fan-in" => "--publishers",
        "fan-out" => "--subscribers",
        "pairs" => "--pairs",
        "idle" => "--connections",
        other => return Err(format!("unknown scenario {other}")),
    };
    if count.is_some() && count_flag != expected_flag {
        return Err(format!("{count_flag} does not apply to {scenario_name}"));
    }
    o.scenario = match scenario_name.as_str() {
        "fan-in" => Scenario::FanIn {
            publishers: count.unwrap_or(4),
        },
        "fan-out" => Scenario::FanOut {
            subscribers: count.unwrap_or(50),
        },
        "pairs" => Scenario::Pairs {
            pairs: count.unwrap_or(10),
        },
        _ => Scenario::Idle {
            connections: count.unwrap_or(10_000),
        },
    };
    if count == Some(0) {
        return Err(format!("{expected_flag} must be at least 1"));
    }
    if o.payload < crate::wire::STAMP_LEN {
        return Err(format!(
            "--payload must be at least {}",
            crate::wire::STAMP_LEN
        ));
    }
    if o.addrs.is_empty() {
        o.addrs.push(SocketAddr::from(([127, 0, 0, 1], 1883)));
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn defaults_and_flags() {
        let o = parse(&args("fan-out --subscribers 7 --qos 2 --mqtt 5 --json")).unwrap();
        assert_eq!(o.scenario, Scenario::FanOut { subscribers: 7 });
        assert_eq!(o.qos, QoS::ExactlyOnce);
        assert!(o.version.is_v5() && o.json);
        assert_eq!(o.addrs, [SocketAddr::from(([127, 0, 0, 1], 1883))]);
        let o = parse(&args("idle --addr 127.0.0.1:1 --addr 127.0.0.1:2")).unwrap();
        assert_eq!(
            o.scenario,
            Scenario::Idle {
                connections: 10_000
            }
        );
        assert_eq!(o.addrs.len(), 2);
    }

    #[test]
    fn errors() {
        for bad in [
            "",
            "fan-sideways",
            "fan-in --subscribers 3",
            "fan-in --qos 3",
            "pairs --payload 10",
            "pairs --pairs 0",
            "pairs --rate -1",
            "pairs --messages",
            "pairs --bogus 1",
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad}");
        }
    }
}
