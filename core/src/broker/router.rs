//! The subscription index: which subscriptions match a topic name (3.1.1 and 5.0, section 4.7).
//!
//! [`Router`] is a trie with one edge per topic level. A filter's literal levels are keyed in a
//! [`BTreeMap`] and its wildcards have slots of their own, so matching a topic name follows, at
//! each level, the literal child named by the topic's level, the '+' child and the '#' slot: the
//! cost grows with the depth of the topic and the number of matches, not with the number of
//! subscriptions. The subscribers of one filter sit in a [`BTreeMap`] too, so subscribing and
//! unsubscribing stay logarithmic even when a million clients share a filter.
//!
//! The matching rules:
//!
//! - levels are separated by '/', and empty levels are levels like any other ("a//b", "/a", "a/");
//! - '+' matches exactly one level, an empty one included [MQTT-4.7.1-3] (3.1.1);
//! - '#' matches its parent level and any number of child levels, so "sport/#" matches "sport",
//!   "sport/" and "sport/a/b" [MQTT-4.7.1-2] (3.1.1);
//! - a filter whose first level is a wildcard does not match a topic name that starts with '$'
//!   [MQTT-4.7.2-1], while "$SYS/#" matches "$SYS/x";
//! - nothing is normalised: levels are compared byte for byte, case included [MQTT-4.7.3-4] (5.0).
//!
//! Filters are expected to be valid ([`is_valid_filter`]); the codec checks them before a
//! subscription reaches the broker. The router gives `$share/` no meaning: a shared subscription is
//! whatever filter the broker chooses to store for it.
//!
//! Nothing in here recurses along the levels of a topic: names and filters may hold some 32,000
//! levels, so matching, pruning and dropping use explicit stacks instead of the call stack.

use crate::codec::topic::is_valid_filter;
use std::collections::BTreeMap;
use std::fmt;

/// The '+' level of a filter.
const SINGLE: &str = "+";
/// The '#' level of a filter.
const MULTI: &str = "#";

/// Subscriptions indexed by topic filter: subscriber `S` holds a subscription to a filter, with a
/// value `V` (its subscription options, typically).
///
/// Each subscriber has at most one subscription per filter; different filters of one subscriber
/// may overlap, and the router reports every one that matches.
pub struct Router<S, V> {
    root: Node<S, V>,
    /// The number of (filter, subscriber) pairs stored.
    len: usize,
}

/// One subscription that matches a topic name, as collected by [`Router::matches`].
#[derive(Debug, PartialEq, Eq)]
pub struct Match<'a, S, V> {
    /// Who subscribed.
    pub subscriber: S,
    /// The filter of the subscription, exactly as it was inserted.
    pub filter: &'a str,
    /// The value stored with the subscription.
    pub value: &'a V,
}

// Written out because a derive would require `V: Clone`, which a reference does not need.
impl<S: Copy, V> Clone for Match<'_, S, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S: Copy, V> Copy for Match<'_, S, V> {}

/// A trie node: the filters that have reached it through the same levels.
struct Node<S, V> {
    /// The subscriptions to the filter that ends at this node.
    here: Option<Box<Leaf<S, V>>>,
    /// The subscriptions to this node's filter followed by "/#" (or to "#", at the root). A '#'
    /// is always the last level, so it needs no node of its own.
    multi: Option<Box<Leaf<S, V>>>,
    /// The child reached through a '+' level.
    single: Option<Box<Node<S, V>>>,
    /// The children reached through literal levels.
    children: BTreeMap<Box<str>, Node<S, V>>,
}

/// The subscribers of one filter.
struct Leaf<S, V> {
    /// The full filter, kept so that a match can name it without rebuilding it from the levels.
    filter: Box<str>,
    subscribers: BTreeMap<S, V>,
}

