-- path: timescaledb
-- market_data on TimescaleDB: the same columns and keys as 001 (plain PostgreSQL), as a
-- hypertable of 1-day chunks, compressed after 90 days and kept 365 days (the guide's
-- policies). Not exercised by the tests here: TimescaleDB is not packaged on the CI machine
-- (docs/ARCHIVER.md, "Two storage paths").
CREATE TABLE market_data (
    timestamp        TIMESTAMPTZ      NOT NULL,
    symbol           TEXT             NOT NULL,
    exchange         TEXT             NOT NULL,
    price            DOUBLE PRECISION NOT NULL CHECK (price > 0),
    volume           DOUBLE PRECISION CHECK (volume >= 0),
    quality_score    REAL             NOT NULL CHECK (quality_score >= 0 AND quality_score <= 1),
    issues           TEXT[]           NOT NULL DEFAULT '{}',
    trade_id         TEXT,
    side             TEXT,
    type             TEXT             NOT NULL,
    processed_at     TIMESTAMPTZ,
    ingested_at      TIMESTAMPTZ      NOT NULL DEFAULT now(),
    source_topic     TEXT             NOT NULL,
    source_partition INTEGER          NOT NULL,
    source_offset    BIGINT           NOT NULL,
    CONSTRAINT market_data_source_key
        UNIQUE (source_topic, source_partition, source_offset, timestamp)
);
SELECT create_hypertable('market_data', 'timestamp', chunk_time_interval => INTERVAL '1 day');

CREATE INDEX market_data_symbol_time ON market_data (symbol, timestamp DESC);
CREATE INDEX market_data_exchange_time ON market_data (exchange, timestamp DESC);
CREATE INDEX market_data_low_quality ON market_data (quality_score) WHERE quality_score < 0.7;

ALTER TABLE market_data SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'symbol, exchange',
    timescaledb.compress_orderby = 'timestamp DESC');
SELECT add_compression_policy('market_data', INTERVAL '90 days');
SELECT add_retention_policy('market_data', INTERVAL '365 days');

-- Chunks are TimescaleDB's: nothing to create ahead or drop by hand.
CREATE FUNCTION himari_ensure_partitions(days DATE[]) RETURNS INTEGER
LANGUAGE sql AS $$ SELECT 0 $$;
CREATE FUNCTION himari_drop_partitions_before(cutoff DATE) RETURNS SETOF TEXT
LANGUAGE sql AS $$ SELECT NULL::TEXT WHERE false $$;
