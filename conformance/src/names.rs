//! Names that keep tests apart on one shared broker: client ids and topics built from a run id
//! (process id and start time, so leftovers of an earlier run against a persistent broker never
//! meet this one) and a per-process counter (so two tests never share one).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Client ids stay within what every server must accept: 1 to 23 characters of `0-9a-zA-Z`
/// [MQTT-3.1.3-5] (3.1.1) [MQTT-3.1.3-5] (5.0).
pub const MAX_CLIENT_ID: usize = 23;

fn run_id() -> &'static str {
    static RUN: OnceLock<String> = OnceLock::new();
    RUN.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mixed = nanos ^ (u64::from(std::process::id()) << 40);
        let mut s = base36(mixed);
        // The low digits change fastest; six of them tell runs apart.
        s.drain(..s.len().saturating_sub(6));
        s
    })
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII digits")
}

/// The names of one test: make one per test with [`Names::new`].
#[derive(Debug, Clone)]
pub struct Names {
    /// `<run><counter>`, unique in this run.
    key: String,
}

impl Names {
    pub fn new() -> Names {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Names {
            key: format!("{}x{}", run_id(), base36(n)),
        }
    }

    /// A client id for this test; `tag` (letters and digits) tells its clients apart.
    pub fn client_id(&self, tag: &str) -> String {
        let tag: String = tag.chars().filter(char::is_ascii_alphanumeric).collect();
        let mut id = format!("c{}y{tag}", self.key);
        id.truncate(MAX_CLIENT_ID);
        id
    }

    /// A topic for this test: `conformance/<key>/<suffix>`.
    pub fn topic(&self, suffix: &str) -> String {
        format!("conformance/{}/{suffix}", self.key)
    }

    /// The topic prefix of this test, for filters with wildcards below it.
    pub fn root(&self) -> String {
        format!("conformance/{}", self.key)
    }
}

impl Default for Names {
    fn default() -> Names {
        Names::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_short_alphanumeric_and_distinct() {
        let a = Names::new();
        let b = Names::new();
        let (x, y) = (a.client_id("sub"), b.client_id("sub"));
        assert_ne!(x, y);
        assert_ne!(a.client_id("pub"), x);
        for id in [x, y] {
            assert!(id.len() <= MAX_CLIENT_ID && id.chars().all(|c| c.is_ascii_alphanumeric()));
        }
        assert_ne!(a.topic("t"), b.topic("t"));
    }
}
