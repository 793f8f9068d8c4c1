//! The MQTT 3.1.1 and 5.0 conformance and interoperability suite for midge: every broker-side
//! normative statement of both specifications is traced to a test that exercises it over the
//! network, so the suite runs against any broker, midge or another, given its address.
