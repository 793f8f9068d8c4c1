//! Retained messages: the last retained message of each topic name, found again by topic filter
//! when a client subscribes (3.1.1 section 3.3.1.3, 5.0 section 3.3.1.3).
//!
//! [`RetainedStore`] is a trie with one edge per topic level, children kept in a [`BTreeMap`].
//! Matching a filter follows its literal levels down the trie, fans out over every child at a '+'
//! level and takes the whole subtree at a '#', so the cost grows with the number of topics the
//! filter reaches, not with the size of the store. The rules are those of the subscription index
//! ([`super::router`]): empty levels are levels; '+' matches exactly one level; '#' matches its
//! parent level and any number of child levels; a filter whose first level is a wildcard does not
//! match a topic name that starts with '$' [MQTT-4.7.2-1]; and nothing is normalised
//! [MQTT-4.7.3-4] (5.0).
//!
//! Each message is stored with its full topic name, as a `Box<str>` of the store's own, so that a
//! match can report the topic without rebuilding it from the levels; `M` need not hold it.
//!
//! Nothing in here recurses along the levels of a topic: names may hold some 32,000 levels, so
//! matching, pruning and dropping use explicit stacks instead of the call stack.

use crate::codec::topic::{is_valid_filter, is_valid_name};
use std::collections::{BTreeMap, btree_map};
use std::fmt;

/// The '+' level of a filter.
const SINGLE: &str = "+";
/// The '#' level of a filter.
const MULTI: &str = "#";

/// Retained messages by topic name, at most one per topic.
pub struct RetainedStore<M> {
    root: Node<M>,
    /// The number of messages stored.
    len: usize,
}

/// A trie node: the topic names that share the levels leading to it.
struct Node<M> {
    /// The message retained for the topic name that ends at this node.
    entry: Option<Box<Entry<M>>>,
    children: BTreeMap<Box<str>, Node<M>>,
}

/// A retained message and its topic name.
struct Entry<M> {
    topic: Box<str>,
    message: M,
}

/// The children of a node still to be visited by the matching walk, and the filter levels left
/// to match below each of them.
struct Fanout<'n, 'f, M> {
    children: btree_map::Iter<'n, Box<str>, Node<M>>,
    /// The filter levels below the children; `None` when the children are the last level.
    rest: Option<&'f str>,
    /// True for the children of the root reached through a wildcard: '$' topics are skipped.
    skip_dollar: bool,
}

impl<M> RetainedStore<M> {
    /// An empty store.
    pub fn new() -> Self {
        RetainedStore {
            root: Node::new(),
            len: 0,
        }
    }

    /// The number of retained messages.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no message is retained.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Retains `message` for the topic name `topic`, and returns the message it replaces.
    ///
    /// `topic` must be a valid topic name; the codec validates names before they get here.
    pub fn insert(&mut self, topic: &str, message: M) -> Option<M> {
        debug_assert!(is_valid_name(topic), "invalid topic name {topic:?}");
        let mut node = &mut self.root;
        for level in topic.split('/') {
            node = node.child_or_insert(level);
        }
        match &mut node.entry {
            Some(entry) => Some(std::mem::replace(&mut entry.message, message)),
            None => {
                node.entry = Some(Box::new(Entry {
                    topic: topic.into(),
                    message,
                }));
                self.len += 1;
                None
            }
        }
    }

    /// Removes the message retained for `topic` and returns it. Nodes left without messages below
    /// them are freed, so the store's memory follows the retained messages.
    pub fn remove(&mut self, topic: &str) -> Option<M> {
        let node = self.root.descend_mut(topic)?;
        let entry = node.entry.take()?;
        self.len -= 1;
        if node.children.is_empty() {
            self.prune(topic);
        }
        Some(entry.message)
    }

    /// The message retained for `topic`, if there is one.
    pub fn get(&self, topic: &str) -> Option<&M> {
        let node = self.root.descend(topic)?;
        node.entry.as_ref().map(|entry| &entry.message)
    }

