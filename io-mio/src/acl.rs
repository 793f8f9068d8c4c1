//! Mosquitto-compatible ACL files (acl_file).
