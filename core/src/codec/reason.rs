//! Reason codes, one type for each packet that carries them, holding exactly the codes MQTT 5
//! defines for that packet (5.0, 2.4, Table 2-6). A broker therefore cannot send, say, "Session
//! taken over" in a PUBACK. Codes sent to 3.1.x clients are translated where the packet has a 3.1.x
//! form (CONNACK return codes, SUBACK failure) and dropped where it has none.

/// What every reason code type offers, so packets that share a layout share their code.
pub trait Reason: Copy + Eq + std::fmt::Debug {
    /// The code meaning success (0x00), which a packet may leave out on the wire.
    const SUCCESS: Self;
    /// The code's byte on the wire.
    fn code(self) -> u8;
    /// The reason for a byte, if the packet type defines it.
    fn from_code(code: u8) -> Option<Self>;
}

macro_rules! reason_codes {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $code:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $code,)+
        }

        impl $name {
            /// Every code of this packet type, in numeric order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The code's byte on the wire.
            pub const fn code(self) -> u8 {
                self as u8
            }

            /// The reason for a byte, if this packet type defines it.
            pub const fn from_code(code: u8) -> Option<$name> {
                match code {
                    $($code => Some($name::$variant),)+
                    _ => None,
                }
            }

            /// Codes of 0x80 and above report failure.
            pub const fn is_error(self) -> bool {
                self.code() >= 0x80
            }
        }

        impl Reason for $name {
            const SUCCESS: $name = match $name::from_code(0) {
                Some(r) => r,
                None => panic!("every reason code type defines 0x00"),
            };
            fn code(self) -> u8 {
                $name::code(self)
            }
            fn from_code(code: u8) -> Option<$name> {
                $name::from_code(code)
            }
        }
    };
}

reason_codes! {
    /// Reason codes of CONNACK (5.0, 3.2.2.2).
    ConnectReason {
        /// The connection is accepted.
        Success = 0x00,
        UnspecifiedError = 0x80,
        MalformedPacket = 0x81,
        ProtocolError = 0x82,
        ImplementationSpecificError = 0x83,
        UnsupportedProtocolVersion = 0x84,
        ClientIdentifierNotValid = 0x85,
        BadUserNameOrPassword = 0x86,
        NotAuthorized = 0x87,
        ServerUnavailable = 0x88,
        ServerBusy = 0x89,
        Banned = 0x8A,
        BadAuthenticationMethod = 0x8C,
        TopicNameInvalid = 0x90,
        PacketTooLarge = 0x95,
        QuotaExceeded = 0x97,
        PayloadFormatInvalid = 0x99,
        RetainNotSupported = 0x9A,
        QoSNotSupported = 0x9B,
        UseAnotherServer = 0x9C,
        ServerMoved = 0x9D,
        ConnectionRateExceeded = 0x9F,
    }
}

impl ConnectReason {
    /// The CONNACK return code of MQTT 3.1 and 3.1.1 (3.1.1, 3.2.2.3). Those versions know only
    /// five refusals, so every other MQTT 5 refusal becomes the nearest of them.
    pub const fn v3_return_code(self) -> u8 {
        use ConnectReason::*;
        match self {
            Success => 0,
            UnsupportedProtocolVersion => 1,
            ClientIdentifierNotValid => 2,
            BadUserNameOrPassword | BadAuthenticationMethod => 4,
            NotAuthorized | Banned => 5,
            _ => 3,
        }
    }

    /// The reason for a 3.1.x CONNACK return code.
    pub const fn from_v3_return_code(code: u8) -> Option<ConnectReason> {
        use ConnectReason::*;
        match code {
            0 => Some(Success),
            1 => Some(UnsupportedProtocolVersion),
            2 => Some(ClientIdentifierNotValid),
            3 => Some(ServerUnavailable),
            4 => Some(BadUserNameOrPassword),
            5 => Some(NotAuthorized),
            _ => None,
        }
    }
}

