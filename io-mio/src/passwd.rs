//! Mosquitto-compatible password files (mosquitto_passwd).
