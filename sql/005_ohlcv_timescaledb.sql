-- path: timescaledb
-- transaction: none
-- OHLCV candles on TimescaleDB: the guide's continuous aggregates and refresh policies,
-- with the columns of 004's views (price_stddev and price_range on both). A continuous
-- aggregate cannot be created inside a transaction, hence "transaction: none": the runner
-- sends this file alone and records it after it succeeded; every statement is idempotent.
-- Not exercised by the tests here (TimescaleDB is not packaged on the CI machine).
CREATE MATERIALIZED VIEW IF NOT EXISTS ohlcv_5min
WITH (timescaledb.continuous) AS
SELECT time_bucket('5 minutes', timestamp) AS bucket, symbol, exchange,
       first(price, timestamp) AS open, max(price) AS high, min(price) AS low,
       last(price, timestamp) AS close, sum(volume) AS volume, count(*) AS trade_count,
       avg(quality_score)::DOUBLE PRECISION AS avg_quality, stddev(price) AS price_stddev,
       max(price) - min(price) AS price_range
FROM market_data WHERE type = 'trade'
GROUP BY bucket, symbol, exchange
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS ohlcv_1hour
WITH (timescaledb.continuous) AS
SELECT time_bucket('1 hour', timestamp) AS bucket, symbol, exchange,
       first(price, timestamp) AS open, max(price) AS high, min(price) AS low,
       last(price, timestamp) AS close, sum(volume) AS volume, count(*) AS trade_count,
       avg(quality_score)::DOUBLE PRECISION AS avg_quality, stddev(price) AS price_stddev,
       max(price) - min(price) AS price_range
FROM market_data WHERE type = 'trade'
GROUP BY bucket, symbol, exchange
WITH NO DATA;

SELECT add_continuous_aggregate_policy('ohlcv_5min', start_offset => INTERVAL '2 hours',
    end_offset => INTERVAL '1 minute', schedule_interval => INTERVAL '1 minute',
    if_not_exists => true);
SELECT add_continuous_aggregate_policy('ohlcv_1hour', start_offset => INTERVAL '3 hours',
    end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '30 minutes',
    if_not_exists => true);

-- The aggregates follow market_data by themselves: nothing to fold per batch.
CREATE OR REPLACE FUNCTION himari_apply_rollups() RETURNS VOID
LANGUAGE sql AS $$ SELECT $$;
