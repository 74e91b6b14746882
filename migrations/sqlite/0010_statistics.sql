-- Statistics (spec 7.3): who acted through which vendor's system, and the monthly rollup, kept up
-- to date by triggers in the transaction of each change. The weekly and day-2 jobs rebuild a month
-- from the histories in case the two ever drift.
--
-- The rollup counts (transfer, recipient) pairs per month, and a pair's counts go under the latest
-- vendor its recipient acted through that month. So each recipients row keeps what its pair did in
-- its latest month (the `stats_*` columns; that row is written by every recipient change anyway, so
-- keeping the state there adds no page to a commit), and a change of that state moves the rollup.

ALTER TABLE file_transfers ADD COLUMN sender_vendor TEXT;
ALTER TABLE recipient_status_history ADD COLUMN vendor TEXT;

-- 'YYYY-MM' of the pair's latest counted month (NULL: nothing counted since the last rebuild).
ALTER TABLE recipients ADD COLUMN stats_month TEXT;
ALTER TABLE recipients ADD COLUMN stats_created INTEGER NOT NULL DEFAULT 0;
ALTER TABLE recipients ADD COLUMN stats_published INTEGER NOT NULL DEFAULT 0;
ALTER TABLE recipients ADD COLUMN stats_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE recipients ADD COLUMN stats_confirmed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE recipients ADD COLUMN stats_vendor TEXT NOT NULL DEFAULT '';

-- A month's rebuild reads that month's history rows only (timestamps only grow, so these indexes
-- are appended to at their end).
CREATE INDEX recipient_history_by_time ON recipient_status_history (changed);
CREATE INDEX status_history_published ON file_transfer_status_history (changed) WHERE status = 3;

CREATE TABLE monthly_statistics (
    service_owner_id              TEXT NOT NULL,
    year                          INTEGER NOT NULL,
    month                         INTEGER NOT NULL,
    resource_id                   TEXT NOT NULL,
    sender                        TEXT NOT NULL,
    recipient                     TEXT NOT NULL,
    sender_vendor                 TEXT NOT NULL,
    recipient_vendor              TEXT NOT NULL,
    total_file_transfers          INTEGER NOT NULL,
    upload_count                  INTEGER NOT NULL,
    download_attempts             INTEGER NOT NULL,
    downloads_confirmed           INTEGER NOT NULL,
    PRIMARY KEY (service_owner_id, year, month, resource_id, sender, recipient, sender_vendor, recipient_vendor)
) WITHOUT ROWID;

-- A recipient row (Initialized 0, DownloadStarted 1, DownloadConfirmed 2) counts in its month; a
-- row in a later month starts that month's counts afresh.
CREATE TRIGGER statistics_recipient_row AFTER INSERT ON recipient_status_history
WHEN NEW.status IN (0, 1, 2)
BEGIN
    UPDATE recipients SET
        stats_month = substr(NEW.changed, 1, 7),
        stats_created = MAX(iif(stats_month IS substr(NEW.changed, 1, 7), stats_created, 0), NEW.status = 0),
        stats_published = iif(stats_month IS substr(NEW.changed, 1, 7), stats_published, 0),
        stats_attempts = iif(stats_month IS substr(NEW.changed, 1, 7), stats_attempts, 0) + (NEW.status = 1),
        stats_confirmed = MAX(iif(stats_month IS substr(NEW.changed, 1, 7), stats_confirmed, 0), NEW.status = 2),
        stats_vendor = COALESCE(NEW.vendor, iif(stats_month IS substr(NEW.changed, 1, 7), stats_vendor, ''))
    WHERE file_transfer_id = NEW.file_transfer_id AND recipient = NEW.recipient;
END;

-- Publishing counts once for every recipient of the transfer.
CREATE TRIGGER statistics_published AFTER INSERT ON file_transfer_status_history
WHEN NEW.status = 3
BEGIN
    UPDATE recipients SET
        stats_month = substr(NEW.changed, 1, 7),
        stats_created = iif(stats_month IS substr(NEW.changed, 1, 7), stats_created, 0),
        stats_published = 1,
        stats_attempts = iif(stats_month IS substr(NEW.changed, 1, 7), stats_attempts, 0),
        stats_confirmed = iif(stats_month IS substr(NEW.changed, 1, 7), stats_confirmed, 0),
        stats_vendor = iif(stats_month IS substr(NEW.changed, 1, 7), stats_vendor, '')
    WHERE file_transfer_id = NEW.file_transfer_id;
END;

