#!/usr/bin/env python3
"""seed_operator.py: the seed's Python quality operator, re-implemented over JSONL as a peer.

    seed_operator.py [--clock wall|watermark] [--on-exception mark|stop] [--guard-zero-price]
                     [INPUT|-] > OUTPUT

The seed (docs of HIMARI Opus 1, section "Quality Validation Operator (Python)") runs
ParseMarketData -> key_by(symbol) -> QualityValidationOperator in PyFlink. This file
repeats its logic line for line without Flink, so that the ingest-validator's replay can
be compared with it on the same files (bench/seed-compare.sh): one quality record per
input line, in order, on stdout, shaped like the seed's _create_quality_output. It is a
benchmark peer, never a validator to deploy, and it must not "fix" the seed's logic
beyond the options below (each named in the stderr summary).

Kept as in the seed, defects included:
  * state keyed BY SYMBOL only (all exchanges of a symbol share last timestamp/price/EMAs);
  * the EMAs and the last price/timestamp are updated by every tick, good or bad;
  * thresholds, weights, check order, VALID_EXCHANGES, the str(price) decimals check;
  * a line is bytes -> str as Flink's SimpleStringSchema does (invalid UTF-8 becomes
    U+FFFD, so it is not a parse error), then json.loads (NaN/Infinity accepted),
    ISO timestamps -> ms via datetime.fromisoformat, float(price), float(volume),
    exchange.lower(); any exception there -> a PARSE_ERROR record with score 0, key "ERROR";
  * message_count state exists and is never used (as in the seed); the 24 h state TTL is
    processing-time based and never reached in a replay, so it is not modelled.

Where the seed has no defined behaviour in a replay:
  --clock watermark (default): "now" for the freshness check is the largest timestamp
      of the records before this one (the first record uses its own). A record the
      check flags FUTURE_TIMESTAMP does not advance it, as a wall clock would not jump
      forward for a bogus tick. The most charitable reading of datetime.utcnow() for
      historical data.
  --clock wall: datetime.utcnow().timestamp() per record, literally (every historical
      tick is then STALE_DATA).
  --on-exception mark (default): process_element can raise (a zero last price gives
      ZeroDivisionError; a missing timestamp gives TypeError). In Flink that fails the
      job, which restarts from the checkpoint and meets the same record again. Here
      the record gets score 0, issues ["OPERATOR_EXCEPTION"] and an "exception" field,
      the state updates made before the raise are kept (as a try/except around the
      seed's body would), and the run goes on. The summary counts them.
  --on-exception stop: the literal outcome: stop at the first exception, exit 3.
  --guard-zero-price: NOT the seed. Skip the price-move check when the last price is
      exactly 0 (the smallest change that stops a zero-price tick from making every
      later tick of that symbol raise). Off by default.

Summary on stderr, one JSON line: records, seconds, records/s, clock and options,
parse errors, operator exceptions (by type, first line). Python 3 standard library only.
"""
import argparse
import json
import math
import sys
import time
from datetime import datetime

VALID_EXCHANGES = {'binance', 'kraken', 'bybit', 'deribit', 'coinbase'}


class SeedStop(Exception):
    """--on-exception stop: the seed's job would have failed on this record."""


def parse_market_data(value):
    """ParseMarketData.map: (key, data); errors -> ('ERROR', {'error': ...})."""
    try:
        data = json.loads(value)
        timestamp = data.get('timestamp')
        if isinstance(timestamp, str):
            dt = datetime.fromisoformat(timestamp.replace('Z', '+00:00'))
            timestamp = int(dt.timestamp() * 1000)
        return (
            data['symbol'],
            {
                'timestamp': timestamp,
                'symbol': data['symbol'],
                'price': float(data['price']),
                'volume': float(data['volume']),
                'exchange': data['exchange'].lower(),
                'raw': data,
            },
        )
    except Exception as e:  # noqa: BLE001 - the seed catches everything here
        return ('ERROR', {'error': str(e)})