reason_codes! {
    /// Reason codes of PUBACK and PUBREC (5.0, 3.4.2.1 and 3.5.2.1).
    PubAckReason {
        Success = 0x00,
        NoMatchingSubscribers = 0x10,
        UnspecifiedError = 0x80,
        ImplementationSpecificError = 0x83,
        NotAuthorized = 0x87,
        TopicNameInvalid = 0x90,
        PacketIdentifierInUse = 0x91,
        QuotaExceeded = 0x97,
        PayloadFormatInvalid = 0x99,
    }
}

reason_codes! {
    /// Reason codes of PUBREL and PUBCOMP (5.0, 3.6.2.1 and 3.7.2.1).
    PubRelReason {
        Success = 0x00,
        PacketIdentifierNotFound = 0x92,
    }
}

reason_codes! {
    /// Reason codes of SUBACK, one per topic filter (5.0, 3.9.3).
    SubAckReason {
        GrantedQoS0 = 0x00,
        GrantedQoS1 = 0x01,
        GrantedQoS2 = 0x02,
        UnspecifiedError = 0x80,
        ImplementationSpecificError = 0x83,
        NotAuthorized = 0x87,
        TopicFilterInvalid = 0x8F,
        PacketIdentifierInUse = 0x91,
        QuotaExceeded = 0x97,
        SharedSubscriptionsNotSupported = 0x9E,
        SubscriptionIdentifiersNotSupported = 0xA1,
        WildcardSubscriptionsNotSupported = 0xA2,
    }
}

impl SubAckReason {
    /// The return code a 3.1.x SUBACK carries: the granted QoS, or 0x80 for any failure
    /// (3.1.1, 3.9.3).
    pub const fn v3_return_code(self) -> u8 {
        if self.is_error() { 0x80 } else { self.code() }
    }

    /// The reason granting `qos`.
    pub const fn granted(qos: super::QoS) -> SubAckReason {
        match qos {
            super::QoS::AtMostOnce => SubAckReason::GrantedQoS0,
            super::QoS::AtLeastOnce => SubAckReason::GrantedQoS1,
            super::QoS::ExactlyOnce => SubAckReason::GrantedQoS2,
        }
    }
}

reason_codes! {
    /// Reason codes of UNSUBACK, one per topic filter (5.0, 3.11.3). 3.1.x UNSUBACK has none.
    UnsubAckReason {
        Success = 0x00,
        NoSubscriptionExisted = 0x11,
        UnspecifiedError = 0x80,
        ImplementationSpecificError = 0x83,
        NotAuthorized = 0x87,
        TopicFilterInvalid = 0x8F,
        PacketIdentifierInUse = 0x91,
    }
}

reason_codes! {
    /// Reason codes of DISCONNECT (5.0, 3.14.2.1).
    DisconnectReason {
        NormalDisconnection = 0x00,
        DisconnectWithWillMessage = 0x04,
        UnspecifiedError = 0x80,
        MalformedPacket = 0x81,
        ProtocolError = 0x82,
        ImplementationSpecificError = 0x83,
        NotAuthorized = 0x87,
        ServerBusy = 0x89,
        ServerShuttingDown = 0x8B,
        BadAuthenticationMethod = 0x8C,
        KeepAliveTimeout = 0x8D,
        SessionTakenOver = 0x8E,
        TopicFilterInvalid = 0x8F,
        TopicNameInvalid = 0x90,
        ReceiveMaximumExceeded = 0x93,
        TopicAliasInvalid = 0x94,
        PacketTooLarge = 0x95,
        MessageRateTooHigh = 0x96,
        QuotaExceeded = 0x97,
        AdministrativeAction = 0x98,
        PayloadFormatInvalid = 0x99,
        RetainNotSupported = 0x9A,
        QoSNotSupported = 0x9B,
        UseAnotherServer = 0x9C,
        ServerMoved = 0x9D,
        SharedSubscriptionsNotSupported = 0x9E,
        ConnectionRateExceeded = 0x9F,
        MaximumConnectTime = 0xA0,
        SubscriptionIdentifiersNotSupported = 0xA1,
        WildcardSubscriptionsNotSupported = 0xA2,
    }
}

reason_codes! {
    /// Reason codes of AUTH (5.0, 3.15.2.1).
    AuthReason {
        Success = 0x00,
        ContinueAuthentication = 0x18,
        ReAuthenticate = 0x19,
    }
}
