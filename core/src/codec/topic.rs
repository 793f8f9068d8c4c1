//! Topic names and topic filters (3.1.1 and 5.0, section 4.7).
//!
//! A topic name is what a message is published to; it never holds a wildcard [MQTT-3.3.2-2]
//! [MQTT-4.7.1-1]. A topic filter is what a client subscribes to: levels separated by '/', where
//! '+' matches exactly one level and '#' matches any number of trailing levels; each wildcard must
//! fill a whole level and '#' must come last [MQTT-4.7.1-2] [MQTT-4.7.1-3]. Both must be at least
//! one character long [MQTT-4.7.3-1]. (The wildcard rules are [MQTT-4.7.1-2] and [MQTT-4.7.1-3] in
//! 3.1.1, [MQTT-4.7.1-1] and [MQTT-4.7.1-2] in 5.0.) Shared subscriptions are ordinary filters to the codec; what
//! `$share/` means is the broker's business.

/// The multi-level wildcard.
pub const MULTI_LEVEL: char = '#';
/// The single-level wildcard.
pub const SINGLE_LEVEL: char = '+';
/// The prefix of shared subscription filters (5.0, 4.8.2).
pub const SHARE_PREFIX: &str = "$share/";

/// True when `name` is a valid, non-empty topic name.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains([MULTI_LEVEL, SINGLE_LEVEL])
}

/// True when `filter` is a valid, non-empty topic filter.
pub fn is_valid_filter(filter: &str) -> bool {
    if filter.is_empty() {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        if level.contains(MULTI_LEVEL) && (level.len() != 1 || !is_last) {
            return false;
        }
        if level.contains(SINGLE_LEVEL) && level.len() != 1 {
            return false;
        }
    }
    true
}

/// True when `filter` names a shared subscription.
pub fn is_shared(filter: &str) -> bool {
    filter.starts_with(SHARE_PREFIX)
}

/// The Share Name and the topic filter of a shared subscription's filter
/// (`$share/{ShareName}/{filter}`), or `None` when `filter` is not a valid one: the Share Name
/// is at least one character without '/', '+' or '#', and a valid filter follows it
/// [MQTT-4.8.2-1] [MQTT-4.8.2-2] (5.0).
pub fn parse_shared(filter: &str) -> Option<(&str, &str)> {
    let rest = filter.strip_prefix(SHARE_PREFIX)?;
    let (name, inner) = rest.split_once('/')?;
    if name.is_empty() || name.contains([MULTI_LEVEL, SINGLE_LEVEL]) || !is_valid_filter(inner) {
        return None;
    }
    Some((name, inner))
}

/// True when the topic name `topic` matches the topic filter `filter` (4.7): level by level,
/// '+' standing for exactly one level and '#' for the parent level and everything below it.
/// Filters starting with a wildcard do not match topics starting with '$' [MQTT-4.7.2-1], and
/// nothing is normalised: matching is exact and case sensitive. This checks one filter; the
/// broker's router matches a topic against all subscriptions at once.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with([MULTI_LEVEL, SINGLE_LEVEL]) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        if level == "#" {
            return true;
        }
        match topic_levels.next() {
            Some(t) if level == "+" || level == t => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [MQTT-4.8.2-1] [MQTT-4.8.2-2] (5.0)
    #[test]
    fn shared_subscription_filters() {
        assert_eq!(parse_shared("$share/g/a/+"), Some(("g", "a/+")));
        assert_eq!(parse_shared("$share/g/#"), Some(("g", "#")));
        assert_eq!(parse_shared("$share/g//"), Some(("g", "/")));
        for bad in [
            "$share/g",
            "$share//a",
            "$share/g/",
            "$share/+/a",
            "$share/#/a",
            "$share/g+/a",
            "$share/g/a#",
            "$shared/g/a",
            "a/b",
        ] {
            assert_eq!(parse_shared(bad), None, "{bad}");
        }
    }

    /// [MQTT-4.7.1-2] (3.1.1), [MQTT-4.7.1-1] (5.0).
    #[test]
    fn multi_level_wildcard_whole_level_and_last() {
        for ok in ["#", "a/#", "a/b/#", "/#", "+/#"] {
            assert!(is_valid_filter(ok), "{ok}");
        }
        for bad in ["a#", "a/#/b", "#/a", "a/b#", "##", "a/#/"] {
            assert!(!is_valid_filter(bad), "{bad}");
        }
    }

    /// [MQTT-4.7.1-3] (3.1.1), [MQTT-4.7.1-2] (5.0).
    #[test]
    fn single_level_wildcard_whole_level() {
        for ok in ["+", "+/+", "a/+/b", "/+", "+/", "a/+"] {
            assert!(is_valid_filter(ok), "{ok}");
        }
        for bad in ["a+", "a/+b", "++", "a/b+/c"] {
            assert!(!is_valid_filter(bad), "{bad}");
        }
    }

    /// [MQTT-4.7.3-1]
    #[test]
    fn topics_are_not_empty() {
        assert!(!is_valid_filter(""));
        assert!(!is_valid_name(""));
        assert!(is_valid_name("/"));
        assert!(is_valid_filter("/"));
    }

    /// [MQTT-4.7.2-1], and the examples of 4.7.1.2 and 4.7.1.3.
    #[test]
    fn single_filter_matching() {
        let yes = [
            ("sport/#", "sport"),
            ("sport/#", "sport/"),
            ("sport/#", "sport/tennis/player1"),
            ("#", "a/b"),
            ("+", "a"),
            ("+", ""),
            ("+/+", "/finance"),
            ("/+", "/finance"),
            ("sport/+/player1", "sport/tennis/player1"),
            ("$SYS/#", "$SYS/broker"),
            ("$SYS/+", "$SYS/x"),
            ("a//b", "a//b"),
        ];
        for (f, t) in yes {
            assert!(matches(f, t), "{f} should match {t}");
        }
        let no = [
            ("sport/+", "sport"),
            ("+", "/finance"),
            ("sport/tennis", "sport/tennis/x"),
            ("sport/tennis/x", "sport/tennis"),
            ("#", "$SYS/broker"),
            ("+/broker", "$SYS/broker"),
            ("Sport", "sport"),
            ("a/b", "a//b"),
        ];
        for (f, t) in no {
            assert!(!matches(f, t), "{f} should not match {t}");
        }
    }

    /// [MQTT-3.3.2-2]
    #[test]
    fn names_have_no_wildcards() {
        assert!(is_valid_name("a/b c/$SYS"));
        for bad in ["#", "a/+", "a/b#", "+"] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }
}
