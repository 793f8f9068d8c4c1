//! What crosses a run's bridge, modelled from its configuration alone (not from midge-core's
//! code): for a message published on one broker, the topic and the highest QoS it has on the
//! other, or that it does not cross. A message crosses at most once, from the broker it was
//! published on; a bridge that sends it back is a loop.
//!
//! A message on broker A's topic `t` crosses to B when the filter `local_prefix + pattern` of
//! an `out` or `both` line matches `t` (the bridge's session on A subscribes to those filters);
//! it is named on B by the first such line whose local prefix starts `t`, `remote_prefix`
//! taking the place of `local_prefix` (unchanged when none does). Its QoS on the way is at most
//! the highest QoS of the bridge's subscriptions that match (lines with the same filter make
//! one subscription). From B to A likewise with `in` and `both` lines, the remote filters and
//! prefixes swapped.

use midge_core::broker::bridge::{BridgeConfig, BridgeTopic};
use midge_core::codec::QoS;
use midge_core::codec::topic::matches;
use std::borrow::Cow;

/// One bridge between two hosts: `local` dials `remote`.
#[derive(Debug, Clone)]
pub struct Crossing {
    pub local: usize,
    pub remote: usize,
    lines: Vec<BridgeTopic>,
    /// The bridge speaks MQTT 5: properties such as the Message Expiry Interval cross too.
    pub v5: bool,
}

impl Crossing {
    pub fn new(local: usize, remote: usize, config: &BridgeConfig) -> Crossing {
        Crossing {
            local,
            remote,
            lines: config.topics.clone(),
            v5: config.protocol.is_v5(),
        }
    }

    /// The name a message published on `from` with `topic` has on the wire to `to`: the
    /// remote broker's name either way (the bridge renames what it sends out before sending
    /// and what comes in after receiving), if it crosses.
    pub fn wire_name(&self, from: usize, to: usize, topic: &str) -> Option<(String, QoS)> {
        let (name, qos) = self.cross(from, to, topic)?;
        Some(if to == self.remote {
            (name, qos)
        } else {
            (topic.to_owned(), qos)
        })
    }

    /// The topic and highest QoS on `to` of a message published on `from` with `topic`, if it
    /// crosses there.
    pub fn cross(&self, from: usize, to: usize, topic: &str) -> Option<(String, QoS)> {
        let out = if (from, to) == (self.local, self.remote) {
            true
        } else if (from, to) == (self.remote, self.local) {
            false
        } else {
            return None;
        };
        let sides = |l: &BridgeTopic| {
            let (here, there) = if out {
                (&l.local_prefix, &l.remote_prefix)
            } else {
                (&l.remote_prefix, &l.local_prefix)
            };
            (format!("{here}{}", l.pattern), here.clone(), there.clone())
        };
        let carries = |l: &&BridgeTopic| {
            if out { l.carries_out() } else { l.carries_in() }
        };
        // The QoS of each filter the bridge subscribes with: on its own broker the highest of
        // the lines with that filter; on the remote, one SUBSCRIBE has a subscription per line
        // in order, and a later one with the same filter replaces the earlier.
        let mut by_filter: Vec<(String, QoS)> = Vec::new();
        let mut renamed = None;
        for line in self.lines.iter().filter(carries) {
            let (filter, here, there) = sides(line);
            if !matches(&filter, topic) {
                continue;
            }
            match by_filter.iter_mut().find(|(f, _)| *f == filter) {
                Some((_, q)) if out => *q = (*q).max(line.qos),
                Some((_, q)) => *q = line.qos,
                None => by_filter.push((filter, line.qos)),
            }
            if renamed.is_none()
                && let Some(rest) = topic.strip_prefix(here.as_str())
            {
                renamed = Some(format!("{there}{rest}"));
            }
        }
        let qos = by_filter.iter().map(|(_, q)| *q).max();
        qos.map(|q| (renamed.unwrap_or_else(|| topic.to_owned()), q))
    }
}

/// Which lines carry messages which way; midge-core's own are crate-private.
trait Carries {
    fn carries_out(&self) -> bool;
    fn carries_in(&self) -> bool;
}

impl Carries for BridgeTopic {
    fn carries_out(&self) -> bool {
        use midge_core::broker::bridge::BridgeDirection::{Both, Out};
        matches!(self.direction, Out | Both)
    }

    fn carries_in(&self) -> bool {
        use midge_core::broker::bridge::BridgeDirection::{Both, In};
        matches!(self.direction, In | Both)
    }
}

