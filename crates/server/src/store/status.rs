//! The statuses of actions, rollouts, rollout groups and targets.
//!
//! Each status's text (`as_str`, also its JSON form and `Display`) is what the database stores and
//! the APIs show: the migrations, hawkBit clients and the tests depend on it, so it never changes.
//! SQL text that compares statuses (`status <> 'canceling'`) spells the same words.

use serde::Serialize;
use sqlx::any::{Any, AnyTypeInfo, AnyValueRef};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Encode, Type};
use std::fmt;
use std::str::FromStr;

/// A status text that names no known status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownStatus(pub String);

impl fmt::Display for UnknownStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown status {:?}", self.0)
    }
}

impl std::error::Error for UnknownStatus {}

/// Defines a status enum stored as text: `as_str`, `FromStr`, `Display`, `Serialize`, and the
/// sqlx `Any` encoding (bound and read as its text, like the `String` it replaces).
macro_rules! text_status {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$variant_meta:meta])* $variant:ident = $text:literal,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        pub enum $name {
            $($(#[$variant_meta])* #[serde(rename = $text)] $variant,)*
        }

        impl $name {
            /// Every status, in the order they are declared.
            pub const ALL: &'static [$name] = &[$(Self::$variant,)*];

            /// The text stored in the database and shown by the APIs; it never changes.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)*
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownStatus;

            fn from_str(text: &str) -> Result<Self, UnknownStatus> {
                match text {
                    $($text => Ok(Self::$variant),)*
                    _ => Err(UnknownStatus(text.to_string())),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Type<Any> for $name {
            fn type_info() -> AnyTypeInfo {
                <str as Type<Any>>::type_info()
            }
        }

        impl<'q> Encode<'q, Any> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut <Any as Database>::ArgumentBuffer<'q>,
            ) -> Result<IsNull, BoxDynError> {
                <&str as Encode<'q, Any>>::encode(self.as_str(), buf)
            }
        }

        impl<'r> Decode<'r, Any> for $name {
            fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
                let text = <String as Decode<'r, Any>>::decode(value)?;
                Ok(text.parse()?)
            }
        }
    };
}

text_status! {
    /// What an action is doing (`actions.status`), and what each entry of its history reports
    /// (`action_status.status`): hawkBit's `Action.Status`, in lower case.
    pub enum ActionStatus {
        /// Assigned, or the device reports progress.
        Running = "running",
        /// The device downloads (feedback `download`, or a full artifact download was logged).
        Download = "download",
        /// The device reports the download complete (feedback `downloaded`); the action stays open.
        Downloaded = "downloaded",
        /// The device rejected the update; the action stays open.
        Warning = "warning",
        /// History only: the device fetched the deployment or cancel request.
        Retrieved = "retrieved",
        /// History only: the device refused to cancel; the action goes back to `running`.
        CancelRejected = "cancel_rejected",
        /// Open, but the device is asked to stop it (canceled, or superseded by a new assignment).
        Canceling = "canceling",
        /// Closed: installed.
        Finished = "finished",
        /// Closed: the device reported a failure.
        Error = "error",
        /// Closed: canceled (confirmed by the device, or forced).
        Canceled = "canceled",
    }
}

text_status! {
    /// Where a rollout is (`rollouts.status`).
    pub enum RolloutStatus {
        /// Created, not started yet.
        Ready = "ready",
        /// Started: the scheduler starts its groups one after another.
        Running = "running",
        /// Paused by an operator.
        Paused = "paused",
        /// Stopped by the scheduler: a group crossed the error threshold.
        Halted = "halted",
        /// Closed: every group ended (finished, or canceled).
        Finished = "finished",
        /// Canceled by an operator: open actions of its groups are canceled too.
        Canceled = "canceled",
    }
}

text_status! {
    /// Where a rollout group is (`rollout_groups.status`).
    pub enum GroupStatus {
        /// Its actions are not created yet.
        Scheduled = "scheduled",
        /// Its actions exist; it ends when none of them is open any more.
        Running = "running",
        /// Every action of the group closed without crossing the error threshold.
        Finished = "finished",
        /// Crossed the rollout's error threshold (the rollout halted).
        Error = "error",
        /// The rollout was canceled before the group started.
        Canceled = "canceled",
    }
}

text_status! {
    /// A target's update status (the management API's `updateStatus`, the dashboard's device
    /// state), computed from its actions (`dashboard::DEVICE_STATE_SQL`, `mgmt::target_json`).
    pub enum UpdateStatus {
        /// An action is open.
        Pending = "pending",
        /// The latest action failed.
        Error = "error",
        /// Runs the set of its latest successful action.
        InSync = "in_sync",
        /// Has polled, nothing installed through keel yet.
        Registered = "registered",
        /// Never polled.
        Unknown = "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_round_trip() {
        assert_eq!(ActionStatus::ALL.len(), 10);
        for &status in ActionStatus::ALL {
            assert_eq!(status.as_str().parse::<ActionStatus>(), Ok(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(status.as_str())
            );
        }
        assert_eq!(ActionStatus::CancelRejected.as_str(), "cancel_rejected");
        assert_eq!("halted".parse::<RolloutStatus>(), Ok(RolloutStatus::Halted));
        assert_eq!(
            "scheduled".parse::<GroupStatus>(),
            Ok(GroupStatus::Scheduled)
        );
        assert_eq!(UpdateStatus::InSync.as_str(), "in_sync");
        for &status in UpdateStatus::ALL {
            assert_eq!(status.as_str().parse::<UpdateStatus>(), Ok(status));
        }
        assert!("RUNNING".parse::<ActionStatus>().is_err());
    }
}
