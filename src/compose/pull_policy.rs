//! A service's `pull_policy` (compose spec) and the decision it makes: pull the image, use the
//! local one, or fail because the image is absent and may not (or cannot) be fetched.
//!
//! The refresh policies (`daily`, `weekly`, `every_<duration>`) compare the image's
//! `LastTagTime` — when the engine last pulled, imported or tagged it — with the period.

use std::time::Duration;

use chrono::{DateTime, Utc};
use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum PullPolicyError {
    #[error("invalid pull_policy {0:?}: use always, never, missing, build, daily, weekly or every_<duration> (e.g. every_12h)")]
    Unknown(String),
    #[error("invalid pull_policy {policy:?}: {duration:?} is not a duration (e.g. every_12h, every_30m, every_2d)")]
    BadDuration { policy: String, duration: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    Never,
    /// Pull only when the image is absent (also `if_not_present`, and services without a policy).
    Missing,
    /// The image is to be built, never pulled.
    Build,
    /// Pull when absent or when last pulled/tagged longer ago than the period.
    Refresh(Duration),
}

const DAY: Duration = Duration::from_secs(24 * 3600);

impl PullPolicy {
    /// A service's policy: `None` (no `pull_policy`) behaves as `missing`.
    pub fn of_service(policy: Option<&str>) -> Result<Self, PullPolicyError> {
        policy.map_or(Ok(Self::Missing), Self::parse)
    }

    pub fn parse(text: &str) -> Result<Self, PullPolicyError> {
        match text {
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            // The loader maps `if_not_present` to `missing`; a project built by other means may not.
            "missing" | "if_not_present" => Ok(Self::Missing),
            "build" => Ok(Self::Build),
            "daily" => Ok(Self::Refresh(DAY)),
            "weekly" => Ok(Self::Refresh(7 * DAY)),
            _ => {
                let Some(period) = text.strip_prefix("every_") else {
                    return Err(PullPolicyError::Unknown(text.to_string()));
                };
                match super::notation::parse_duration(period) {
                    Some(d) if !d.is_zero() => Ok(Self::Refresh(d)),
                    _ => Err(PullPolicyError::BadDuration {
                        policy: text.to_string(),
                        duration: period.to_string(),
                    }),
                }
            }
        }
    }

    /// What to do about the image, given whether it is present and when it was last tagged
    /// (`None` when unknown: never tagged, or recorded before the engine kept the time).
    pub fn decide(
        self,
        present: bool,
        last_tagged: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> PullDecision {
        match (self, present) {
            (Self::Always, _) => PullDecision::Pull,
            (Self::Refresh(period), true) => {
                let stale = last_tagged.is_none_or(|t| {
                    now.signed_duration_since(t).to_std().unwrap_or_default() > period
                });
                if stale {
                    PullDecision::Pull
                } else {
                    PullDecision::UseLocal
                }
            }
            (_, true) => PullDecision::UseLocal,
            (Self::Never, false) => PullDecision::AbsentNeverPull,
            (Self::Build, false) => PullDecision::AbsentNeedsBuild,
            (Self::Missing | Self::Refresh(_), false) => PullDecision::Pull,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullDecision {
    Pull,
    UseLocal,
    /// Absent, and the policy forbids pulling.
    AbsentNeverPull,
    /// Absent, and the policy says to build it.
    AbsentNeedsBuild,
}

/// The time Docker puts in `Metadata.LastTagTime`, or `None` for Go's zero time ("never").
pub fn parse_last_tag_time(text: &str) -> Option<DateTime<Utc>> {
    let t = DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc);
    (t.timestamp() > 0).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling_of_the_spec() {
        assert_eq!(PullPolicy::of_service(None), Ok(PullPolicy::Missing));
        assert_eq!(PullPolicy::parse("always"), Ok(PullPolicy::Always));
        assert_eq!(PullPolicy::parse("never"), Ok(PullPolicy::Never));
        assert_eq!(PullPolicy::parse("if_not_present"), Ok(PullPolicy::Missing));
        assert_eq!(PullPolicy::parse("build"), Ok(PullPolicy::Build));
        assert_eq!(PullPolicy::parse("daily"), Ok(PullPolicy::Refresh(DAY)));
        assert_eq!(
            PullPolicy::parse("weekly"),
            Ok(PullPolicy::Refresh(7 * DAY))
        );
        assert_eq!(
            PullPolicy::parse("every_12h"),
            Ok(PullPolicy::Refresh(Duration::from_secs(12 * 3600)))
        );
        assert_eq!(
            PullPolicy::parse("every_1h30m"),
            Ok(PullPolicy::Refresh(Duration::from_secs(5400)))
        );
        assert_eq!(
            PullPolicy::parse("every_1s"),
            Ok(PullPolicy::Refresh(Duration::from_secs(1)))
        );
    }

    #[test]
    fn rejects_what_is_not_a_policy_with_the_valid_ones_named() {
        let e = PullPolicy::parse("sometimes").unwrap_err().to_string();
        assert!(
            e.contains("\"sometimes\"") && e.contains("every_<duration>"),
            "{e}"
        );
        for bad in ["every_", "every_soon", "every_0s", "every_12x"] {
            let e = PullPolicy::parse(bad).unwrap_err();
            assert!(
                matches!(e, PullPolicyError::BadDuration { .. }),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn decides_like_docker_compose() {
        let now = Utc::now();
        let ago = |secs: i64| Some(now - chrono::Duration::seconds(secs));
        use PullDecision::*;
        use PullPolicy::*;
        assert_eq!(Always.decide(true, ago(1), now), Pull);
        assert_eq!(Always.decide(false, None, now), Pull);
        assert_eq!(Missing.decide(true, None, now), UseLocal);
        assert_eq!(Missing.decide(false, None, now), Pull);
        assert_eq!(Never.decide(true, None, now), UseLocal);
        assert_eq!(Never.decide(false, None, now), AbsentNeverPull);
        // `build` builds (the CLI does); this decision only says whether a pull is wanted.
        assert_eq!(Build.decide(true, None, now), UseLocal);
        assert_eq!(Build.decide(false, None, now), AbsentNeedsBuild);

        let daily = PullPolicy::parse("daily").unwrap();
        assert_eq!(daily.decide(false, None, now), Pull);
        assert_eq!(daily.decide(true, ago(3600), now), UseLocal);
        assert_eq!(daily.decide(true, ago(25 * 3600), now), Pull);
        // An image whose tag time is unknown (an older record) is refreshed.
        assert_eq!(daily.decide(true, None, now), Pull);
        // A clock that went backwards does not count as stale.
        assert_eq!(daily.decide(true, ago(-60), now), UseLocal);
    }

    #[test]
    fn reads_dockers_last_tag_time() {
        assert_eq!(parse_last_tag_time("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_last_tag_time(""), None);
        let t = parse_last_tag_time("2026-11-26T02:00:21.123456789Z").unwrap();
        assert_eq!(t.timestamp(), 1795658421);
    }
}