/// How a message published on `origin` with `topic` at `qos` reaches `host`: its topic there
/// and the highest QoS it may have, or `None` when it does not reach it.
pub fn seen_at<'a>(
    crossing: Option<&Crossing>,
    origin: usize,
    topic: &'a str,
    qos: QoS,
    host: usize,
) -> Option<(Cow<'a, str>, QoS)> {
    if host == origin {
        return Some((Cow::Borrowed(topic), qos));
    }
    let (renamed, line_qos) = crossing?.cross(origin, host, topic)?;
    Some((Cow::Owned(renamed), qos.min(line_qos)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use midge_core::broker::bridge::{Backoff, BridgeDirection};
    use midge_core::codec::ProtocolVersion;

    fn line(pattern: &str, direction: BridgeDirection, qos: QoS, l: &str, r: &str) -> BridgeTopic {
        BridgeTopic {
            pattern: pattern.into(),
            direction,
            qos,
            local_prefix: l.into(),
            remote_prefix: r.into(),
        }
    }

    fn crossing(topics: Vec<BridgeTopic>) -> Crossing {
        let config = BridgeConfig {
            name: "ab".into(),
            addresses: Vec::new(),
            round_robin: false,
            topics,
            remote_clientid: "r".into(),
            local_clientid: "l".into(),
            remote_username: None,
            remote_password: None,
            clean_session: false,
            local_clean_session: false,
            protocol: ProtocolVersion::V5,
            try_private: true,
            keepalive_secs: 60,
            restart: Backoff::Constant { secs: 1 },
            notifications: false,
            notifications_local_only: false,
            notification_topic: String::new(),
        };
        Crossing::new(0, 1, &config)
    }

    #[test]
    fn out_lines_rename_from_a_to_b_only() {
        let c = crossing(vec![line(
            "a/#",
            BridgeDirection::Out,
            QoS::AtLeastOnce,
            "",
            "ra/",
        )]);
        assert_eq!(
            c.cross(0, 1, "a/b"),
            Some(("ra/a/b".to_owned(), QoS::AtLeastOnce))
        );
        assert_eq!(c.cross(1, 0, "a/b"), None);
        assert_eq!(c.cross(0, 1, "b/c"), None);
    }

    #[test]
    fn in_lines_match_the_remote_filter_and_take_the_local_prefix() {
        let c = crossing(vec![line(
            "a/+",
            BridgeDirection::In,
            QoS::ExactlyOnce,
            "rb/",
            "s/",
        )]);
        assert_eq!(
            c.cross(1, 0, "s/a/b"),
            Some(("rb/a/b".to_owned(), QoS::ExactlyOnce))
        );
        assert_eq!(c.cross(1, 0, "a/b"), None);
        assert_eq!(c.cross(0, 1, "rb/a/b"), None);
    }

    #[test]
    fn on_the_remote_the_last_line_with_a_filter_sets_its_qos() {
        let c = crossing(vec![
            line("a/+", BridgeDirection::Both, QoS::ExactlyOnce, "", "s/"),
            line("a/+", BridgeDirection::In, QoS::AtLeastOnce, "", "s/"),
        ]);
        assert_eq!(
            c.cross(1, 0, "s/a/b"),
            Some(("a/b".to_owned(), QoS::AtLeastOnce))
        );
        assert_eq!(
            c.cross(0, 1, "a/b"),
            Some(("s/a/b".to_owned(), QoS::ExactlyOnce))
        );
    }

    #[test]
    fn the_first_line_names_and_the_highest_qos_carries() {
        let c = crossing(vec![
            line("a/b", BridgeDirection::Both, QoS::AtLeastOnce, "", "s/"),
            line("a/#", BridgeDirection::Out, QoS::ExactlyOnce, "", ""),
        ]);
        assert_eq!(
            c.cross(0, 1, "a/b"),
            Some(("s/a/b".to_owned(), QoS::ExactlyOnce))
        );
        assert_eq!(
            c.cross(0, 1, "a/c"),
            Some(("a/c".to_owned(), QoS::ExactlyOnce))
        );
        assert_eq!(
            c.cross(1, 0, "s/a/b"),
            Some(("a/b".to_owned(), QoS::AtLeastOnce))
        );
        let seen = seen_at(Some(&c), 0, "a/b", QoS::AtLeastOnce, 1);
        assert_eq!(seen, Some((Cow::Borrowed("s/a/b"), QoS::AtLeastOnce)));
        assert_eq!(seen_at(None, 0, "a/b", QoS::ExactlyOnce, 1), None);
    }
}
