-- path: plain
-- market_data on plain PostgreSQL: one row per valid trade or liquidation of quality_scores,
-- range-partitioned by day (UTC). The archiver creates partitions ahead
-- (himari_ensure_partitions) and drops those past retention (himari_drop_partitions_before).
-- A redelivered record hits market_data_source_key and adds nothing.
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
    -- The partition key must be part of a unique key on a partitioned table; a record's
    -- timestamp never changes, so the source coordinates alone decide.
    CONSTRAINT market_data_source_key
        UNIQUE (source_topic, source_partition, source_offset, timestamp)
) PARTITION BY RANGE (timestamp);

-- The guide's indexes.
CREATE INDEX market_data_symbol_time ON market_data (symbol, timestamp DESC);
CREATE INDEX market_data_exchange_time ON market_data (exchange, timestamp DESC);
CREATE INDEX market_data_low_quality ON market_data (quality_score) WHERE quality_score < 0.7;

-- Create the daily partitions of these days (UTC) that do not exist yet; returns how many
-- it created. Serialised by an advisory lock so that two archivers never race on one day.
CREATE FUNCTION himari_ensure_partitions(days DATE[]) RETURNS INTEGER
LANGUAGE plpgsql AS $$
DECLARE
    d DATE;
    created INTEGER := 0;
BEGIN
    FOREACH d IN ARRAY days LOOP
        IF to_regclass(format('market_data_%s', to_char(d, 'YYYYMMDD'))) IS NULL THEN
            PERFORM pg_advisory_xact_lock(hashtext('himari.market_data.partitions'));
            IF to_regclass(format('market_data_%s', to_char(d, 'YYYYMMDD'))) IS NULL THEN
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF market_data FOR VALUES FROM (%L) TO (%L)',
                    format('market_data_%s', to_char(d, 'YYYYMMDD')),
                    d::text || ' 00:00:00+00', (d + 1)::text || ' 00:00:00+00');
                created := created + 1;
            END IF;
        END IF;
    END LOOP;
    RETURN created;
END $$;

-- Drop the daily partitions wholly before cutoff (UTC); returns their names.
CREATE FUNCTION himari_drop_partitions_before(cutoff DATE) RETURNS SETOF TEXT
LANGUAGE plpgsql AS $$
DECLARE
    part TEXT;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('himari.market_data.partitions'));
    FOR part IN
        SELECT c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'market_data'::regclass
          AND c.relname ~ '^market_data_[0-9]{8}$'
          AND to_date(substr(c.relname, 13), 'YYYYMMDD') < cutoff
        ORDER BY c.relname
    LOOP
        EXECUTE format('DROP TABLE %I', part);
        RETURN NEXT part;
    END LOOP;
END $$;