/// A pending step of the matching walk.
enum Step<'n, 't, S, V> {
    /// Match the remaining levels of the topic (`None` once every level is consumed) below a node.
    Visit(&'n Node<S, V>, Option<&'t str>),
    /// Report every subscriber of a filter that is already known to match.
    Report(&'n Leaf<S, V>),
}

impl<S: Ord + Copy, V> Router<S, V> {
    /// An empty router.
    pub fn new() -> Self {
        Router {
            root: Node::new(),
            len: 0,
        }
    }

    /// The number of subscriptions, counting each (filter, subscriber) pair once.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the router holds no subscription.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `subscriber`'s subscription to `filter` with `value`, or replaces the value of the one
    /// it already has and returns the old value.
    ///
    /// `filter` must be a valid topic filter; the codec validates filters before they get here.
    pub fn insert(&mut self, filter: &str, subscriber: S, value: V) -> Option<V> {
        debug_assert!(is_valid_filter(filter), "invalid topic filter {filter:?}");
        let (prefix, multi) = split_multi(filter);
        let mut node = &mut self.root;
        for level in levels(prefix) {
            node = node.child_or_insert(level);
        }
        let slot = if multi {
            &mut node.multi
        } else {
            &mut node.here
        };
        let leaf = slot.get_or_insert_with(|| Box::new(Leaf::new(filter)));
        let previous = leaf.subscribers.insert(subscriber, value);
        if previous.is_none() {
            self.len += 1;
        }
        previous
    }

    /// Removes `subscriber`'s subscription to `filter` and returns its value, or `None` when there
    /// was no such subscription. Nodes left without subscriptions below them are freed, so the
    /// router's memory follows the live subscriptions.
    pub fn remove(&mut self, filter: &str, subscriber: S) -> Option<V> {
        let (prefix, multi) = split_multi(filter);
        let node = self.root.descend_mut(prefix)?;
        let slot = if multi {
            &mut node.multi
        } else {
            &mut node.here
        };
        let leaf = slot.as_mut()?;
        let value = leaf.subscribers.remove(&subscriber)?;
        if leaf.subscribers.is_empty() {
            *slot = None;
        }
        self.len -= 1;
        if node.is_idle() {
            self.prune(prefix);
        }
        Some(value)
    }

    /// The value of `subscriber`'s subscription to `filter`, if it has one.
    pub fn get(&self, filter: &str, subscriber: S) -> Option<&V> {
        let (prefix, multi) = split_multi(filter);
        let node = self.root.descend(prefix)?;
        let leaf = if multi { &node.multi } else { &node.here };
        leaf.as_ref()?.subscribers.get(&subscriber)
    }

