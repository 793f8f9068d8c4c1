//! Deterministic simulation of midge: runs midge-core brokers and model MQTT clients in one
//! process under a seeded scheduler that injects network faults (delay, reordering, loss,
//! partitions, disconnects), crashes and restarts, then checks that every QoS 2 message is
//! delivered exactly once, that nothing acknowledged is lost, and that a restarted broker
//! recovers its sessions. A failing seed replays the same run exactly.
