//! The monthly statistics report (spec 7.3-7.4): the rollup's rows re-aggregated over the dimensions a
//! service owner asked for, and written as the CSV the original serves. Pure functions: the rollup
//! itself and the endpoint that calls these come with the statistics store.

use broker_protocol::transfer::normalize_org;
use broker_protocol::ErrorCode;
use std::collections::BTreeMap;

/// The CSV's header line, exactly as the original writes it.
pub const MONTHLY_CSV_HEADER: &str = "year,month,resourceId,senderVendor,recipientVendor,sender,recipient,totalFileTransfers,uploadCount,totalTransferDownloadAttempts,transfersWithDownloadConfirmed";

/// One row of the monthly rollup: one (resource, sender, recipient, vendors) of a month, or, once
/// projected, the sum over the dimensions left out (their columns blank).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MonthlyRow {
    pub year: i32,
    pub month: u32,
    pub resource_id: String,
    pub sender: String,
    pub recipient: String,
    pub sender_vendor: String,
    pub recipient_vendor: String,
    /// (transfer, recipient) pairs of transfers created in the month.
    pub total_file_transfers: u64,
    /// Pairs of transfers published in the month.
    pub upload_count: u64,
    /// DownloadStarted records in the month.
    pub download_attempts: u64,
    /// Pairs with a DownloadConfirmed in the month.
    pub downloads_confirmed: u64,
}

/// Which month, and which dimensions, a report covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthlyReportQuery {
    pub year: i32,
    pub month: u32,
    pub resource_id: Option<String>,
    pub include_end_user: bool,
    pub include_vendor: bool,
}

impl MonthlyReportQuery {
    /// The query's own errors, checked before anything is read: a year outside 1..9999 or a month
    /// outside 1..12 is `6003`, both dimensions left out is `6005`.
    pub fn validate(&self) -> Result<(), ErrorCode> {
        let valid = (1..=9999).contains(&self.year) && (1..=12).contains(&self.month);
        if !valid {
            return Err(ErrorCode::InvalidReportPeriod);
        }
        if !self.include_end_user && !self.include_vendor {
            return Err(ErrorCode::ReportNeedsADimension);
        }
        Ok(())
    }

    /// `monthly_statistics_{resourceId|all-resources}_{yyyy-MM}.csv`; characters other than letters,
    /// digits, `-`, `_` and `.` become `_`, so the name is safe in a file system and a header.
    pub fn file_name(&self) -> String {
        let resource = match self.resource_id.as_deref().map(str::trim) {
            Some(r) if !r.is_empty() => r
                .chars()
                .map(|c| match c {
                    'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => c,
                    _ => '_',
                })
                .collect(),
            _ => "all-resources".to_string(),
        };
        format!(
            "monthly_statistics_{resource}_{:04}-{:02}.csv",
            self.year, self.month
        )
    }
}

/// An organisation as the report writes it (`0192:NNNNNNNNN`); blank stays blank.
fn org(value: &str, included: bool) -> String {
    if !included || value.trim().is_empty() {
        return String::new();
    }
    normalize_org(value)
}

/// Sums the rows over the dimensions left out, ordered by resource, sender, sender vendor,
/// recipient and recipient vendor (ordinal, as the original sorts).
pub fn project(
    rows: &[MonthlyRow],
    include_end_user: bool,
    include_vendor: bool,
) -> Vec<MonthlyRow> {
    type Key = (String, String, String, String, String, i32, u32);
    let mut groups: BTreeMap<Key, MonthlyRow> = BTreeMap::new();
    for row in rows {
        let sender = org(&row.sender, include_end_user);
        let recipient = org(&row.recipient, include_end_user);
        let sender_vendor = org(&row.sender_vendor, include_vendor);
        let recipient_vendor = org(&row.recipient_vendor, include_vendor);
        let key = (
            row.resource_id.clone(),
            sender.clone(),
            sender_vendor.clone(),
            recipient.clone(),
            recipient_vendor.clone(),
            row.year,
            row.month,
        );
        let sum = groups.entry(key).or_insert_with(|| MonthlyRow {
            year: row.year,
            month: row.month,
            resource_id: row.resource_id.clone(),
            sender,
            recipient,
            sender_vendor,
            recipient_vendor,
            ..MonthlyRow::default()
        });
        sum.total_file_transfers += row.total_file_transfers;
        sum.upload_count += row.upload_count;
        sum.download_attempts += row.download_attempts;
        sum.downloads_confirmed += row.downloads_confirmed;
    }
    groups.into_values().collect()
}

/// A text field quoted the RFC 4180 way when it holds a comma, a quote or a line break. One that a
/// spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage
/// return) is neutralised as OWASP recommends: a leading `'`, and quoted.
fn field(value: &str) -> std::borrow::Cow<'_, str> {
    let formula = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if formula {
        format!("\"'{}\"", value.replace('"', "\"\"")).into()
    } else if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\"")).into()
    } else {
        value.into()
    }
}