    /// Calls `f(subscriber, filter, value)` for every subscription whose filter matches the topic
    /// name `topic`.
    ///
    /// Order: by filter, filters compared level by level (each level bytewise, a filter before the
    /// longer filters it is a prefix of, so "a" < "a/#" < "a/+" < "a/b"), and for one filter by
    /// ascending subscriber. The order depends only on the subscriptions stored, never on the
    /// order in which they were made.
    pub fn for_each_match<'a>(&'a self, topic: &str, mut f: impl FnMut(S, &'a str, &'a V)) {
        let mut report = |leaf: &'a Leaf<S, V>| {
            for (&subscriber, value) in &leaf.subscribers {
                f(subscriber, &leaf.filter, value);
            }
        };
        // Wildcards in the first level of a filter do not match '$' topics [MQTT-4.7.2-1]; the
        // flag only matters for the root, the first step, and is true for every step after it.
        let mut wildcards = !topic.starts_with('$');
        // The step to take next is kept out of the stack, which is only used when the walk
        // branches: a topic that meets no wildcard is matched without allocating.
        let mut next = Some(Step::Visit(&self.root, Some(topic)));
        let mut stack = Vec::new();
        while let Some(step) = next.take().or_else(|| stack.pop()) {
            match step {
                Step::Report(leaf) => report(leaf),
                Step::Visit(node, None) => {
                    // Every level is consumed: the filter that ends here matches, and so does
                    // the one that adds "/#", since '#' also matches its parent level.
                    node.here.as_deref().into_iter().for_each(&mut report);
                    node.multi.as_deref().into_iter().for_each(&mut report);
                }
                Step::Visit(node, Some(rest)) => {
                    next = node.branch(rest, wildcards, &mut stack);
                }
            }
            wildcards = true;
        }
    }

    /// Appends to `out` every subscription whose filter matches the topic name `topic`.
    ///
    /// Order: the appended matches are sorted by subscriber, and for one subscriber by filter in
    /// the order of [`Router::for_each_match`], so that the matches of one subscriber are
    /// adjacent. Matches already in `out` are left as they are.
    pub fn matches<'a>(&'a self, topic: &str, out: &mut Vec<Match<'a, S, V>>) {
        let start = out.len();
        self.for_each_match(topic, |subscriber, filter, value| {
            out.push(Match {
                subscriber,
                filter,
                value,
            });
        });
        // Stable, so the filter order of the walk survives within each subscriber.
        out[start..].sort_by_key(|m| m.subscriber);
    }

    /// Frees the chain of nodes that the removal of the last subscription at the end of `prefix`
    /// left without purpose: from the deepest ancestor that still has other business (another
    /// subscription or another child; the root at worst) down to the end of the path.
    fn prune(&mut self, prefix: Option<&str>) {
        let mut keep = 0;
        let mut node = &self.root;
        for (depth, level) in levels(prefix).enumerate() {
            if node.is_busy() {
                keep = depth;
            }
            node = node
                .child(level)
                .expect("the path of a subscription just removed");
        }
        let mut path = levels(prefix);
        let mut parent = &mut self.root;
        for level in path.by_ref().take(keep) {
            parent = parent
                .child_mut(level)
                .expect("the path of a subscription just removed");
        }
        // No level at all when the filter was "#": the root is never freed.
        if let Some(level) = path.next() {
            parent.unlink(level);
        }
    }

    /// The number of trie nodes, root included; a measure of memory for the tests.
    #[cfg(test)]
    fn node_count(&self) -> usize {
        let mut count = 0;
        let mut stack = vec![&self.root];
        while let Some(node) = stack.pop() {
            count += 1;
            stack.extend(node.single.as_deref());
            stack.extend(node.children.values());
        }
        count
    }
}

impl<S: Ord + Copy, V> Default for Router<S, V> {
    fn default() -> Self {
        Router::new()
    }
}

// Written out to keep a possibly huge trie out of debug output.
impl<S, V> fmt::Debug for Router<S, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<S: Ord + Copy, V> Node<S, V> {
    fn new() -> Self {
        Node {
            here: None,
            multi: None,
            single: None,
            children: BTreeMap::new(),
        }
    }

    /// The child reached through `level` of a filter, if there is one.
    fn child(&self, level: &str) -> Option<&Self> {
        if level == SINGLE {
            self.single.as_deref()
        } else {
            self.children.get(level)
        }
    }

    /// The child reached through `level` of a filter, if there is one.
    fn child_mut(&mut self, level: &str) -> Option<&mut Self> {
        if level == SINGLE {
            self.single.as_deref_mut()
        } else {
            self.children.get_mut(level)
        }
    }

    /// The child reached through `level` of a filter, created if needed.
    fn child_or_insert(&mut self, level: &str) -> &mut Self {
        if level == SINGLE {
            return self.single.get_or_insert_with(|| Box::new(Node::new()));
        }
        // Look up before inserting: the common case is an existing level, and it needs no
        // allocation of a key.
        if !self.children.contains_key(level) {
            self.children.insert(level.into(), Node::new());
        }
        self.children.get_mut(level).expect("inserted above")
    }

    /// Removes the child reached through `level`, with everything below it.
    fn unlink(&mut self, level: &str) {
        if level == SINGLE {
            self.single = None;
        } else {
            self.children.remove(level);
        }
    }

    /// The node at the end of the filter levels `prefix`, if it exists.
    fn descend(&self, prefix: Option<&str>) -> Option<&Self> {
        levels(prefix).try_fold(self, |node, level| node.child(level))
    }

