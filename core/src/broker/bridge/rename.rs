//! Topic names across a bridge: a `topic` line maps local topic `local_prefix + T` to remote
//! topic `remote_prefix + T` for every `T` its pattern matches, and back.

use super::config::{BridgeConfig, BridgeDirection, BridgeTopic};
use crate::codec::ByteString;
use crate::codec::topic;

impl BridgeTopic {
    /// Whether messages cross from the remote broker to this one on this line.
    pub(crate) fn carries_in(&self) -> bool {
        matches!(self.direction, BridgeDirection::In | BridgeDirection::Both)
    }

    /// Whether messages cross from this broker to the remote one on this line.
    pub(crate) fn carries_out(&self) -> bool {
        matches!(self.direction, BridgeDirection::Out | BridgeDirection::Both)
    }

    /// The filter of the local subscription an `out` line makes.
    pub(crate) fn local_filter(&self) -> String {
        format!("{}{}", self.local_prefix, self.pattern)
    }

    /// The filter of the remote subscription an `in` line makes.
    pub(crate) fn remote_filter(&self) -> String {
        format!("{}{}", self.remote_prefix, self.pattern)
    }
}

/// The remote name of local topic `topic`, by the first `out`/`both` line that matches it;
/// `None` when none does (the topic then crosses unchanged) or the result is not a valid topic
/// name.
pub(crate) fn outgoing(bridge: &BridgeConfig, topic: &str) -> Option<ByteString> {
    bridge
        .topics
        .iter()
        .filter(|t| t.carries_out())
        .find_map(|t| swap_prefix(topic, &t.local_filter(), &t.local_prefix, &t.remote_prefix))
}

/// The local name of remote topic `topic`, by the first `in`/`both` line that matches it.
pub(crate) fn incoming(bridge: &BridgeConfig, topic: &str) -> Option<ByteString> {
    bridge
        .topics
        .iter()
        .filter(|t| t.carries_in())
        .find_map(|t| swap_prefix(topic, &t.remote_filter(), &t.remote_prefix, &t.local_prefix))
}

/// `to + T` for a topic `from + T` that `filter` matches. The prefix test is needed besides the
/// match: `a/#` matches `a` itself, which does not start with the prefix `a/`.
fn swap_prefix(topic: &str, filter: &str, from: &str, to: &str) -> Option<ByteString> {
    if !topic::matches(filter, topic) {
        return None;
    }
    let rest = topic.strip_prefix(from)?;
    let renamed = format!("{to}{rest}");
    topic::is_valid_name(&renamed).then(|| ByteString::from(renamed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::bridge::{Backoff, BridgeAddress};
    use crate::codec::{ProtocolVersion, QoS};

    fn bridge(topics: Vec<BridgeTopic>) -> BridgeConfig {
        BridgeConfig {
            name: "b".into(),
            addresses: vec![BridgeAddress {
                host: "h".into(),
                port: 1883,
            }],
            round_robin: false,
            topics,
            remote_clientid: "r".into(),
            local_clientid: "local.r".into(),
            remote_username: None,
            remote_password: None,
            clean_session: false,
            local_clean_session: false,
            protocol: ProtocolVersion::V3_1_1,
            try_private: true,
            keepalive_secs: 60,
            restart: Backoff::Constant { secs: 5 },
            notifications: false,
            notifications_local_only: false,
            notification_topic: "n".into(),
        }
    }

    fn line(pattern: &str, direction: BridgeDirection, local: &str, remote: &str) -> BridgeTopic {
        BridgeTopic {
            pattern: pattern.into(),
            direction,
            qos: QoS::AtLeastOnce,
            local_prefix: local.into(),
            remote_prefix: remote.into(),
        }
    }

    #[test]
    fn prefixes_are_swapped_both_ways() {
        let b = bridge(vec![line("#", BridgeDirection::Both, "here/", "there/")]);
        assert_eq!(outgoing(&b, "here/x/y").as_deref(), Some("there/x/y"));
        assert_eq!(incoming(&b, "there/x").as_deref(), Some("here/x"));
        // `here/#` matches `here`, which has no `here/` prefix to swap.
        assert_eq!(outgoing(&b, "here"), None);
        assert_eq!(outgoing(&b, "elsewhere/x"), None);
    }

    #[test]
    fn direction_limits_which_way_a_line_renames() {
        let b = bridge(vec![
            line("a/#", BridgeDirection::In, "l/", "r/"),
            line("b/#", BridgeDirection::Out, "l/", "r/"),
        ]);
        assert_eq!(incoming(&b, "r/a/1").as_deref(), Some("l/a/1"));
        assert_eq!(incoming(&b, "r/b/1"), None);
        assert_eq!(outgoing(&b, "l/b/1").as_deref(), Some("r/b/1"));
        assert_eq!(outgoing(&b, "l/a/1"), None);
    }

    #[test]
    fn an_empty_pattern_maps_the_prefix_itself() {
        let b = bridge(vec![line(
            "",
            BridgeDirection::Out,
            "local/topic",
            "remote/t",
        )]);
        assert_eq!(outgoing(&b, "local/topic").as_deref(), Some("remote/t"));
        assert_eq!(outgoing(&b, "local/topic/x"), None);
    }

    #[test]
    fn the_first_matching_line_wins() {
        let b = bridge(vec![
            line("x/#", BridgeDirection::Out, "", "one/"),
            line("#", BridgeDirection::Out, "", "two/"),
        ]);
        assert_eq!(outgoing(&b, "x/1").as_deref(), Some("one/x/1"));
        assert_eq!(outgoing(&b, "y").as_deref(), Some("two/y"));
    }
}
