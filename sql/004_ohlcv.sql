-- path: plain
-- OHLCV candles on plain PostgreSQL, kept exact by the archiver: each batch's transaction
-- folds the rows it really inserted (ar_inserted, so a redelivered row adds nothing) into
-- per-bucket state, and the views ohlcv_5min / ohlcv_1hour show the guide's columns.
-- open and close carry the key of the trade they came from, (timestamp, source_partition,
-- source_offset), so that rows arriving out of order still give the earliest and latest
-- trade of the bucket. Sums are NUMERIC: exact, so a candle does not depend on the order
-- its trades arrived in, and the standard deviation has no cancellation error.
-- Candles are of trades (type 'trade'); liquidations are in market_data but not in
-- candles, since the exchanges' trade streams already carry the fills behind them.
CREATE TABLE ohlcv_5min_state (
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
    sum_price_sq    NUMERIC          NOT NULL,
    PRIMARY KEY (bucket, symbol, exchange)
);
CREATE TABLE ohlcv_1hour_state (LIKE ohlcv_5min_state INCLUDING ALL);
CREATE INDEX ohlcv_5min_state_symbol ON ohlcv_5min_state (symbol, bucket DESC);
CREATE INDEX ohlcv_1hour_state_symbol ON ohlcv_1hour_state (symbol, bucket DESC);


CREATE VIEW ohlcv_5min AS
SELECT bucket, symbol, exchange, open, high, low, close,
       volume::DOUBLE PRECISION AS volume,
       trade_count,
       (sum_quality / trade_count)::DOUBLE PRECISION AS avg_quality,
       CASE WHEN trade_count > 1 THEN
           sqrt(greatest((trade_count * sum_price_sq - sum_price * sum_price)
                         / (trade_count * (trade_count - 1)), 0))::DOUBLE PRECISION
       END AS price_stddev,
       high - low AS price_range
FROM ohlcv_5min_state;

CREATE VIEW ohlcv_1hour AS
SELECT bucket, symbol, exchange, open, high, low, close,
       volume::DOUBLE PRECISION AS volume,
       trade_count,
       (sum_quality / trade_count)::DOUBLE PRECISION AS avg_quality,
       CASE WHEN trade_count > 1 THEN
           sqrt(greatest((trade_count * sum_price_sq - sum_price * sum_price)
                         / (trade_count * (trade_count - 1)), 0))::DOUBLE PRECISION
       END AS price_stddev,
       high - low AS price_range
FROM ohlcv_1hour_state;

-- Fold the batch's inserted trades into one state table, buckets of width.
CREATE FUNCTION himari_fold_candles(state REGCLASS, width INTERVAL) RETURNS VOID
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format($q$
        INSERT INTO %1$s AS s
        SELECT date_bin(%2$L, timestamp, TIMESTAMPTZ '2000-01-01 00:00:00+00'), symbol, exchange,
               (array_agg(price ORDER BY timestamp, source_partition, source_offset))[1],
               min(timestamp),
               (array_agg(source_partition ORDER BY timestamp, source_partition, source_offset))[1],
               (array_agg(source_offset ORDER BY timestamp, source_partition, source_offset))[1],
               (array_agg(price ORDER BY timestamp DESC, source_partition DESC, source_offset DESC))[1],
               max(timestamp),
               (array_agg(source_partition ORDER BY timestamp DESC, source_partition DESC, source_offset DESC))[1],
               (array_agg(source_offset ORDER BY timestamp DESC, source_partition DESC, source_offset DESC))[1],
               max(price), min(price),
               coalesce(sum(volume::NUMERIC), 0), count(*),
               sum(quality_score::NUMERIC), sum(price::NUMERIC), sum(price::NUMERIC * price::NUMERIC)
        FROM ar_inserted WHERE type = 'trade'
        GROUP BY 1, 2, 3
        ON CONFLICT (bucket, symbol, exchange) DO UPDATE SET
            open = CASE WHEN (EXCLUDED.open_ts, EXCLUDED.open_partition, EXCLUDED.open_offset)
                             < (s.open_ts, s.open_partition, s.open_offset)
                        THEN EXCLUDED.open ELSE s.open END,
            open_partition = CASE WHEN (EXCLUDED.open_ts, EXCLUDED.open_partition, EXCLUDED.open_offset)
                             < (s.open_ts, s.open_partition, s.open_offset)
                        THEN EXCLUDED.open_partition ELSE s.open_partition END,
            open_offset = CASE WHEN (EXCLUDED.open_ts, EXCLUDED.open_partition, EXCLUDED.open_offset)
                             < (s.open_ts, s.open_partition, s.open_offset)
                        THEN EXCLUDED.open_offset ELSE s.open_offset END,
            open_ts = least(EXCLUDED.open_ts, s.open_ts),
            close = CASE WHEN (EXCLUDED.close_ts, EXCLUDED.close_partition, EXCLUDED.close_offset)
                              > (s.close_ts, s.close_partition, s.close_offset)
                         THEN EXCLUDED.close ELSE s.close END,
            close_partition = CASE WHEN (EXCLUDED.close_ts, EXCLUDED.close_partition, EXCLUDED.close_offset)
                              > (s.close_ts, s.close_partition, s.close_offset)
                         THEN EXCLUDED.close_partition ELSE s.close_partition END,
            close_offset = CASE WHEN (EXCLUDED.close_ts, EXCLUDED.close_partition, EXCLUDED.close_offset)
                              > (s.close_ts, s.close_partition, s.close_offset)
                         THEN EXCLUDED.close_offset ELSE s.close_offset END,
            close_ts = greatest(EXCLUDED.close_ts, s.close_ts),
            high = greatest(EXCLUDED.high, s.high),
            low = least(EXCLUDED.low, s.low),
            volume = s.volume + EXCLUDED.volume,
            trade_count = s.trade_count + EXCLUDED.trade_count,
            sum_quality = s.sum_quality + EXCLUDED.sum_quality,
            sum_price = s.sum_price + EXCLUDED.sum_price,
            sum_price_sq = s.sum_price_sq + EXCLUDED.sum_price_sq
    $q$, state, width);
END $$;

CREATE FUNCTION himari_apply_rollups() RETURNS VOID
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM himari_fold_candles('ohlcv_5min_state', INTERVAL '5 minutes');
    PERFORM himari_fold_candles('ohlcv_1hour_state', INTERVAL '1 hour');
END $$;