    /// The node at the end of the filter levels `prefix`, if it exists.
    fn descend_mut(&mut self, prefix: Option<&str>) -> Option<&mut Self> {
        levels(prefix).try_fold(self, |node, level| node.child_mut(level))
    }

    /// True when the node holds nothing: no subscription and no child.
    fn is_idle(&self) -> bool {
        self.here.is_none()
            && self.multi.is_none()
            && self.single.is_none()
            && self.children.is_empty()
    }

    /// True when the node must outlive the removal of any one of its children: it holds
    /// subscriptions or more than one child.
    fn is_busy(&self) -> bool {
        let links = usize::from(self.single.is_some()) + self.children.len();
        self.here.is_some() || self.multi.is_some() || links > 1
    }

    /// The steps that match `rest`, the levels of a topic still to match, below this node: the
    /// '#' filter, the '+' child and the literal child named by the next level, in the order
    /// their levels sort. Returns the first and pushes the others on `stack` so that they pop off
    /// in order. `wildcards` is false when the wildcards must be skipped (the first level of a
    /// '$' topic).
    fn branch<'n, 't>(
        &'n self,
        rest: &'t str,
        wildcards: bool,
        stack: &mut Vec<Step<'n, 't, S, V>>,
    ) -> Option<Step<'n, 't, S, V>> {
        let (level, after) = split_level(rest);
        let (multi, single) = if wildcards {
            (self.multi.as_deref(), self.single.as_deref())
        } else {
            (None, None)
        };
        let multi = multi.map(Step::Report);
        let single = single.map(|node| Step::Visit(node, after));
        let exact = self
            .children
            .get(level)
            .map(|node| Step::Visit(node, after));
        // "#" sorts before "+"; a topic's level is neither, and sorts wherever its bytes say.
        let ordered = if level < MULTI {
            [exact, multi, single]
        } else if level < SINGLE {
            [multi, exact, single]
        } else {
            [multi, single, exact]
        };
        let mut steps = ordered.into_iter().flatten();
        let first = steps.next();
        stack.extend(steps.rev());
        first
    }
}

// The derived drop would recurse once per level and can overflow the stack on a deep filter;
// this one takes the nodes apart from the bottom with a stack as deep as the trie, on the heap.
impl<S, V> Drop for Node<S, V> {
    fn drop(&mut self) {
        let mut pending: Vec<Node<S, V>> = Vec::new();
        loop {
            let top = match pending.last_mut() {
                Some(node) => node,
                None => &mut *self,
            };
            match top.take_child() {
                Some(child) => pending.push(child),
                // `top` has no child left; if it is in `pending`, it drops without recursing.
                None if pending.pop().is_some() => {}
                None => break,
            }
        }
    }
}

impl<S, V> Node<S, V> {
    /// Takes one child out of the node, if it has any.
    fn take_child(&mut self) -> Option<Self> {
        if let Some(single) = self.single.take() {
            return Some(*single);
        }
        self.children.pop_first().map(|(_, child)| child)
    }
}

impl<S, V> Leaf<S, V> {
    fn new(filter: &str) -> Self {
        Leaf {
            filter: filter.into(),
            subscribers: BTreeMap::new(),
        }
    }
}

/// Splits a trailing '#' level off a filter: the levels before it (`None` when there are none, as
/// in "#") and whether it was there.
fn split_multi(filter: &str) -> (Option<&str>, bool) {
    if filter == MULTI {
        (None, true)
    } else if let Some(prefix) = filter.strip_suffix("/#") {
        (Some(prefix), true)
    } else {
        (Some(filter), false)
    }
}

/// The levels of a filter or topic name; `None` has none.
fn levels(path: Option<&str>) -> Levels<'_> {
    Levels { rest: path }
}

/// The iterator of [`levels`]: [`split_level`] again and again.
struct Levels<'a> {
    rest: Option<&'a str>,
}

impl<'a> Iterator for Levels<'a> {
    type Item = &'a str;

    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        let (level, rest) = split_level(self.rest?);
        self.rest = rest;
        Some(level)
    }
}