    /// Calls `f(topic, message)` for every retained message whose topic name matches the topic
    /// filter `filter`.
    ///
    /// Order: by topic name, names compared level by level (each level bytewise, a name before the
    /// longer names it is a prefix of, so "a" < "a/b" < "a!"). The order depends only on the
    /// messages stored, never on the order in which they were stored.
    ///
    /// `filter` must be a valid topic filter; the codec validates filters before they get here.
    pub fn for_each_match<'a>(&'a self, filter: &str, mut f: impl FnMut(&'a str, &'a M)) {
        debug_assert!(is_valid_filter(filter), "invalid topic filter {filter:?}");
        let mut stack = Vec::new();
        self.root.visit(Some(filter), true, &mut stack, &mut f);
        while let Some(top) = stack.last_mut() {
            let Some((level, child)) = top.children.next() else {
                stack.pop();
                continue;
            };
            if top.skip_dollar && level.starts_with('$') {
                continue;
            }
            let rest = top.rest;
            child.visit(rest, false, &mut stack, &mut f);
        }
    }

    /// Appends to `out` every retained message whose topic name matches the topic filter
    /// `filter`, with its topic, in the order of [`RetainedStore::for_each_match`].
    pub fn matching<'a>(&'a self, filter: &str, out: &mut Vec<(&'a str, &'a M)>) {
        self.for_each_match(filter, |topic, message| out.push((topic, message)));
    }

    /// Frees the chain of nodes that the removal of the message of `topic` left without purpose:
    /// from the deepest ancestor that still has other business (a message or another child; the
    /// root at worst) down to the end of the path.
    fn prune(&mut self, topic: &str) {
        let mut keep = 0;
        let mut node = &self.root;
        for (depth, level) in topic.split('/').enumerate() {
            if node.entry.is_some() || node.children.len() > 1 {
                keep = depth;
            }
            node = node
                .children
                .get(level)
                .expect("the path of a message just removed");
        }
        let mut path = topic.split('/');
        let mut parent = &mut self.root;
        for level in path.by_ref().take(keep) {
            parent = parent
                .children
                .get_mut(level)
                .expect("the path of a message just removed");
        }
        let level = path.next().expect("a topic name has at least one level");
        parent.children.remove(level);
    }

    /// The number of trie nodes, root included; a measure of memory for the tests.
    #[cfg(test)]
    fn node_count(&self) -> usize {
        let mut count = 0;
        let mut stack = vec![&self.root];
        while let Some(node) = stack.pop() {
            count += 1;
            stack.extend(node.children.values());
        }
        count
    }
}

impl<M> Default for RetainedStore<M> {
    fn default() -> Self {
        RetainedStore::new()
    }
}

// Written out to keep a possibly huge trie out of debug output.
impl<M> fmt::Debug for RetainedStore<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetainedStore")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<M> Node<M> {
    fn new() -> Self {
        Node {
            entry: None,
            children: BTreeMap::new(),
        }
    }

    /// The child reached through `level`, created if needed.
    fn child_or_insert(&mut self, level: &str) -> &mut Self {
        // Look up before inserting: the common case is an existing level, and it needs no
        // allocation of a key.
        if !self.children.contains_key(level) {
            self.children.insert(level.into(), Node::new());
        }
        self.children.get_mut(level).expect("inserted above")
    }

    /// The node of the topic name `topic`, if it exists.
    fn descend(&self, topic: &str) -> Option<&Self> {
        topic
            .split('/')
            .try_fold(self, |node, level| node.children.get(level))
    }

    /// The node of the topic name `topic`, if it exists.
    fn descend_mut(&mut self, topic: &str) -> Option<&mut Self> {
        topic
            .split('/')
            .try_fold(self, |node, level| node.children.get_mut(level))
    }

    /// Reports the message of this node to `f` when there is one.
    fn report<'a>(&'a self, f: &mut impl FnMut(&'a str, &'a M)) {
        if let Some(entry) = &self.entry {
            f(&entry.topic, &entry.message);
        }
    }

    /// Matches `rest`, the filter levels still to match below this node (`None` when the filter
    /// ends here): follows literal levels down directly, reports what matches, and leaves a
    /// wildcard's children on `stack` for the caller to visit in order. `is_root` is true for the
    /// root, whose '$' children no wildcard matches [MQTT-4.7.2-1].
    fn visit<'n, 'f>(
        &'n self,
        mut rest: Option<&'f str>,
        mut is_root: bool,
        stack: &mut Vec<Fanout<'n, 'f, M>>,
        f: &mut impl FnMut(&'n str, &'n M),
    ) {
        let mut node = self;
        loop {
            let Some(levels) = rest else {
                node.report(f);
                return;
            };
            let (level, after) = match levels.split_once('/') {
                Some((level, after)) => (level, Some(after)),
                None => (levels, None),
            };
            match level {
                MULTI => {
                    // '#' matches the parent level too, then every level below: each child is
                    // visited with "#" again, which takes in its own subtree.
                    node.report(f);
                    stack.push(Fanout {
                        children: node.children.iter(),
                        rest: Some(MULTI),
                        skip_dollar: is_root,
                    });
                    return;
                }
                SINGLE => {
                    stack.push(Fanout {
                        children: node.children.iter(),
                        rest: after,
                        skip_dollar: is_root,
                    });
                    return;
                }
                _ => match node.children.get(level) {
                    Some(child) => {
                        node = child;
                        rest = after;
                        is_root = false;
                    }
                    None => return,
                },
            }
        }
    }
}

