//! The statistics commands (spec 7.3-7.5): a service owner's monthly report, the daily summary's rows,
//! and the recurring jobs that rebuild the monthly rollup from the histories (weekly for the current
//! month, on the 2nd for the month before).

use crate::access::Caller;
use crate::error::Result;
use crate::ports::statistics::DailyRow;
use crate::ports::{JobKey, JobKind};
use crate::statistics::{monthly_csv, project, MonthlyReportQuery};
use crate::Broker;
use broker_protocol::time::Timestamp;
use broker_protocol::transfer::strip_resource_urn;
use broker_protocol::ErrorCode;
use chrono::{Datelike, Duration, NaiveDate, TimeZone, Utc, Weekday};

/// A monthly report, ready to send.
#[derive(Debug, Clone)]
pub struct MonthlyReport {
    pub file_name: String,
    pub csv: String,
}

fn weekly_rebuild() -> JobKey {
    JobKey::new(JobKind::StatisticsWeekly, "current-month")
}

fn final_rebuild() -> JobKey {
    JobKey::new(JobKind::StatisticsFinal, "previous-month")
}

/// The next Monday 03:00 UTC after `now`.
fn next_weekly(now: Timestamp) -> Timestamp {
    let today = now.date_naive();
    let mut day = today;
    loop {
        let run = Utc.from_utc_datetime(&day.and_hms_opt(3, 0, 0).expect("a valid time"));
        if day.weekday() == Weekday::Mon && run > now {
            return run;
        }
        day = day.succ_opt().expect("a later day");
    }
}

/// The next 2nd of a month, 04:00 UTC, after `now`.
fn next_final(now: Timestamp) -> Timestamp {
    let (mut year, mut month) = (now.year(), now.month());
    loop {
        let run = NaiveDate::from_ymd_opt(year, month, 2)
            .and_then(|d| d.and_hms_opt(4, 0, 0))
            .map(|t| Utc.from_utc_datetime(&t))
            .expect("the 2nd exists in every month");
        if run > now {
            return run;
        }
        (year, month) = if month == 12 {
            (year + 1, 1)
        } else {
            (year, month + 1)
        };
    }
}

impl Broker {
    /// The caller's monthly report (spec 7.4): the query's own errors first, then the resource must be
    /// configured (`25`) and the caller's (`6`).
    pub async fn monthly_report(
        &self,
        caller: &Caller,
        mut query: MonthlyReportQuery,
    ) -> Result<MonthlyReport> {
        query.validate()?;
        let org = caller.org.as_deref().ok_or(ErrorCode::NoAccess)?;
        if let Some(resource_id) = query.resource_id.take() {
            let resource_id = strip_resource_urn(resource_id.trim()).to_string();
            if !resource_id.is_empty() {
                let resource = self
                    .ports()
                    .metadata
                    .resource(&resource_id)
                    .await?
                    .ok_or(ErrorCode::ResourceNotConfigured)?;
                if resource.service_owner_id != org {
                    return Err(ErrorCode::NoAccess.into());
                }
                query.resource_id = Some(resource_id);
            }
        }
        let rows = self
            .ports()
            .statistics
            .monthly_rows(org, query.year, query.month, query.resource_id.as_deref())
            .await?;
        let rows = project(&rows, query.include_end_user, query.include_vendor);
        Ok(MonthlyReport {
            file_name: query.file_name(),
            csv: monthly_csv(&rows),
        })
    }

    /// The daily summary's rows over every transfer (spec 7.5); the transport checks the API key.
    pub async fn daily_summary(
        &self,
        status_message_resources: &[String],
    ) -> Result<Vec<DailyRow>> {
        Ok(self
            .ports()
            .statistics
            .daily_rows(status_message_resources)
            .await?)
    }

    /// Schedules the rollup's rebuild jobs unless they are scheduled already (a durable job each, so
    /// one node runs each rebuild). The first weekly rebuild runs at once: on a database the
    /// statistics migration just filled, it gives this month's pairs the state later changes add to.
    pub async fn ensure_statistics_jobs(&self) -> Result<()> {
        let now = self.now();
        for (key, first) in [(weekly_rebuild(), now), (final_rebuild(), next_final(now))] {
            if self.ports().jobs.get(&key).await?.is_none() {
                self.schedule_job(&key, first).await?;
            }
        }
        Ok(())
    }

    /// The weekly rebuild: the current month, then the next Monday.
    pub(crate) async fn run_weekly_statistics(&self) -> Result<()> {
        let now = self.now();
        self.ports()
            .statistics
            .rebuild_month(now.year(), now.month())
            .await?;
        self.schedule_job(&weekly_rebuild(), next_weekly(now)).await
    }

    /// The final rebuild of the month before, then the next month's 2nd.
    pub(crate) async fn run_final_statistics(&self) -> Result<()> {
        let now = self.now();
        let previous = now.date_naive().with_day(1).expect("the 1st") - Duration::days(1);
        self.ports()
            .statistics
            .rebuild_month(previous.year(), previous.month())
            .await?;
        self.schedule_job(&final_rebuild(), next_final(now)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn the_weekly_rebuild_runs_on_the_next_monday_at_three() {
        // 2026-12-02 is a Wednesday.
        assert_eq!(
            next_weekly(at("2026-12-02T10:00:00Z")),
            at("2026-12-07T03:00:00Z")
        );
        assert_eq!(
            next_weekly(at("2026-12-07T02:59:00Z")),
            at("2026-12-07T03:00:00Z")
        );
        assert_eq!(
            next_weekly(at("2026-12-07T03:00:00Z")),
            at("2026-12-14T03:00:00Z")
        );
    }

    #[test]
    fn the_final_rebuild_runs_on_the_next_second_of_a_month_at_four() {
        assert_eq!(
            next_final(at("2026-12-01T10:00:00Z")),
            at("2026-12-02T04:00:00Z")
        );
        assert_eq!(
            next_final(at("2026-12-02T04:00:00Z")),
            at("2027-01-02T04:00:00Z")
        );
    }
}