/// Splits the first level off the levels `rest`: that level, and the ones after it (`None` when
/// it was the last).
///
/// A byte search rather than `str::split('/')` or `split_once('/')`: their UTF-8 character
/// searcher set up a `memchr` per level, which on the short levels of a typical topic cost about
/// 4% of the instructions of a QoS 1 delivery. '/' is ASCII and never a byte of a multi-byte
/// character, so both sides of it are whole characters.
#[inline]
fn split_level(rest: &str) -> (&str, Option<&str>) {
    match rest.bytes().position(|b| b == b'/') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::topic::is_valid_name;
    use proptest::prelude::*;

    /// The filters of `router` that match `topic`, in the order [`Router::for_each_match`] yields
    /// them, with their subscribers and values.
    fn walk<'a>(router: &'a Router<u8, u32>, topic: &str) -> Vec<(u8, &'a str, u32)> {
        let mut found = Vec::new();
        router.for_each_match(topic, |subscriber, filter, &value| {
            found.push((subscriber, filter, value));
        });
        found
    }

    /// The filters among `filters`, each subscribed to by one subscriber, that match `topic`,
    /// sorted as strings.
    fn matching(filters: &[&str], topic: &str) -> Vec<String> {
        let mut router = Router::new();
        for filter in filters {
            router.insert(filter, 0u8, 0u32);
        }
        let mut found: Vec<String> = walk(&router, topic)
            .into_iter()
            .map(|(_, filter, _)| filter.to_owned())
            .collect();
        found.sort();
        found
    }

    /// Asserts that exactly the filters `expected` among `filters` match `topic`.
    #[track_caller]
    fn check(filters: &[&str], topic: &str, expected: &[&str]) {
        let mut expected = expected.to_vec();
        expected.sort_unstable();
        assert_eq!(matching(filters, topic), expected, "topic {topic:?}");
    }

    /// The reference matcher: one filter against one topic, with no trie.
    use crate::codec::topic::matches as filter_matches;

    /// The sort key of the documented order of filters: level by level.
    fn level_key(filter: &str) -> Vec<&str> {
        filter.split('/').collect()
    }

    #[test]
    fn exact_filters_match_only_their_topic() {
        let filters = ["a/b", "a", "a/b/c", "b/a"];
        check(&filters, "a/b", &["a/b"]);
        check(&filters, "a", &["a"]);
        check(&filters, "a/c", &[]);
    }

    /// Empty levels are levels: "a//b" has three, "/a" and "a/" two.
    #[test]
    fn empty_levels_are_levels() {
        let filters = ["a//b", "a/+/b", "/a", "+/a", "a/", "a/+", "/", "+/+", "+"];
        check(&filters, "a//b", &["a//b", "a/+/b"]);
        check(&filters, "/a", &["+/a", "+/+", "/a"]);
        check(&filters, "a/", &["+/+", "a/", "a/+"]);
        check(&filters, "/", &["+/+", "/"]);
        check(&filters, "a", &["+"]);
    }

    /// [MQTT-4.7.1-3] (3.1.1), [MQTT-4.7.1-2] (5.0): '+' matches exactly one level.
    #[test]
    fn single_level_wildcard_matches_one_level() {
        let filters = ["sport/tennis/+", "sport/+", "+/+", "+", "/+", "+/tennis/#"];
        check(
            &filters,
            "sport/tennis/player1",
            &["+/tennis/#", "sport/tennis/+"],
        );
        check(&filters, "sport/tennis", &["+/+", "+/tennis/#", "sport/+"]);
        check(&filters, "sport/", &["+/+", "sport/+"]);
        check(&filters, "sport", &["+"]);
        check(&filters, "/finance", &["+/+", "/+"]);
        check(&["sport/+"], "sport/tennis/player1", &[]);
    }

    /// [MQTT-4.7.1-2] (3.1.1), [MQTT-4.7.1-1] (5.0): '#' matches its parent level and any number
    /// of child levels.
    #[test]
    fn multi_level_wildcard_matches_parent_and_children() {
        let filters = ["sport/tennis/player1/#", "sport/#", "#", "sport/tennis/#"];
        check(
            &filters,
            "sport/tennis/player1",
            &["#", "sport/#", "sport/tennis/#", "sport/tennis/player1/#"],
        );
        check(
            &filters,
            "sport/tennis/player1/ranking/wimbledon",
            &["#", "sport/#", "sport/tennis/#", "sport/tennis/player1/#"],
        );
        check(&filters, "sport", &["#", "sport/#"]);
        check(&filters, "sport/", &["#", "sport/#"]);
        check(&filters, "sports", &["#"]);
        check(&["/#"], "/", &["/#"]);
        check(&["/#"], "a", &[]);
        check(&["+/#"], "a", &["+/#"]);
        check(&["+/#"], "a/b/c", &["+/#"]);
        check(&["a/+/#"], "a", &[]);
    }

    /// [MQTT-4.7.2-1]: a filter that starts with a wildcard does not match a '$' topic; one that
    /// spells the '$' level out does.
    #[test]
    fn leading_wildcards_skip_dollar_topics() {
        let filters = [
            "#",
            "+/monitor/Clients",
            "+",
            "+/#",
            "$SYS/#",
            "$SYS/monitor/+",
            "$SYS",
        ];
        check(
            &filters,
            "$SYS/monitor/Clients",
            &["$SYS/#", "$SYS/monitor/+"],
        );
        check(&filters, "$SYS", &["$SYS", "$SYS/#"]);
        check(&filters, "$", &[]);
        // Only the first level counts: a '$' deeper down is an ordinary character.
        check(&filters, "a/$SYS", &["#", "+/#"]);
        check(&["a/+", "a/#"], "a/$x", &["a/#", "a/+"]);
        check(&filters, "SYS", &["#", "+", "+/#"]);
    }

    /// [MQTT-4.7.3-4] (5.0): no normalisation, no case folding, no substitution.
    #[test]
    fn matching_is_exact_and_case_sensitive() {
        let filters = [
            "ACCOUNTS",
            "Accounts",
            "accounts",
            "a b/c",
            "caf\u{e9}",
            "cafe\u{301}",
        ];
        check(&filters, "Accounts", &["Accounts"]);
        check(&filters, "ACCOUNTS", &["ACCOUNTS"]);
        check(&filters, "a b/c", &["a b/c"]);
        check(&filters, "ab/c", &[]);
        // The same text in two Unicode normal forms: two different names.
        check(&filters, "caf\u{e9}", &["caf\u{e9}"]);
        check(&filters, "cafe\u{301}", &["cafe\u{301}"]);
        check(&["accounts/"], "accounts", &[]);
    }

    #[test]
    fn insert_replaces_and_returns_the_old_value() {
        let mut router = Router::new();
        assert_eq!(router.insert("a/+", 1u8, 10u32), None);
        assert_eq!(router.insert("a/+", 2, 20), None);
        assert_eq!(router.insert("a/+", 1, 11), Some(10));
        assert_eq!(router.len(), 2);
        assert_eq!(router.get("a/+", 1), Some(&11));
        assert_eq!(router.get("a/+", 2), Some(&20));
        assert_eq!(router.get("a/+", 3), None);
        assert_eq!(router.get("a/b", 1), None);
        assert_eq!(router.get("a/#", 1), None);
        assert_eq!(walk(&router, "a/x"), [(1, "a/+", 11), (2, "a/+", 20)]);
    }

    #[test]
    fn remove_returns_the_value_once() {
        let mut router = Router::new();
        router.insert("a/#", 1u8, 10u32);
        router.insert("a", 1, 20);
        assert_eq!(router.remove("a/#", 2), None);
        assert_eq!(router.remove("a/+", 1), None);
        assert_eq!(router.remove("a/b", 1), None);
        assert_eq!(router.remove("a/#", 1), Some(10));
        assert_eq!(router.remove("a/#", 1), None);
        assert_eq!(router.len(), 1);
        assert_eq!(walk(&router, "a"), [(1, "a", 20)]);
    }

    /// Removing every subscription frees every node but the root, whatever the order.
    #[test]
    fn remove_prunes_empty_nodes() {
        let filters = [
            "a/b/c", "a/b", "a/+/c/#", "a/#", "#", "+", "+/+/+", "/", "a//", "$SYS/x",
        ];
        let mut router = Router::new();
        for (i, filter) in filters.iter().enumerate() {
            router.insert(filter, 1u8, i);
            router.insert(filter, 2u8, i);
        }
        let full = router.node_count();
        for order in [filters.to_vec(), filters.iter().rev().copied().collect()] {
            for filter in &order {
                assert!(router.remove(filter, 2).is_some());
                assert_eq!(router.node_count(), full, "{filter} still has subscriber 1");
            }
            for filter in &order {
                assert!(router.remove(filter, 1).is_some());
            }
            assert!(router.is_empty());
            assert_eq!(router.node_count(), 1);
            for (i, filter) in filters.iter().enumerate() {
                router.insert(filter, 1u8, i);
                router.insert(filter, 2u8, i);
            }
        }
        // Removing a leaf keeps its ancestors that still serve other filters.
        router.remove("a/b/c", 1);
        router.remove("a/b/c", 2);
        assert_eq!(router.node_count(), full - 1);
        assert_eq!(router.get("a/b", 1), Some(&1));
    }

    #[test]
    fn order_is_by_filter_levels_then_subscriber() {
        let mut router = Router::new();
        for filter in ["a/b", "a/+", "a/#", "#", "+/b", "a/!", "a/~"] {
            for subscriber in [3u8, 1, 2] {
                router.insert(filter, subscriber, 0u32);
            }
        }
        let filters = |topic| {
            let found = walk(&router, topic);
            for group in found.chunks(3) {
                let subscribers: Vec<u8> = group.iter().map(|m| m.0).collect();
                assert_eq!(subscribers, [1, 2, 3]);
            }
            found.chunks(3).map(|g| g[0].1).collect::<Vec<_>>()
        };
        assert_eq!(filters("a/b"), ["#", "+/b", "a/#", "a/+", "a/b"]);
        // '!' sorts before '#', '~' after '+'.
        assert_eq!(filters("a/!"), ["#", "a/!", "a/#", "a/+"]);
        assert_eq!(filters("a/~"), ["#", "a/#", "a/+", "a/~"]);
    }

    #[test]
    fn matches_groups_by_subscriber() {
        let mut router = Router::new();
        router.insert("a/b", 2u8, 1u32);
        router.insert("a/+", 1, 2);
        router.insert("#", 2, 3);
        router.insert("a/#", 1, 4);
        let mut out = Vec::new();
        router.matches("a/b", &mut out);
        let found: Vec<(u8, &str, u32)> = out
            .iter()
            .map(|m| (m.subscriber, m.filter, *m.value))
            .collect();
        assert_eq!(
            found,
            [(1, "a/#", 4), (1, "a/+", 2), (2, "#", 3), (2, "a/b", 1)]
        );
        // A second call appends without reordering what is there.
        router.matches("x", &mut out);
        assert_eq!(out.len(), 5);
        assert_eq!(out[4].filter, "#");
    }

    /// Topics and filters may hold some 32,000 levels; nothing may recurse once per level.
    #[test]
    fn deep_filters_do_not_overflow_the_stack() {
        let depth = 32_000;
        let topic = vec!["a"; depth].join("/");
        let wild = vec!["+"; depth].join("/");
        let mut router = Router::new();
        router.insert(&topic, 1u8, 1u32);
        router.insert(&wild, 1, 2);
        router.insert(&format!("{wild}/#"), 1, 3);
        assert_eq!(router.node_count(), 2 * depth + 1);
        assert_eq!(walk(&router, &topic).len(), 3);
        assert_eq!(router.remove(&topic, 1), Some(1));
        assert_eq!(router.node_count(), depth + 1);
        // The rest goes with the router, through its drop.
    }

    /// A filter made of the given levels, optionally ending with '#'.
    fn filter_strategy() -> impl Strategy<Value = String> {
        let level = prop::sample::select(vec!["a", "b", "A", "", "$", "$a", "+"]);
        (prop::collection::vec(level, 0..4), any::<bool>())
            .prop_map(|(mut levels, multi)| {
                if multi || levels.is_empty() {
                    levels.push("#");
                }
                levels.join("/")
            })
            // A single empty level is the empty filter, which is invalid.
            .prop_filter("valid filter", |filter| is_valid_filter(filter))
    }

    fn topic_strategy() -> impl Strategy<Value = String> {
        let level = prop::sample::select(vec!["a", "b", "A", "", "$", "$a"]);
        prop::collection::vec(level, 1..5)
            .prop_map(|levels| levels.join("/"))
            .prop_filter("valid name", |name| is_valid_name(name))
    }

    /// An operation on the router: insert (with a value) or remove.
    fn ops_strategy() -> impl Strategy<Value = Vec<(String, u8, Option<u32>)>> {
        let op = (filter_strategy(), 0..3u8, prop::option::of(any::<u32>()));
        prop::collection::vec(op, 0..40)
    }

    proptest! {
        /// The byte search finds the same levels as `str::split('/')`, multi-byte characters,
        /// empty levels and leading or trailing separators included.
        #[test]
        fn levels_are_those_of_split(path in "[a/\u{e9}\u{2f00}\u{1f600}]{0,12}") {
            prop_assert_eq!(
                levels(Some(&path)).collect::<Vec<_>>(),
                path.split('/').collect::<Vec<_>>()
            );
            prop_assert_eq!(levels(None).count(), 0);
        }

        /// The router agrees with a plain map of subscriptions and the reference matcher, in the
        /// documented order, after any sequence of inserts and removes; and emptied, it is back to
        /// its root alone.
        #[test]
        fn router_agrees_with_reference(
            ops in ops_strategy(),
            topics in prop::collection::vec(topic_strategy(), 1..8),
        ) {
            let mut router = Router::new();
            let mut model: BTreeMap<(String, u8), u32> = BTreeMap::new();
            for (filter, subscriber, value) in &ops {
                prop_assert!(is_valid_filter(filter));
                let key = (filter.clone(), *subscriber);
                match value {
                    Some(value) => prop_assert_eq!(
                        router.insert(filter, *subscriber, *value),
                        model.insert(key, *value)
                    ),
                    None => prop_assert_eq!(router.remove(filter, *subscriber), model.remove(&key)),
                }
                prop_assert_eq!(router.len(), model.len());
            }
            for ((filter, subscriber), value) in &model {
                prop_assert_eq!(router.get(filter, *subscriber), Some(value));
            }
            for topic in &topics {
                let mut expected: Vec<(u8, &str, u32)> = model
                    .iter()
                    .filter(|((filter, _), _)| filter_matches(filter, topic))
                    .map(|((filter, subscriber), value)| (*subscriber, filter.as_str(), *value))
                    .collect();
                expected.sort_by(|a, b| (level_key(a.1), a.0).cmp(&(level_key(b.1), b.0)));
                prop_assert_eq!(walk(&router, topic), expected.clone());

                expected.sort_by(|a, b| (a.0, level_key(a.1)).cmp(&(b.0, level_key(b.1))));
                let mut out = Vec::new();
                router.matches(topic, &mut out);
                let found: Vec<(u8, &str, u32)> =
                    out.iter().map(|m| (m.subscriber, m.filter, *m.value)).collect();
                prop_assert_eq!(found, expected);
            }
            for (filter, subscriber) in model.keys() {
                prop_assert!(router.remove(filter, *subscriber).is_some());
            }
            prop_assert!(router.is_empty());
            prop_assert_eq!(router.node_count(), 1);
        }
    }
}