// The derived drop would recurse once per level and can overflow the stack on a deep topic; this
// one takes the nodes apart from the bottom with a stack as deep as the trie, on the heap.
impl<M> Drop for Node<M> {
    fn drop(&mut self) {
        let mut pending: Vec<Node<M>> = Vec::new();
        loop {
            let top = match pending.last_mut() {
                Some(node) => node,
                None => &mut *self,
            };
            match top.children.pop_first() {
                Some((_, child)) => pending.push(child),
                // `top` has no child left; if it is in `pending`, it drops without recursing.
                None if pending.pop().is_some() => {}
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The topics of the messages of `store` that match `filter`, in the order of
    /// [`RetainedStore::for_each_match`].
    fn walk<'a>(store: &'a RetainedStore<u32>, filter: &str) -> Vec<(&'a str, u32)> {
        let mut found = Vec::new();
        store.for_each_match(filter, |topic, &message| found.push((topic, message)));
        found
    }

    /// Asserts that exactly the topics `expected` among `topics`, each with a retained message,
    /// match `filter`, sorted as strings.
    #[track_caller]
    fn check(topics: &[&str], filter: &str, expected: &[&str]) {
        let mut store = RetainedStore::new();
        for topic in topics {
            store.insert(topic, 0u32);
        }
        let mut found: Vec<&str> = walk(&store, filter).into_iter().map(|m| m.0).collect();
        found.sort_unstable();
        let mut expected = expected.to_vec();
        expected.sort_unstable();
        assert_eq!(found, expected, "filter {filter:?}");
    }

    /// The reference matcher: one filter against one topic, with no trie.
    use crate::codec::topic::matches as filter_matches;

    const TOPICS: [&str; 12] = [
        "sport",
        "sport/",
        "sport/tennis",
        "sport/tennis/player1",
        "sport/tennis/player1/ranking",
        "sports",
        "/",
        "/finance",
        "a//b",
        "$SYS",
        "$SYS/broker/uptime",
        "a/$x",
    ];

    #[test]
    fn exact_filters_match_only_their_topic() {
        check(&TOPICS, "sport/tennis", &["sport/tennis"]);
        check(&TOPICS, "sport/tennis/player2", &[]);
        check(&TOPICS, "a//b", &["a//b"]);
        check(&TOPICS, "a/b", &[]);
    }

    /// [MQTT-4.7.1-3] (3.1.1), [MQTT-4.7.1-2] (5.0): '+' matches exactly one level, empty ones
    /// included.
    #[test]
    fn single_level_wildcard_matches_one_level() {
        check(&TOPICS, "sport/+", &["sport/", "sport/tennis"]);
        check(&TOPICS, "sport/+/+", &["sport/tennis/player1"]);
        check(&TOPICS, "+", &["sport", "sports"]);
        check(
            &TOPICS,
            "+/+",
            &["sport/", "sport/tennis", "/", "/finance", "a/$x"],
        );
        check(&TOPICS, "/+", &["/", "/finance"]);
        check(&TOPICS, "a/+/b", &["a//b"]);
        check(&TOPICS, "+/tennis/+", &["sport/tennis/player1"]);
    }

    /// [MQTT-4.7.1-2] (3.1.1), [MQTT-4.7.1-1] (5.0): '#' matches its parent level and any number
    /// of child levels.
    #[test]
    fn multi_level_wildcard_matches_parent_and_children() {
        let sport = [
            "sport",
            "sport/",
            "sport/tennis",
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
        ];
        check(&TOPICS, "sport/#", &sport);
        check(&TOPICS, "sport/tennis/player1/#", &sport[3..]);
        check(&TOPICS, "sport/tennis/player1/ranking/#", &sport[4..]);
        check(&TOPICS, "sport/tennis/player2/#", &[]);
        check(&TOPICS, "/#", &["/", "/finance"]);
        check(&TOPICS, "+/tennis/#", &sport[2..]);
        let two_levels_or_more: Vec<&str> = TOPICS
            .into_iter()
            .filter(|t| !t.starts_with('$') && t.contains('/'))
            .collect();
        check(&TOPICS, "+/+/#", &two_levels_or_more);
    }

    /// [MQTT-4.7.2-1]: a filter that starts with a wildcard does not match a '$' topic; one that
    /// spells the '$' level out does.
    #[test]
    fn leading_wildcards_skip_dollar_topics() {
        let all: Vec<&str> = TOPICS.into_iter().filter(|t| !t.starts_with('$')).collect();
        check(&TOPICS, "#", &all);
        check(&TOPICS, "+", &["sport", "sports"]);
        check(&TOPICS, "+/broker/uptime", &[]);
        check(&TOPICS, "$SYS/#", &["$SYS", "$SYS/broker/uptime"]);
        check(&TOPICS, "$SYS/+/uptime", &["$SYS/broker/uptime"]);
        check(&TOPICS, "$SYS", &["$SYS"]);
        // Only the first level counts: a '$' deeper down is an ordinary character.
        check(&TOPICS, "a/+", &["a/$x"]);
        check(&TOPICS, "a/#", &["a//b", "a/$x"]);
    }

    /// [MQTT-4.7.3-4] (5.0): no normalisation, no case folding, no substitution.
    #[test]
    fn matching_is_exact_and_case_sensitive() {
        let topics = [
            "Accounts",
            "ACCOUNTS",
            "accounts/",
            "caf\u{e9}",
            "cafe\u{301}",
        ];
        check(&topics, "Accounts", &["Accounts"]);
        check(&topics, "accounts", &[]);
        check(&topics, "accounts/#", &["accounts/"]);
        check(&topics, "caf\u{e9}", &["caf\u{e9}"]);
        check(&topics, "cafe\u{301}", &["cafe\u{301}"]);
    }

    #[test]
    fn insert_replaces_and_returns_the_old_message() {
        let mut store = RetainedStore::new();
        assert_eq!(store.insert("a/b", 1u32), None);
        assert_eq!(store.insert("a", 2), None);
        assert_eq!(store.insert("a/b", 3), Some(1));
        assert_eq!(store.len(), 2);
        assert_eq!(store.get("a/b"), Some(&3));
        assert_eq!(store.get("a"), Some(&2));
        assert_eq!(store.get("a/c"), None);
        assert_eq!(store.get("a/b/c"), None);
        assert_eq!(walk(&store, "a/#"), [("a", 2), ("a/b", 3)]);
    }

    #[test]
    fn remove_returns_the_message_once() {
        let mut store = RetainedStore::new();
        store.insert("a/b", 1u32);
        assert_eq!(store.remove("a"), None);
        assert_eq!(store.remove("a/b/c"), None);
        assert_eq!(store.remove("a/b"), Some(1));
        assert_eq!(store.remove("a/b"), None);
        assert!(store.is_empty());
    }

    /// Removing every message frees every node but the root, whatever the order.
    #[test]
    fn remove_prunes_empty_nodes() {
        let mut store = RetainedStore::new();
        for order in [TOPICS.to_vec(), TOPICS.iter().rev().copied().collect()] {
            for (i, topic) in TOPICS.iter().enumerate() {
                store.insert(topic, i as u32);
            }
            for topic in &order {
                assert!(store.remove(topic).is_some(), "{topic}");
            }
            assert!(store.is_empty());
            assert_eq!(store.node_count(), 1);
        }
        // Removing a leaf keeps its ancestors that still lead to other messages.
        store.insert("a/b/c", 1);
        store.insert("a/x", 2);
        assert_eq!(store.node_count(), 5);
        store.remove("a/b/c");
        assert_eq!(store.node_count(), 3);
        assert_eq!(walk(&store, "#"), [("a/x", 2)]);
    }

    #[test]
    fn order_is_by_topic_levels() {
        let mut store = RetainedStore::new();
        for (i, topic) in ["a!", "a/b/c", "b", "a/b", "a", "a/", "a/Bx"]
            .iter()
            .enumerate()
        {
            store.insert(topic, i as u32);
        }
        let topics: Vec<&str> = walk(&store, "#").into_iter().map(|m| m.0).collect();
        assert_eq!(topics, ["a", "a/", "a/Bx", "a/b", "a/b/c", "a!", "b"]);
        let mut out = Vec::new();
        store.matching("a/+", &mut out);
        assert_eq!(out, [("a/", &5), ("a/Bx", &6), ("a/b", &3)]);
    }

    /// Topic names may hold some 32,000 levels; nothing may recurse once per level.
    #[test]
    fn deep_topics_do_not_overflow_the_stack() {
        let depth = 32_000;
        let deep = vec!["a"; depth].join("/");
        let mut store = RetainedStore::new();
        store.insert(&deep, 1u32);
        store.insert(&format!("{}/b", vec!["a"; depth - 1].join("/")), 2);
        assert_eq!(walk(&store, "#").len(), 2);
        assert_eq!(walk(&store, &vec!["+"; depth].join("/")).len(), 2);
        assert_eq!(store.remove(&deep), Some(1));
        assert_eq!(store.node_count(), depth + 1);
        // The rest goes with the store, through its drop.
    }

    fn topic_strategy() -> impl Strategy<Value = String> {
        let level = prop::sample::select(vec!["a", "b", "A", "", "$", "$a"]);
        prop::collection::vec(level, 1..5)
            .prop_map(|levels| levels.join("/"))
            .prop_filter("valid name", |name| is_valid_name(name))
    }

    fn filter_strategy() -> impl Strategy<Value = String> {
        let level = prop::sample::select(vec!["a", "b", "A", "", "$", "$a", "+"]);
        (prop::collection::vec(level, 0..5), any::<bool>())
            .prop_map(|(mut levels, multi)| {
                if multi || levels.is_empty() {
                    levels.push("#");
                }
                levels.join("/")
            })
            // A single empty level is the empty filter, which is invalid.
            .prop_filter("valid filter", |filter| is_valid_filter(filter))
    }

    proptest! {
        /// The store agrees with a plain map of messages and the reference matcher, in the
        /// documented order, after any sequence of inserts and removes; and emptied, it is back to
        /// its root alone.
        #[test]
        fn store_agrees_with_reference(
            ops in prop::collection::vec((topic_strategy(), prop::option::of(any::<u32>())), 0..40),
            filters in prop::collection::vec(filter_strategy(), 1..8),
        ) {
            let mut store = RetainedStore::new();
            let mut model: BTreeMap<String, u32> = BTreeMap::new();
            for (topic, message) in &ops {
                match message {
                    Some(message) => prop_assert_eq!(
                        store.insert(topic, *message),
                        model.insert(topic.clone(), *message)
                    ),
                    None => prop_assert_eq!(store.remove(topic), model.remove(topic)),
                }
                prop_assert_eq!(store.len(), model.len());
            }
            for (topic, message) in &model {
                prop_assert_eq!(store.get(topic), Some(message));
            }
            for filter in &filters {
                let mut expected: Vec<(&str, u32)> = model
                    .iter()
                    .filter(|(topic, _)| filter_matches(filter, topic))
                    .map(|(topic, message)| (topic.as_str(), *message))
                    .collect();
                expected.sort_by(|a, b| a.0.split('/').cmp(b.0.split('/')));
                prop_assert_eq!(walk(&store, filter), expected);
            }
            for topic in model.keys() {
                prop_assert!(store.remove(topic).is_some());
            }
            prop_assert!(store.is_empty());
            prop_assert_eq!(store.node_count(), 1);
        }
    }
}
