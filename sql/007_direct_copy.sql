-- Batches COPY straight into market_data and market_data_rejects, and bring their candles
-- and day counts already folded (services/archiver/rollups.c). What makes that safe is a
-- ledger of what is archived: per source partition, the next offset not yet in the
-- database, advanced by each batch's transaction with its rows (himari_claim_offsets). A
-- redelivered record is below its partition's next offset, so the archiver takes it out
-- of the batch before sending (docs/ARCHIVER.md, "Exactly once"); the unique source key
-- stays, as the last guard.
CREATE TABLE archiver_offsets (
    source_topic     TEXT        NOT NULL,
    source_partition INTEGER     NOT NULL,
    next_offset      BIGINT      NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (source_topic, source_partition)
);

-- A database archived before this migration: its ledger from the rows already there.
INSERT INTO archiver_offsets (source_topic, source_partition, next_offset)
SELECT source_topic, source_partition, max(source_offset) + 1
FROM (SELECT source_topic, source_partition, source_offset FROM market_data
      UNION ALL
      SELECT source_topic, source_partition, source_offset FROM market_data_rejects) s
GROUP BY 1, 2;

-- Claim offsets [firsts[i], nexts[i]) of partition parts[i] for the batch's transaction.
-- When a partition's ledger is past firsts[i] (some of the batch is archived already: a
-- redelivery, or another archiver got there first), nothing is claimed and the error's
-- message lists every such partition and its next offset, "himari_offsets_archived 3:4567
-- 5:100", for the archiver to take those rows out and send the rest. Rows are locked in
-- the order given (the archiver sends partitions in ascending order), so two claims never
-- deadlock.
CREATE FUNCTION himari_claim_offsets(topic TEXT, parts INTEGER[], firsts BIGINT[],
                                     nexts BIGINT[]) RETURNS VOID
LANGUAGE plpgsql AS $$
DECLARE
    behind TEXT := '';
    have BIGINT;
BEGIN
    FOR i IN 1 .. coalesce(array_length(parts, 1), 0) LOOP
        SELECT next_offset INTO have FROM archiver_offsets
        WHERE source_topic = topic AND source_partition = parts[i] FOR UPDATE;
        IF have > firsts[i] THEN
            behind := behind || format(' %s:%s', parts[i], have);
        END IF;
    END LOOP;
    IF behind <> '' THEN
        RAISE EXCEPTION 'himari_offsets_archived%', behind
            USING ERRCODE = 'HM409',
                  HINT = 'the archiver drops these rows from the batch and sends it again';
    END IF;
    INSERT INTO archiver_offsets AS o (source_topic, source_partition, next_offset)
    SELECT topic, p, n FROM unnest(parts, nexts) AS u(p, n)
    ON CONFLICT (source_topic, source_partition)
    DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now();
END $$;

-- Each archiver connection's session tables: the batch's partial candles and its rows per
-- (day, exchange), COPYed in and merged by the batch's transaction; ON COMMIT DELETE ROWS
-- empties them with it.
CREATE OR REPLACE FUNCTION himari_session_init() RETURNS VOID
LANGUAGE plpgsql AS $$
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS ar_candles (
        width_s         INTEGER          NOT NULL,
        bucket          TIMESTAMPTZ      NOT NULL,
        symbol          TEXT             NOT NULL,
        exchange        TEXT             NOT NULL,
        open            DOUBLE PRECISION NOT NULL,
        open_ts         TIMESTAMPTZ      NOT NULL,
        open_partition  INTEGER          NOT NULL,
        open_offset     BIGINT           NOT NULL,
        close           DOUBLE PRECISION NOT NULL,
        close_ts        TIMESTAMPTZ      NOT NULL,
        close_partition INTEGER          NOT NULL,
        close_offset    BIGINT           NOT NULL,
        high            DOUBLE PRECISION NOT NULL,
        low             DOUBLE PRECISION NOT NULL,
        volume          NUMERIC          NOT NULL,
        trade_count     BIGINT           NOT NULL,
        sum_quality     NUMERIC          NOT NULL,
        sum_price       NUMERIC          NOT NULL,
        sum_price_sq    NUMERIC          NOT NULL
    ) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE IF NOT EXISTS ar_batch_days (
        date     DATE   NOT NULL,
        exchange TEXT   NOT NULL,
        rows     BIGINT NOT NULL
    ) ON COMMIT DELETE ROWS;
END $$;

-- In key order, like the candles (sql/008): concurrent batches never deadlock on a day.
CREATE OR REPLACE FUNCTION himari_note_days() RETURNS VOID
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO market_data_days AS d (date, exchange, rows)
    SELECT date, exchange, sum(rows) FROM ar_batch_days GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (date, exchange)
    DO UPDATE SET rows = d.rows + EXCLUDED.rows, changed_at = now();
END $$;

-- The staging path this replaces.
DROP FUNCTION himari_apply_batch();
DROP TYPE himari_batch_result;