-- The pair's counts changed: what they add goes under their key (all of them when the month or the
-- vendor is new to the pair, else the difference).
CREATE TRIGGER statistics_pair_counted
AFTER UPDATE OF stats_month, stats_created, stats_published, stats_attempts, stats_confirmed, stats_vendor ON recipients
WHEN NEW.stats_month IS NOT NULL
BEGIN
    INSERT INTO monthly_statistics
    SELECT r.service_owner_id, CAST(substr(NEW.stats_month, 1, 4) AS INTEGER),
        CAST(substr(NEW.stats_month, 6, 2) AS INTEGER), t.resource_id, t.sender_org, NEW.recipient,
        COALESCE(t.sender_vendor, ''), NEW.stats_vendor,
        NEW.stats_created - iif(k.same, OLD.stats_created, 0),
        NEW.stats_published - iif(k.same, OLD.stats_published, 0),
        NEW.stats_attempts - iif(k.same, OLD.stats_attempts, 0),
        NEW.stats_confirmed - iif(k.same, OLD.stats_confirmed, 0)
    FROM file_transfers t JOIN resources r ON r.id = t.resource_id
        JOIN (SELECT OLD.stats_month IS NEW.stats_month AND OLD.stats_vendor = NEW.stats_vendor AS same) k
    WHERE t.id = NEW.file_transfer_id
    ON CONFLICT DO UPDATE SET
        total_file_transfers = total_file_transfers + excluded.total_file_transfers,
        upload_count = upload_count + excluded.upload_count,
        download_attempts = download_attempts + excluded.download_attempts,
        downloads_confirmed = downloads_confirmed + excluded.downloads_confirmed;
END;

-- The recipient acted through another vendor this month: the pair's counts leave the old key (the
-- trigger above adds them under the new one).
CREATE TRIGGER statistics_pair_moved
AFTER UPDATE OF stats_month, stats_created, stats_published, stats_attempts, stats_confirmed, stats_vendor ON recipients
WHEN NEW.stats_month IS NOT NULL AND OLD.stats_month IS NEW.stats_month AND OLD.stats_vendor <> NEW.stats_vendor
BEGIN
    UPDATE monthly_statistics SET
        total_file_transfers = total_file_transfers - OLD.stats_created,
        upload_count = upload_count - OLD.stats_published,
        download_attempts = download_attempts - OLD.stats_attempts,
        downloads_confirmed = downloads_confirmed - OLD.stats_confirmed
    WHERE (service_owner_id, year, month, resource_id, sender, recipient, sender_vendor, recipient_vendor) =
        (SELECT r.service_owner_id, CAST(substr(OLD.stats_month, 1, 4) AS INTEGER),
             CAST(substr(OLD.stats_month, 6, 2) AS INTEGER), t.resource_id, t.sender_org, OLD.recipient,
             COALESCE(t.sender_vendor, ''), OLD.stats_vendor
         FROM file_transfers t JOIN resources r ON r.id = t.resource_id WHERE t.id = OLD.file_transfer_id);
    -- A key left with nothing is no row of the report.
    DELETE FROM monthly_statistics
    WHERE recipient = OLD.recipient AND recipient_vendor = OLD.stats_vendor
        AND total_file_transfers = 0 AND upload_count = 0 AND download_attempts = 0
        AND downloads_confirmed = 0
        AND (service_owner_id, year, month, resource_id, sender, sender_vendor) =
            (SELECT r.service_owner_id, CAST(substr(OLD.stats_month, 1, 4) AS INTEGER),
                 CAST(substr(OLD.stats_month, 6, 2) AS INTEGER), t.resource_id, t.sender_org,
                 COALESCE(t.sender_vendor, '')
             FROM file_transfers t JOIN resources r ON r.id = t.resource_id WHERE t.id = OLD.file_transfer_id);
END;

-- Transfers made before this migration count too (without vendors, which were not recorded). Their
-- pairs keep no state, so a later change of theirs counts only itself, which is what it adds.
INSERT INTO monthly_statistics
SELECT r.service_owner_id, e.year, e.month, t.resource_id, t.sender_org, e.recipient, '', '',
    SUM(e.created), SUM(e.published), SUM(e.attempts), SUM(e.confirmed)
FROM (
    SELECT file_transfer_id, recipient, year, month, MAX(created) AS created, MAX(published) AS published,
        SUM(attempts) AS attempts, MAX(confirmed) AS confirmed
    FROM (
        SELECT file_transfer_id, recipient, CAST(substr(changed, 1, 4) AS INTEGER) AS year,
            CAST(substr(changed, 6, 2) AS INTEGER) AS month, status = 0 AS created, 0 AS published,
            status = 1 AS attempts, status = 2 AS confirmed
        FROM recipient_status_history WHERE status IN (0, 1, 2)
        UNION ALL
        SELECT rc.file_transfer_id, rc.recipient, CAST(substr(s.changed, 1, 4) AS INTEGER),
            CAST(substr(s.changed, 6, 2) AS INTEGER), 0, 1, 0, 0
        FROM file_transfer_status_history s JOIN recipients rc ON rc.file_transfer_id = s.file_transfer_id
        WHERE s.status = 3
    )
    GROUP BY file_transfer_id, recipient, year, month
) e JOIN file_transfers t ON t.id = e.file_transfer_id JOIN resources r ON r.id = t.resource_id
WHERE true
GROUP BY r.service_owner_id, e.year, e.month, t.resource_id, t.sender_org, e.recipient;