class KeyState:
    """The seed's five ValueStates for one key; None = never set."""

    __slots__ = ('last_timestamp', 'last_price', 'price_ema', 'volume_ema', 'message_count')

    def __init__(self):
        self.last_timestamp = None
        self.last_price = None
        self.price_ema = None
        self.volume_ema = None
        self.message_count = None  # declared by the seed, never read or written


class SeedOperator:
    """QualityValidationOperator.process_element and _create_quality_output."""

    def __init__(self, clock, guard_zero_price):
        self.clock = clock
        self.guard_zero_price = guard_zero_price
        self.states = {}
        self.watermark = None  # --clock watermark: max timestamp seen before this record

    def now_ms(self, current_ts):
        if self.clock == 'wall':
            return int(datetime.utcnow().timestamp() * 1000)
        if self.watermark is None:
            return current_ts
        return self.watermark

    def advance_watermark(self, current_ts, issues):
        if self.clock != 'watermark' or 'FUTURE_TIMESTAMP' in issues:
            return
        if isinstance(current_ts, (int, float)) and not isinstance(current_ts, bool) \
                and math.isfinite(current_ts):
            if self.watermark is None or current_ts > self.watermark:
                self.watermark = current_ts

    def process_element(self, value):
        symbol, data = value

        if 'error' in data:
            return self.create_quality_output(symbol, data, 0.0, ['PARSE_ERROR'])

        st = self.states.get(symbol)
        if st is None:
            st = self.states[symbol] = KeyState()

        quality_score = 1.0
        issues = []

        # CHECK 1: schema
        if data['price'] <= 0:
            quality_score -= 0.25
            issues.append('INVALID_PRICE_NEGATIVE')

        if data['volume'] < 0:
            quality_score -= 0.20
            issues.append('INVALID_VOLUME_NEGATIVE')

        # CHECK 2: exchange
        if data['exchange'] not in VALID_EXCHANGES:
            quality_score -= 0.15
            issues.append('UNKNOWN_EXCHANGE')

        # CHECK 3: temporal ordering
        last_ts = st.last_timestamp
        current_ts = data['timestamp']

        if last_ts is not None:
            if current_ts < last_ts:
                quality_score -= 0.30
                issues.append('OUT_OF_ORDER')
            elif current_ts == last_ts:
                quality_score -= 0.10
                issues.append('DUPLICATE_TIMESTAMP')
            elif current_ts - last_ts > 60000:
                quality_score -= 0.05
                issues.append('LARGE_GAP')

        st.last_timestamp = current_ts

        # CHECK 4: price deviation
        last_price = st.last_price
        price_ema = st.price_ema

        if last_price is not None and not (self.guard_zero_price and last_price == 0):
            pct_change = abs(data['price'] - last_price) / last_price
            if pct_change > 0.10:
                quality_score -= 0.20
                issues.append('EXTREME_PRICE_MOVE')
            elif pct_change > 0.05:
                quality_score -= 0.05
                issues.append('LARGE_PRICE_MOVE')

        if price_ema is None:
            price_ema = data['price']
        else:
            price_ema = 0.1 * data['price'] + 0.9 * price_ema
        st.price_ema = price_ema
        st.last_price = data['price']

        if price_ema > 0:
            ema_deviation = abs(data['price'] - price_ema) / price_ema
            if ema_deviation > 0.15:
                quality_score -= 0.10
                issues.append('PRICE_ANOMALY')

        # CHECK 5: volume
        volume_ema = st.volume_ema

        if volume_ema is None:
            volume_ema = data['volume']
        else:
            volume_ema = 0.1 * data['volume'] + 0.9 * volume_ema
        st.volume_ema = volume_ema

        if volume_ema > 0:
            volume_ratio = data['volume'] / volume_ema
            if volume_ratio > 100:
                quality_score -= 0.15
                issues.append('EXTREME_VOLUME_SPIKE')
            elif volume_ratio > 10:
                quality_score -= 0.05
                issues.append('VOLUME_SPIKE')

        # CHECK 6: decimal precision
        price_str = str(data['price'])
        if '.' in price_str:
            decimals = len(price_str.split('.')[1])
            if decimals > 8:
                quality_score -= 0.05
                issues.append('EXCESSIVE_PRECISION')

        # CHECK 7: freshness
        now_ms = self.now_ms(current_ts)
        latency_ms = now_ms - current_ts

        if latency_ms > 30000:
            quality_score -= 0.15
            issues.append('STALE_DATA')
        elif latency_ms > 10000:
            quality_score -= 0.05
            issues.append('DELAYED_DATA')
        elif latency_ms < -5000:
            quality_score -= 0.20
            issues.append('FUTURE_TIMESTAMP')

        self.advance_watermark(current_ts, issues)

        quality_score = max(0.0, min(1.0, quality_score))

        return self.create_quality_output(symbol, data, quality_score, issues)

    @staticmethod
    def create_quality_output(symbol, data, score, issues, extra=None):
        out = {
            'symbol': symbol,
            'timestamp': data.get('timestamp', 0),
            'quality_score': round(score, 3),
            'issues': issues,
            'issue_count': len(issues),
            'processed_at': datetime.utcnow().isoformat(),
            'original_data': data.get('raw', {}),
        }
        if extra:
            out.update(extra)
        return json.dumps(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument('input', nargs='?', default='-', help='JSONL file, or - for stdin')
    ap.add_argument('--clock', choices=('wall', 'watermark'), default='watermark')
    ap.add_argument('--on-exception', choices=('mark', 'stop'), default='mark')
    ap.add_argument('--guard-zero-price', action='store_true',
                    help='not the seed: skip the move check when the last price is 0')
    a = ap.parse_args()

    op = SeedOperator(a.clock, a.guard_zero_price)
    inp = sys.stdin.buffer if a.input == '-' else open(a.input, 'rb')
    out = sys.stdout
    n = parse_errors = exceptions = 0
    exc_types = {}
    first_exc = None
    status = 0
    t0 = time.perf_counter()
    try:
        for raw in inp:
            n += 1
            if raw.endswith(b'\n'):
                raw = raw[:-1]
            # Flink's SimpleStringSchema: new String(bytes, UTF_8) replaces bad bytes.
            value = raw.decode('utf-8', errors='replace')
            keyed = parse_market_data(value)
            if keyed[0] == 'ERROR' and 'error' in keyed[1]:
                parse_errors += 1
            try:
                line = op.process_element(keyed)
            except Exception as e:  # noqa: BLE001 - in Flink this fails the job
                exceptions += 1
                name = type(e).__name__
                exc_types[name] = exc_types.get(name, 0) + 1
                if first_exc is None:
                    first_exc = {'line': n, 'type': name, 'message': str(e)}
                if a.on_exception == 'stop':
                    raise SeedStop from e
                line = op.create_quality_output(
                    keyed[0], keyed[1],
                    0.0, ['OPERATOR_EXCEPTION'], {'exception': f'{name}: {e}'})
            out.write(line)
            out.write('\n')
    except SeedStop:
        status = 3
    finally:
        out.flush()
        if inp is not sys.stdin.buffer:
            inp.close()
    secs = time.perf_counter() - t0
    summary = {
        'event': 'seed_operator_done', 'records': n, 'seconds': round(secs, 3),
        'records_per_s': int(n / secs) if secs > 0 else 0,
        'clock': a.clock, 'on_exception': a.on_exception,
        'guard_zero_price': a.guard_zero_price, 'keys': len(op.states),
        'parse_errors': parse_errors, 'operator_exceptions': exceptions,
        'exception_types': exc_types, 'first_exception': first_exc,
    }
    if status == 3:
        summary['stopped_at_line'] = n
    print(json.dumps(summary), file=sys.stderr)
    return status


if __name__ == '__main__':
    sys.exit(main())
