//! The `[statistics]` section: the daily summary's API key, its rate limit, and the resources whose
//! status messages it leaves out (spec 7.5).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatisticsConfig {
    /// The `X-API-Key` the daily summary endpoints require; without one they refuse every call.
    pub api_key: Option<String>,
    /// Daily summary calls one client address may make per rolling window (default 10; 5 with
    /// `registry.environment = "development"`, as the original allows in Development).
    pub rate_limit_requests: Option<u32>,
    pub rate_limit_window_secs: u64,
    /// Transfers on these resources with the property `statusmessage=true` are left out of the
    /// daily summary (`ReportResourceIdFilter` of the original).
    pub status_message_resources: Vec<String>,
    /// The environment named in the report's file name and headers (default: the registry's).
    pub environment: Option<String>,
}

impl Default for StatisticsConfig {
    fn default() -> Self {
        StatisticsConfig {
            api_key: None,
            rate_limit_requests: None,
            rate_limit_window_secs: 3_600,
            status_message_resources: vec![],
            environment: None,
        }
    }
}

impl StatisticsConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.rate_limit_requests == Some(0) || self.rate_limit_window_secs == 0 {
            return Err(
                "statistics.rate_limit_requests and rate_limit_window_secs must be at least 1"
                    .into(),
            );
        }
        if self.api_key.as_deref().is_some_and(|k| k.trim().is_empty()) {
            return Err(
                "statistics.api_key must not be empty (leave it out to turn the daily summary off)"
                    .into(),
            );
        }
        if let Some(env) = &self.environment {
            let safe = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
            if env.is_empty() || !env.chars().all(safe) {
                return Err(
                    "statistics.environment may hold only letters, digits, '-' and '_'".into(),
                );
            }
        }
        Ok(())
    }
}