/// The report: the header line, then one line per row, each ended by CRLF (RFC 4180).
pub fn monthly_csv(rows: &[MonthlyRow]) -> String {
    let mut out = String::with_capacity(MONTHLY_CSV_HEADER.len() + 2 + rows.len() * 96);
    out.push_str(MONTHLY_CSV_HEADER);
    out.push_str("\r\n");
    for r in rows {
        use std::fmt::Write;
        let _ = write!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{}\r\n",
            r.year,
            r.month,
            field(&r.resource_id),
            field(&r.sender_vendor),
            field(&r.recipient_vendor),
            field(&r.sender),
            field(&r.recipient),
            r.total_file_transfers,
            r.upload_count,
            r.download_attempts,
            r.downloads_confirmed
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        resource: &str,
        sender: &str,
        recipient: &str,
        vendors: (&str, &str),
        n: [u64; 4],
    ) -> MonthlyRow {
        MonthlyRow {
            year: 2026,
            month: 3,
            resource_id: resource.into(),
            sender: sender.into(),
            recipient: recipient.into(),
            sender_vendor: vendors.0.into(),
            recipient_vendor: vendors.1.into(),
            total_file_transfers: n[0],
            upload_count: n[1],
            download_attempts: n[2],
            downloads_confirmed: n[3],
        }
    }

    fn query(year: i32, month: u32, end_user: bool, vendor: bool) -> MonthlyReportQuery {
        MonthlyReportQuery {
            year,
            month,
            resource_id: None,
            include_end_user: end_user,
            include_vendor: vendor,
        }
    }

    #[test]
    fn a_month_outside_the_calendar_is_refused_with_6003() {
        for (y, m) in [(0, 1), (10000, 1), (2026, 0), (2026, 13)] {
            assert_eq!(
                query(y, m, true, false).validate(),
                Err(ErrorCode::InvalidReportPeriod)
            );
        }
        assert_eq!(query(9999, 12, true, false).validate(), Ok(()));
        assert_eq!(query(1, 1, false, true).validate(), Ok(()));
    }

    #[test]
    fn leaving_out_both_dimensions_is_refused_with_6005() {
        assert_eq!(
            query(2026, 3, false, false).validate(),
            Err(ErrorCode::ReportNeedsADimension)
        );
    }

    #[test]
    fn the_file_name_names_the_resource_or_all_resources_and_the_month() {
        let mut q = query(2026, 3, true, false);
        assert_eq!(
            q.file_name(),
            "monthly_statistics_all-resources_2026-03.csv"
        );
        q.resource_id = Some("a/b".into());
        assert_eq!(q.file_name(), "monthly_statistics_a_b_2026-03.csv");
    }

    #[test]
    fn leaving_out_the_vendor_sums_rows_that_differ_only_in_their_vendors() {
        let rows = [
            row(
                "r",
                "0192:111111111",
                "0192:222222222",
                ("0192:900000001", ""),
                [2, 1, 3, 1],
            ),
            row(
                "r",
                "111111111",
                "0192:222222222",
                ("0192:900000002", "0192:900000003"),
                [1, 1, 1, 0],
            ),
            row(
                "r",
                "0192:111111111",
                "0192:333333333",
                ("", ""),
                [1, 0, 0, 0],
            ),
        ];
        let projected = project(&rows, true, false);
        assert_eq!(
            projected,
            vec![
                row(
                    "r",
                    "0192:111111111",
                    "0192:222222222",
                    ("", ""),
                    [3, 2, 4, 1]
                ),
                row(
                    "r",
                    "0192:111111111",
                    "0192:333333333",
                    ("", ""),
                    [1, 0, 0, 0]
                ),
            ]
        );
        let by_vendor = project(&rows, false, true);
        assert_eq!(by_vendor.len(), 3);
        assert_eq!(by_vendor[0], row("r", "", "", ("", ""), [1, 0, 0, 0]));
    }

    #[test]
    fn the_csv_has_the_header_crlf_lines_and_rfc_4180_quoting() {
        let rows = [row(
            "a,\"b\"",
            "0192:111111111",
            "0192:222222222",
            ("", ""),
            [1, 2, 3, 4],
        )];
        assert_eq!(
            monthly_csv(&rows),
            format!("{MONTHLY_CSV_HEADER}\r\n2026,3,\"a,\"\"b\"\"\",,,0192:111111111,0192:222222222,1,2,3,4\r\n")
        );
    }

    #[test]
    fn a_cell_a_spreadsheet_would_run_as_a_formula_is_neutralised() {
        for (value, cell) in [
            (
                "=HYPERLINK(\"http//evil\")",
                "\"'=HYPERLINK(\"\"http//evil\"\")\"",
            ),
            ("@SUM(1+1)", "\"'@SUM(1+1)\""),
            ("+1+1", "\"'+1+1\""),
            ("-1+1", "\"'-1+1\""),
            ("\t=1+1", "\"'\t=1+1\""),
            ("\r=1+1", "\"'\r=1+1\""),
        ] {
            let csv = monthly_csv(&[row(value, "0192:1", value, ("", ""), [1, 0, 0, 0])]);
            let line = csv.lines().nth(1).unwrap();
            assert_eq!(
                line,
                format!("2026,3,{cell},,,0192:1,{cell},1,0,0,0"),
                "{value:?}"
            );
        }
    }
}
