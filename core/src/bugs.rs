//! Bugs the simulator can plant in the broker, to prove that its checkers catch them. Compiled
//! only with the `sim-bugs` feature, which only the simulator enables: the daemon never has
//! these branches. Each bug is one small `cfg`'d branch at the site it breaks, taken only when
//! `Config::bug` names it. Bugs in the storage protocol around the broker are planted where
//! the simulator plays the daemon's storage: `RemoveBeforeSnapshot` through
//! `persist::files::planted_snapshot_steps`, which only the simulator calls, and
//! `SkipRecoverySync` in the simulator's execution of the recovery plan.

use std::fmt;

/// A planted bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bug {
    /// Output waiting for a record is released at once: acknowledgements (PUBACK, PUBREC,
    /// SUBACK, CONNACK) and deliveries go out before what they promise is durable.
    AckBeforeDurable,
    /// Recovery forgets the inbound QoS 2 packet ids awaiting PUBREL, so a publisher's resend
    /// after a restart is taken as a new message.
    ForgetInboundQos2,
    /// Recovery restores outbound QoS 2 messages that had PUBREC as if they had not: the
    /// PUBLISH is resent instead of PUBREL.
    PublishInsteadOfPubrel,
    /// A resumed session's queue of messages not yet sent is dropped, uncounted.
    DropQueueOnReconnect,
    /// A new subscription receives the first retained message it matches twice.
    RetainedTwice,
    /// A resumed session does not resend its unacknowledged QoS 1 messages.
    SkipQos1Resend,
    /// A detached session expires after half its Session Expiry Interval.
    ExpireSessionEarly,
    /// Compaction removes the segments a snapshot replaces before the snapshot is renamed and
    /// its name durable: a crash in between leaves neither.
    RemoveBeforeSnapshot,
    /// Recovery does not fsync the segment the log continues in, so records a process crash
    /// left in the page cache stay volatile while the next segment is started after them.
    SkipRecoverySync,
    /// A shared subscription member's queued messages are dropped, uncounted, when its
    /// connection goes, instead of being handed to another member.
    SharedLoseOnHandOver,
    /// QoS 2 messages in flight to a shared subscription member whose connection goes are
    /// copied to another member too, as QoS 1 ones are.
    SharedCopyQos2,
}

impl Bug {
    /// Every bug, in a fixed order.
    pub const ALL: [Bug; 11] = [
        Bug::AckBeforeDurable,
        Bug::ForgetInboundQos2,
        Bug::PublishInsteadOfPubrel,
        Bug::DropQueueOnReconnect,
        Bug::RetainedTwice,
        Bug::SkipQos1Resend,
        Bug::ExpireSessionEarly,
        Bug::RemoveBeforeSnapshot,
        Bug::SkipRecoverySync,
        Bug::SharedLoseOnHandOver,
        Bug::SharedCopyQos2,
    ];

    /// The bug's name on the simulator's command line.
    pub const fn name(self) -> &'static str {
        match self {
            Bug::AckBeforeDurable => "ack-before-durable",
            Bug::ForgetInboundQos2 => "forget-inbound-qos2",
            Bug::PublishInsteadOfPubrel => "publish-instead-of-pubrel",
            Bug::DropQueueOnReconnect => "drop-queue-on-reconnect",
            Bug::RetainedTwice => "retained-twice",
            Bug::SkipQos1Resend => "skip-qos1-resend",
            Bug::ExpireSessionEarly => "expire-session-early",
            Bug::RemoveBeforeSnapshot => "remove-before-snapshot",
            Bug::SkipRecoverySync => "skip-recovery-sync",
            Bug::SharedLoseOnHandOver => "shared-lose-on-hand-over",
            Bug::SharedCopyQos2 => "shared-copy-qos2",
        }
    }

    /// What the bug does, in one line.
    pub const fn description(self) -> &'static str {
        match self {
            Bug::AckBeforeDurable => "acknowledge before the record is durable",
            Bug::ForgetInboundQos2 => "forget inbound QoS 2 packet ids on restart",
            Bug::PublishInsteadOfPubrel => "resend PUBLISH instead of PUBREL after a restart",
            Bug::DropQueueOnReconnect => "drop the offline queue when a session resumes",
            Bug::RetainedTwice => "deliver a retained message twice on subscribe",
            Bug::SkipQos1Resend => "skip resending unacknowledged QoS 1 messages on resume",
            Bug::ExpireSessionEarly => "expire a detached session after half its interval",
            Bug::RemoveBeforeSnapshot => {
                "remove compacted segments before the snapshot's rename is durable"
            }
            Bug::SkipRecoverySync => "leave the recovered newest segment unsynced",
            Bug::SharedLoseOnHandOver => {
                "drop a lost shared subscription member's queue instead of handing it over"
            }
            Bug::SharedCopyQos2 => "hand QoS 2 in flight to another shared subscription member",
        }
    }

    /// The bug with this name.
    pub fn from_name(name: &str) -> Option<Bug> {
        Bug::ALL.into_iter().find(|b| b.name() == name)
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// True when `config` plants `bug`.
pub(crate) fn planted(config: &crate::broker::Config, bug: Bug) -> bool {
    config.bug == Some(bug)
}
