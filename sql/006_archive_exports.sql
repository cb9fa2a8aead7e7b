-- The cold archive's ledger: one row per exported (date, exchange) Parquet file. An
-- export writes the file, uploads it, then records it here; rows that arrive for a day
-- after its export (late data) make the day's rows differ from `rows`, and the next
-- export pass writes the file again (docs/ARCHIVER.md, "Cold archive").
CREATE TABLE archive_exports (
    date        DATE        NOT NULL,
    exchange    TEXT        NOT NULL,
    key         TEXT        NOT NULL,  -- market_data/date=YYYY-MM-DD/exchange=X/part-0.parquet
    rows        BIGINT      NOT NULL,
    bytes       BIGINT      NOT NULL,
    codec       TEXT        NOT NULL,
    destination TEXT        NOT NULL,  -- s3://bucket or file:///dir
    exported_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (date, exchange)
);

-- Rows per (UTC day, exchange) in market_data, kept by each batch's transaction from the
-- rows it really inserted: the export scheduler's list of days to write, and its way to
-- see a day that changed after its export (rows <> archive_exports.rows).
CREATE TABLE market_data_days (
    date       DATE        NOT NULL,
    exchange   TEXT        NOT NULL,
    rows       BIGINT      NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (date, exchange)
);

CREATE FUNCTION himari_note_days() RETURNS VOID
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO market_data_days AS d (date, exchange, rows)
    SELECT (timestamp AT TIME ZONE 'UTC')::date, exchange, count(*)
    FROM ar_inserted GROUP BY 1, 2
    ON CONFLICT (date, exchange)
    DO UPDATE SET rows = d.rows + EXCLUDED.rows, changed_at = now();
END $$;
