-- Records of quality_scores that market_data cannot take, each kept whole with why: a
-- PARSE_ERROR record, a tick without a price or with price <= 0, a transfer (not a trade),
-- a record outside retention. Every input record is in exactly one of market_data and
-- market_data_rejects; a redelivered one adds nothing to either.
CREATE TABLE market_data_rejects (
    source_topic     TEXT        NOT NULL,
    source_partition INTEGER     NOT NULL,
    source_offset    BIGINT      NOT NULL,
    reason           TEXT        NOT NULL,  -- a code: parse_error, price_not_positive, ...
    field            TEXT,                  -- the field at fault, when one is
    detail           TEXT        NOT NULL,  -- a sentence for a person
    symbol           TEXT,
    exchange         TEXT,
    timestamp        TIMESTAMPTZ,
    record           BYTEA       NOT NULL,  -- the Kafka record's value, byte for byte
    rejected_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (source_topic, source_partition, source_offset)
);
CREATE INDEX market_data_rejects_reason ON market_data_rejects (reason, rejected_at DESC);

-- Each archiver connection stages a batch in session temp tables (COPY into ar_stage,
-- then himari_apply_batch()); ON COMMIT DELETE ROWS empties them with the transaction.
CREATE FUNCTION himari_session_init() RETURNS VOID
LANGUAGE plpgsql AS $$
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS ar_stage (
        timestamp        TIMESTAMPTZ,
        symbol           TEXT,
        exchange         TEXT,
        price            DOUBLE PRECISION,
        volume           DOUBLE PRECISION,
        quality_score    REAL,
        issues           TEXT[],
        trade_id         TEXT,
        side             TEXT,
        type             TEXT,
        processed_at     TIMESTAMPTZ,
        source_topic     TEXT NOT NULL,
        source_partition INTEGER NOT NULL,
        source_offset    BIGINT NOT NULL,
        reject_reason    TEXT,
        reject_field     TEXT,
        reject_detail    TEXT,
        record           BYTEA
    ) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE IF NOT EXISTS ar_inserted (
        timestamp        TIMESTAMPTZ,
        symbol           TEXT,
        exchange         TEXT,
        price            DOUBLE PRECISION,
        volume           DOUBLE PRECISION,
        quality_score    REAL,
        type             TEXT,
        source_partition INTEGER,
        source_offset    BIGINT
    ) ON COMMIT DELETE ROWS;
END $$;

-- What himari_apply_batch() reports.
CREATE TYPE himari_batch_result AS (inserted BIGINT, duplicates BIGINT, rejected BIGINT);

-- Move the staged rows into market_data and market_data_rejects (a row already there adds
-- nothing); himari_note_days() (sql/006) counts the rows really inserted per day for the
-- cold archive and himari_apply_rollups() (path-specific) folds them into the candles.
-- Runs in the batch's transaction.
CREATE FUNCTION himari_apply_batch() RETURNS himari_batch_result
LANGUAGE plpgsql AS $$
DECLARE
    r himari_batch_result;
    staged BIGINT;
BEGIN
    SELECT count(*) FILTER (WHERE reject_reason IS NULL) INTO staged FROM ar_stage;
    WITH ins AS (
        INSERT INTO market_data (timestamp, symbol, exchange, price, volume, quality_score,
                                 issues, trade_id, side, type, processed_at, source_topic,
                                 source_partition, source_offset)
        SELECT timestamp, symbol, exchange, price, volume, quality_score, issues, trade_id,
               side, type, processed_at, source_topic, source_partition, source_offset
        FROM ar_stage WHERE reject_reason IS NULL
        ON CONFLICT DO NOTHING
        RETURNING timestamp, symbol, exchange, price, volume, quality_score, type,
                  source_partition, source_offset)
    INSERT INTO ar_inserted SELECT * FROM ins;
    GET DIAGNOSTICS r.inserted = ROW_COUNT;
    r.duplicates := staged - r.inserted;
    INSERT INTO market_data_rejects (source_topic, source_partition, source_offset, reason,
                                     field, detail, symbol, exchange, timestamp, record)
    SELECT source_topic, source_partition, source_offset, reject_reason, reject_field,
           reject_detail, symbol, exchange, timestamp, record
    FROM ar_stage WHERE reject_reason IS NOT NULL
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS r.rejected = ROW_COUNT;
    PERFORM himari_note_days();
    PERFORM himari_apply_rollups();
    RETURN r;
END $$;
