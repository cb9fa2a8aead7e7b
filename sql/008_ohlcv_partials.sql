-- path: plain
-- The candles fold the batch's partial candles (ar_candles, sql/007) instead of its rows:
-- the same rules as 004 (open and close by (timestamp, source_partition, source_offset),
-- high and low, sums added in NUMERIC), applied to partials that the archiver folded from
-- the rows it claimed (services/archiver/rollups.c). A key may bring several partials (a
-- sum too large for one), hence the GROUP BY. Rows are merged in key order, so two batches
-- touching the same candles (two archivers during a rebalance) lock them in the same
-- order: one waits for the other, neither deadlocks.
CREATE OR REPLACE FUNCTION himari_fold_candles(state REGCLASS, width INTERVAL) RETURNS VOID
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format($q$
        INSERT INTO %1$s AS s
        SELECT bucket, symbol, exchange,
               (array_agg(open ORDER BY open_ts, open_partition, open_offset))[1],
               min(open_ts),
               (array_agg(open_partition ORDER BY open_ts, open_partition, open_offset))[1],
               (array_agg(open_offset ORDER BY open_ts, open_partition, open_offset))[1],
               (array_agg(close ORDER BY close_ts DESC, close_partition DESC, close_offset DESC))[1],
               max(close_ts),
               (array_agg(close_partition ORDER BY close_ts DESC, close_partition DESC, close_offset DESC))[1],
               (array_agg(close_offset ORDER BY close_ts DESC, close_partition DESC, close_offset DESC))[1],
               max(high), min(low), sum(volume), sum(trade_count),
               sum(sum_quality), sum(sum_price), sum(sum_price_sq)
        FROM ar_candles WHERE width_s = %2$s
        GROUP BY 1, 2, 3
        ORDER BY 1, 2, 3
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
    $q$, state, extract(epoch FROM width)::INTEGER);
END $$;
