//! Mosquitto-compatible configuration files (mosquitto.conf).
