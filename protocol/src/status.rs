//! Status enums, written as strings and read from names (any case) or their integer values.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $value:expr),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        pub enum $name { $($variant = $value),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => stringify!($variant)),+ }
            }

            pub fn code(self) -> i64 { self as i64 }

            pub fn from_code(code: i64) -> Option<Self> {
                Self::ALL.iter().copied().find(|s| s.code() == code)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                let s = s.trim();
                if let Ok(code) = s.parse::<i64>() {
                    return Self::from_code(code).ok_or_else(|| format!("{code} is not a valid {}", stringify!($name)));
                }
                Self::ALL.iter().copied().find(|v| v.as_str().eq_ignore_ascii_case(s))
                    .ok_or_else(|| format!("'{s}' is not a valid {}", stringify!($name)))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                match serde_json::Value::deserialize(d)? {
                    serde_json::Value::String(s) => s.parse().map_err(serde::de::Error::custom),
                    serde_json::Value::Number(n) => n.as_i64().and_then(Self::from_code)
                        .ok_or_else(|| serde::de::Error::custom(format!("{n} is not a valid {}", stringify!($name)))),
                    other => Err(serde::de::Error::custom(format!("{other} is not a valid {}", stringify!($name)))),
                }
            }
        }
    };
}

wire_enum!(
    /// The status of a file transfer. The numbers are Altinn's database ids.
    FileTransferStatus {
        Initialized = 0,
        UploadStarted = 1,
        UploadProcessing = 2,
        Published = 3,
        Cancelled = 4,
        AllConfirmedDownloaded = 5,
        Purged = 6,
        Failed = 7,
    }
);

wire_enum!(
    /// A recipient's status for one transfer; the current one is the highest reached.
    RecipientStatus {
        Initialized = 0,
        DownloadStarted = 1,
        DownloadConfirmed = 2,
    }
);

wire_enum!(
    /// The `role` filter of search.
    Role {
        Recipient = 0,
        Sender = 1,
    }
);

impl FileTransferStatus {
    /// The default status text of the overview when no detailed text was stored.
    pub fn default_text(self) -> &'static str {
        match self {
            Self::Initialized => "Ready for upload",
            Self::UploadStarted => "Upload started",
            Self::UploadProcessing => "Processing upload",
            Self::Published => "Ready for download",
            Self::Cancelled => "FileTransfer cancelled",
            Self::AllConfirmedDownloaded => "All downloaded",
            Self::Purged => "FileTransfer has been purged",
            Self::Failed => "Upload failed",
        }
    }
}

impl RecipientStatus {
    pub fn text(self) -> &'static str {
        match self {
            Self::Initialized => "Initialized",
            Self::DownloadStarted => "Recipient has attempted to download fileTransfer",
            Self::DownloadConfirmed => "Recipient has downloaded fileTransfer",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_parse_from_names_in_any_case_and_from_numbers() {
        assert_eq!("published".parse(), Ok(FileTransferStatus::Published));
        assert_eq!("3".parse(), Ok(FileTransferStatus::Published));
        assert!("9".parse::<FileTransferStatus>().is_err());
        let s: RecipientStatus = serde_json::from_str("1").unwrap();
        assert_eq!(s, RecipientStatus::DownloadStarted);
        assert_eq!(
            serde_json::to_string(&FileTransferStatus::AllConfirmedDownloaded).unwrap(),
            "\"AllConfirmedDownloaded\""
        );
    }
}
