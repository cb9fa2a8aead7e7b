/*
 * quality.c: the quality_scores record (himari/quality.h): the issue-code table as
 * functions, the writer the ingest-validator emits records with, and the zero-copy
 * decoder every downstream service reads them with.
 *
 * Writer. Field order is fixed (consumers and the replay-equals-Kafka test compare
 * bytes): symbol, exchange, timestamp, price, volume, trade_id, side, type, [asset,
 * amount, from, to, tx_hash for transfers], quality_score, issues, issue_count,
 * processed_at, [error], original_data[, original_bytes]. Hot path (once per input
 * record): numbers are copied from the input's own text when it is already strict JSON
 * and in range (exact and cheaper than formatting a double), the original object is
 * copied verbatim when the decoder found it strict (else embedded as a string),
 * and code names are precomputed JSON literals. Everything written is valid JSON: a value
 * the tick decoder did not accept is null.
 *
 * Decoder. The tick's fields are read by the tick decoder's own member loop
 * (hm_tick_decode_object in tick.c, same states and semantics); the members it does not
 * know come to quality_member() here. The scanner is json_scan.h's, with NaN/Infinity
 * refused (the writer never emits them; a number out of range, which it never emits
 * either, is read and clears tick.strict_json) and one more level of nesting allowed, because
 * original_data holds a whole raw record one level down. Unknown members and unknown
 * issue names are skipped and counted, never errors: a newer validator may add them.
 *
 * Nothing here may allocate (beyond the hm_buf's growth), keep state or block.
 */
#include "himari/quality.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "json_scan.h"

_Static_assert(HM_QUALITY_MAX_DEPTH <= 32, "the nesting stack is a 32-bit mask");
_Static_assert(HM_QFIELD_COUNT_ <= 32, "seen quality keys are a 32-bit mask");

/* ---- the code table ------------------------------------------------------------------- */

static const char *const k_names[HM_QCODE_COUNT] = {
#define HM_QCODE_NAME_(name, weight, holds) [HM_Q_##name] = #name,
    HM_QCODES(HM_QCODE_NAME_)
#undef HM_QCODE_NAME_
};

static const uint8_t k_name_lens[HM_QCODE_COUNT] = {
#define HM_QCODE_LEN_(name, weight, holds) [HM_Q_##name] = sizeof(#name) - 1,
    HM_QCODES(HM_QCODE_LEN_)
#undef HM_QCODE_LEN_
};

static const double k_weights[HM_QCODE_COUNT] = {
#define HM_QCODE_WEIGHT_(name, weight, holds) [HM_Q_##name] = weight,
    HM_QCODES(HM_QCODE_WEIGHT_)
#undef HM_QCODE_WEIGHT_
};

static const unsigned k_holds[HM_QCODE_COUNT] = {
#define HM_QCODE_HOLDS_(name, weight, holds) [HM_Q_##name] = (holds),
    HM_QCODES(HM_QCODE_HOLDS_)
#undef HM_QCODE_HOLDS_
};

/* The codes in byte order of their names, for the binary search of hm_qcode_by_name_n():
 * sorted once, at the first lookup, so a code added to HM_QCODES needs nothing here. */
static uint8_t k_by_name[HM_QCODE_COUNT];
static pthread_once_t k_by_name_once = PTHREAD_ONCE_INIT;

static int cmp_code_names(const void *a, const void *b) {
    return strcmp(k_names[*(const uint8_t *)a], k_names[*(const uint8_t *)b]);
}

static void sort_names(void) {
    for (unsigned c = 0; c < HM_QCODE_COUNT; c++)
        k_by_name[c] = (uint8_t)c;
    qsort(k_by_name, HM_QCODE_COUNT, sizeof(k_by_name[0]), cmp_code_names);
}

const char *hm_qcode_name(hm_qcode c) {
    assert((unsigned)c < HM_QCODE_COUNT);
    return (unsigned)c < HM_QCODE_COUNT ? k_names[c] : "UNKNOWN";
}

double hm_qcode_default_weight(hm_qcode c) {
    assert((unsigned)c < HM_QCODE_COUNT);
    return (unsigned)c < HM_QCODE_COUNT ? k_weights[c] : 0.0;
}

unsigned hm_qcode_holds(hm_qcode c) {
    assert((unsigned)c < HM_QCODE_COUNT);
    return (unsigned)c < HM_QCODE_COUNT ? k_holds[c] : 0u;
}

hm_qcodeset hm_qcodes_holding(unsigned holds) {
    hm_qcodeset set = 0;
    for (int c = 0; c < HM_QCODE_COUNT; c++)
        if (k_holds[c] & holds) set |= HM_QBIT(c);
    return set;
}

int hm_qcode_by_name_n(const char *s, size_t n) {
    if (!s) return -ENOENT;
    pthread_once(&k_by_name_once, sort_names);
    size_t lo = 0, hi = HM_QCODE_COUNT;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        unsigned c = k_by_name[mid];
        size_t cn = k_name_lens[c];
        int r = memcmp(s, k_names[c], n < cn ? n : cn);
        if (r == 0) r = (n > cn) - (n < cn);
        if (r == 0) return (int)c;
        if (r < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -ENOENT;
}

int hm_qcode_by_name(const char *name) {
    return name ? hm_qcode_by_name_n(name, strlen(name)) : -ENOENT;
}

/* ---- writing -------------------------------------------------------------------------- */

/* "\"NAME\"" per code, built by the preprocessor. */
static const struct {
    const char *s;
    uint8_t n;
} k_code_json[HM_QCODE_COUNT] = {
#define HM_QCODE_JSON_(name, weight, holds) [HM_Q_##name] = {"\"" #name "\"", sizeof(#name) + 1},
    HM_QCODES(HM_QCODE_JSON_)
#undef HM_QCODE_JSON_
};

void hm_quality_write_issues(hm_buf *b, hm_qcodeset codes) {
    hm_buf_putc(b, '[');
    bool first = true;
    for (hm_qcodeset m = codes; m; m &= m - 1) {
        int c = __builtin_ctzll(m);
        if (!first) hm_buf_putc(b, ',');
        first = false;
        hm_buf_append(b, k_code_json[c].s, k_code_json[c].n);
    }
    hm_buf_putc(b, ']');
}

/* A string field the decoder accepted (state OK): its bytes hold no quote, backslash
 * or control character (those need escapes, and escaped identifiers are INVALID) and
 * are valid UTF-8, but hm_json_str() is cheap on plain ASCII and keeps this safe
 * whatever a future decoder lets through. */
static void put_span_or_null(hm_buf *b, hm_fstate st, hm_span s) {
    if (st == HM_F_OK)
        hm_json_str(b, s.p, s.len);
    else
        HM_BUF_PUT_LIT(b, "null");
}

static void put_exchange(hm_buf *b, const hm_tick *t) {
    if (t->st[HM_FIELD_EXCHANGE] != HM_F_OK) {
        HM_BUF_PUT_LIT(b, "null");
        return;
    }
    char small[64];
    if (t->exchange.len <= sizeof(small)) {
        for (uint32_t i = 0; i < t->exchange.len; i++) {
            char c = t->exchange.p[i];
            small[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
        }
        hm_json_str(b, small, t->exchange.len);
        return;
    }
    /* A long name (never a configured one): lower-case a heap copy. */
    hm_buf tmp = HM_BUF_INIT;
    hm_buf_append(&tmp, t->exchange.p, t->exchange.len);
    for (size_t i = 0; i < tmp.len; i++)
        if (tmp.data[i] >= 'A' && tmp.data[i] <= 'Z') tmp.data[i] = (char)(tmp.data[i] + 32);
    hm_json_str(b, tmp.data, tmp.len);
    hm_buf_free(&tmp);
}

/* The exact test for number_text_in_range(): text is JSON number grammar. */
static COLD bool number_text_out_of_range(hm_span text) {
    numscan ns;
    const char *bad;
    const char *e = scan_number(text.p, text.p + text.len, &ns, &bad);
    assert(e == text.p + text.len);
    return number_check_range(&ns, text.len) && number_out_of_range(&ns, text.p, e);
}

/* Whether a number's own text (JSON grammar) may be copied into the record: not when it
 * is out of range (json_scan.h), as a 40-digit price is, given as a token or as a string.
 * v is its value, finite (the field is OK). Quick: a text of at most 18 bytes whose value
 * lies within 1e-290..1e290 breaks no rule (an integer of at most 18 digits; at most 12
 * digits after the point before an exponent above 308, which needs a value of 1e296 or
 * more; no underflow; a scale above 16383 needs a tiny value or a zero). */
static inline bool number_text_in_range(hm_span text, double v) {
    double a = fabs(v);
    if (HM_LIKELY(text.len <= 18 && a > 1e-290 && a < 1e290)) return true;
    return !number_text_out_of_range(text);
}

/* Inlined at its three calls (the hot path of the writer). */
static HOT_INLINE void put_number(hm_buf *b, hm_fstate st, double v, hm_span text) {
    if (st != HM_F_OK) {
        HM_BUF_PUT_LIT(b, "null");
        return;
    }
    if (hm_json_is_number(text.p, text.len) && number_text_in_range(text, v))
        hm_buf_append(b, text.p, text.len);
    else
        hm_json_double(b, v); /* the shortest form that reads back: always in range */
}

static void put_iso(hm_buf *b, const char *iso) {
    hm_buf_putc(b, '"');
    hm_buf_append(b, iso, 24);
    hm_buf_putc(b, '"');
}

void hm_quality_write(hm_buf *b, const hm_tick *t, hm_qcodeset codes, double score,
                      const char *processed_at) {
    hm_buf_reserve(b, 256 + t->raw.len);
    HM_BUF_PUT_LIT(b, "{\"symbol\":");
    put_span_or_null(b, t->st[HM_FIELD_SYMBOL], t->symbol);
    HM_BUF_PUT_LIT(b, ",\"exchange\":");
    put_exchange(b, t);
    HM_BUF_PUT_LIT(b, ",\"timestamp\":");
    if (t->st[HM_FIELD_TIMESTAMP] == HM_F_OK)
        hm_buf_i64(b, t->ts_ms);
    else
        HM_BUF_PUT_LIT(b, "null");
    bool transfer = t->kind == HM_KIND_TRANSFER;
    HM_BUF_PUT_LIT(b, ",\"price\":");
    put_number(b, t->st[HM_FIELD_PRICE], t->price, t->price_text);
    HM_BUF_PUT_LIT(b, ",\"volume\":");
    put_number(b, t->st[HM_FIELD_VOLUME], t->volume, t->volume_text);
    HM_BUF_PUT_LIT(b, ",\"trade_id\":");
    put_span_or_null(b, t->st[HM_FIELD_TRADE_ID], t->trade_id);
    HM_BUF_PUT_LIT(b, ",\"side\":");
    if (t->st[HM_FIELD_SIDE] == HM_F_OK)
        hm_json_cstr(b, hm_side_name(t->side));
    else
        HM_BUF_PUT_LIT(b, "null");
    HM_BUF_PUT_LIT(b, ",\"type\":\"");
    hm_buf_puts(b, hm_kind_name(t->kind));
    hm_buf_putc(b, '"');
    if (transfer) {
        HM_BUF_PUT_LIT(b, ",\"asset\":");
        put_span_or_null(b, t->st[HM_FIELD_ASSET], t->asset);
        /* The amount itself: a transfer that gives "volume" too keeps both. */
        HM_BUF_PUT_LIT(b, ",\"amount\":");
        put_number(b, t->st[HM_FIELD_AMOUNT], t->amount, t->amount_text);
        HM_BUF_PUT_LIT(b, ",\"from\":");
        put_span_or_null(b, t->st[HM_FIELD_FROM], t->from);
        HM_BUF_PUT_LIT(b, ",\"to\":");
        put_span_or_null(b, t->st[HM_FIELD_TO], t->to);
        HM_BUF_PUT_LIT(b, ",\"tx_hash\":");
        put_span_or_null(b, t->st[HM_FIELD_TX_HASH], t->tx_hash);
    }
    HM_BUF_PUT_LIT(b, ",\"quality_score\":");
    hm_json_fixed3(b, score);
    HM_BUF_PUT_LIT(b, ",\"issues\":");
    hm_quality_write_issues(b, codes);
    HM_BUF_PUT_LIT(b, ",\"issue_count\":");
    hm_buf_u64(b, (uint64_t)__builtin_popcountll(codes));
    HM_BUF_PUT_LIT(b, ",\"processed_at\":");
    put_iso(b, processed_at);
    HM_BUF_PUT_LIT(b, ",\"original_data\":");
    /* NaN/Infinity tokens are not JSON, and a number token out of range (1e400, a 40-digit
     * integer, anywhere in the record), though RFC 8259 grammar, is refused by common
     * parsers (jansson, PostgreSQL): the decoder clears strict_json for both, and such a
     * record is embedded as a string. */
    if (t->strict_json)
        hm_buf_append(b, t->raw.p, t->raw.len);
    else
        hm_json_str(b, t->raw.p, t->raw.len);
    hm_buf_putc(b, '}');
}

void hm_quality_write_parse_error(hm_buf *b, const char *data, size_t len, bool oversized,
                                  const char *error, const char *processed_at) {
    HM_BUF_PUT_LIT(b, "{\"symbol\":null,\"exchange\":null,\"timestamp\":null,\"price\":null,"
                      "\"volume\":null,\"trade_id\":null,\"side\":null,\"type\":null,"
                      "\"quality_score\":0.000,\"issues\":[\"PARSE_ERROR\"],\"issue_count\":1,"
                      "\"processed_at\":");
    put_iso(b, processed_at);
    HM_BUF_PUT_LIT(b, ",\"error\":");
    hm_json_cstr(b, error);
    HM_BUF_PUT_LIT(b, ",\"original_data\":");
    if (oversized) {
        /* The bytes are on the dead-letter topic; a copy here would defeat the limit. */
        HM_BUF_PUT_LIT(b, "null,\"original_bytes\":");
        hm_buf_u64(b, len);
    } else {
        hm_json_str(b, data, len);
    }
    hm_buf_putc(b, '}');
}

/* ---- decoding ------------------------------------------------------------------------- */

static const char *const k_qfield_names[HM_QFIELD_COUNT_] = {
    [HM_QFIELD_SCORE] = "quality_score",
    [HM_QFIELD_ISSUES] = "issues",
    [HM_QFIELD_ISSUE_COUNT] = "issue_count",
    [HM_QFIELD_PROCESSED_AT] = "processed_at",
    [HM_QFIELD_ERROR] = "error",
    [HM_QFIELD_ORIGINAL] = "original_data",
    [HM_QFIELD_ORIGINAL_BYTES] = "original_bytes",
};

const char *hm_qfield_name(hm_qfield f) {
    if ((unsigned)f >= HM_QFIELD_COUNT_) return "unknown";
    return k_qfield_names[f];
}

/* The decoder's state: the scanner's first, so quality_member() can cast back. */
typedef struct qdec {
    dec d;
    hm_quality *q;
    uint32_t seen; /* quality fields read so far, bit per hm_qfield */
} qdec;

/* The quality field named by key (raw bytes without escapes), or -1. */
static int match_qkey(const char *k, uint32_t n) {
#define IS(lit) (memcmp(k, lit, sizeof(lit) - 1) == 0)
    switch (n) {
        case 5:
            if (IS("error")) return HM_QFIELD_ERROR;
            break;
        case 6:
            if (IS("issues")) return HM_QFIELD_ISSUES;
            break;
        case 11:
            if (IS("issue_count")) return HM_QFIELD_ISSUE_COUNT;
            break;
        case 12:
            if (IS("processed_at")) return HM_QFIELD_PROCESSED_AT;
            break;
        case 13:
            if (IS("quality_score")) return HM_QFIELD_SCORE;
            if (IS("original_data")) return HM_QFIELD_ORIGINAL;
            break;
        case 14:
            if (IS("original_bytes")) return HM_QFIELD_ORIGINAL_BYTES;
            break;
        default:
            break;
    }
    return -1;
#undef IS
}

/* An issue name written with escapes: never by our writer, but it is valid JSON. */
static COLD int code_by_escaped_name(const char *s, uint32_t n) {
    char buf[32];
    int o = unescape_name(s, n, buf, sizeof(buf));
    return o < 0 ? -ENOENT : hm_qcode_by_name_n(buf, (size_t)o);
}

/* "issues": an array of code names. A known name sets its bit, an unknown one is counted;
 * an element that is not a string makes the field HM_F_INVALID (the strings still count). */
static const char *read_issue_array(qdec *qd, const char *p);

static const char *read_issues(qdec *qd, const char *p) {
    const char *close = read_issue_array(qd, p);
    if (close && *p == '[') qd->q->issues_text = span_of(p, (uint32_t)(close - p));
    return close;
}

static const char *read_issue_array(qdec *qd, const char *p) {
    dec *d = &qd->d;
    hm_quality *q = qd->q;
    const char *end = d->end;
    hm_fstate *st = &q->st[HM_QFIELD_ISSUES];
    if (*p != '[') {
        val v = {0};
        p = read_value(d, p, &v);
        *st = v.type == V_NULL ? HM_F_NULL : HM_F_WRONG_TYPE;
        return p;
    }
    *st = HM_F_OK;
    p = skip_ws(p + 1, end);
    if (p >= end) return fail_eof(d);
    if (*p == ']') return p + 1;
    for (;;) {
        if (HM_LIKELY(*p == '"')) {
            bool esc = false;
            const char *close = scan_string(d, p, &esc);
            if (!close) return NULL;
            uint32_t n = (uint32_t)(close - (p + 1));
            int c = HM_LIKELY(!esc) ? hm_qcode_by_name_n(p + 1, n) : code_by_escaped_name(p + 1, n);
            if (c >= 0)
                q->codes |= HM_QBIT(c);
            else
                q->unknown_codes++;
            p = close + 1;
        } else if (*p == '{' || *p == '[') {
            p = skip_container(d, p, 2); /* inside the record and the array */
            if (!p) return NULL;
            *st = HM_F_INVALID;
        } else {
            val v = {0};
            p = read_value(d, p, &v);
            if (!p) return NULL;
            *st = HM_F_INVALID;
        }
        p = skip_ws(p, end);
        if (p >= end) return fail_eof(d);
        if (*p == ',') {
            p = skip_ws(p + 1, end);
            if (p >= end) return fail_eof(d);
            continue;
        }
        if (*p == ']') return p + 1;
        return fail_expected(d, p, "',' or ']' after value");
    }
}

/* An integer >= 0 (issue_count, original_bytes). */
static hm_fstate count_field(const val *v, int64_t *out) {
    switch (v->type) {
        case V_NUMBER:
            return number_to_i64(&v->num, out) && *out >= 0 ? HM_F_OK : HM_F_INVALID;
        case V_NULL:
            return HM_F_NULL;
        default:
            return HM_F_WRONG_TYPE;
    }
}

static hm_fstate score_field(const val *v, double *out) {
    switch (v->type) {
        case V_NUMBER:
            *out = num_to_double(&v->num, v->p, v->p + v->len);
            return *out >= 0.0 && *out <= 1.0 ? HM_F_OK : HM_F_INVALID;
        case V_NULL:
            return HM_F_NULL;
        default:
            return HM_F_WRONG_TYPE;
    }
}

static hm_fstate processed_at_field(const val *v, hm_quality *q) {
    switch (v->type) {
        case V_STRING:
            q->processed_at = span_of(v->p, v->len);
            if (v->esc) return HM_F_INVALID;
            return hm_parse_iso8601_ms(v->p, v->len, &q->processed_at_ms) == 0 ? HM_F_OK
                                                                               : HM_F_INVALID;
        case V_NULL:
            return HM_F_NULL;
        default:
            return HM_F_WRONG_TYPE;
    }
}

/* original_data: span is the value's JSON text (p..after), a string with its quotes. */
static hm_fstate original_field(const val *v, const char *p, const char *after, hm_quality *q) {
    switch (v->type) {
        case V_OBJECT:
        case V_STRING:
            q->original = span_of(p, (uint32_t)(after - p));
            q->original_is_string = v->type == V_STRING;
            return HM_F_OK;
        case V_NULL:
            return HM_F_NULL;
        default:
            return HM_F_WRONG_TYPE;
    }
}

/* The dec_member_fn for hm_tick_decode_object(): every member that is not a tick field. */
static const char *quality_member(dec *d, const char *key, uint32_t key_len, bool esc,
                                  const char *p) {
    qdec *qd = (qdec *)d;
    hm_quality *q = qd->q;
    int f;
    if (HM_LIKELY(!esc)) {
        f = match_qkey(key, key_len);
    } else {
        char buf[16];
        int n = unescape_name(key, key_len, buf, sizeof(buf));
        f = n < 0 ? -1 : match_qkey(buf, (uint32_t)n);
    }
    if (f >= 0) {
        if (HM_UNLIKELY(qd->seen & (UINT32_C(1) << f)))
            return fail(d, key - 1, "duplicate key '%s'", hm_qfield_name((hm_qfield)f));
        qd->seen |= UINT32_C(1) << f;
        if (f == HM_QFIELD_ISSUES) return read_issues(qd, p);
    }
    val v = {0};
    const char *after = read_value(d, p, &v);
    if (!after || f < 0) return after; /* a member no record of ours has: skipped */
    hm_fstate *st = &q->st[f];
    int64_t n;
    switch ((hm_qfield)f) {
        case HM_QFIELD_SCORE:
            *st = score_field(&v, &q->score);
            break;
        case HM_QFIELD_ISSUE_COUNT:
            *st = count_field(&v, &q->issue_count);
            break;
        case HM_QFIELD_PROCESSED_AT:
            *st = processed_at_field(&v, q);
            break;
        case HM_QFIELD_ERROR:
            if (v.type == V_STRING) {
                q->error = span_of(v.p, v.len);
                q->error_escaped = v.esc;
                *st = HM_F_OK;
            } else {
                *st = v.type == V_NULL ? HM_F_NULL : HM_F_WRONG_TYPE;
            }
            break;
        case HM_QFIELD_ORIGINAL:
            *st = original_field(&v, p, after, q);
            break;
        case HM_QFIELD_ORIGINAL_BYTES:
            *st = count_field(&v, &n);
            if (*st == HM_F_OK) q->original_bytes = (uint64_t)n;
            break;
        case HM_QFIELD_ISSUES: /* read_issues() above */
        case HM_QFIELD_COUNT_:
            assert(0);
            break;
    }
    return after;
}

int hm_quality_decode(const char *json, size_t len, hm_quality *out, hm_decode_err *err) {
    assert(out);
    hm_decode_err scratch;
    if (!err) err = &scratch;
    memset(out, 0, sizeof(*out));
    out->tick.kind = HM_KIND_TRADE;
    out->tick.strict_json = true;
    if (HM_UNLIKELY(len > UINT32_MAX)) { /* spans hold 32-bit lengths */
        err->offset = UINT32_MAX;
        err->field[0] = '\0';
        snprintf(err->msg, sizeof(err->msg), "record of %zu bytes exceeds the limit of %u", len,
                 (unsigned)UINT32_MAX);
        return -E2BIG;
    }
    assert(json || len == 0);
    if (HM_UNLIKELY(len == 0)) {
        err->offset = 0;
        err->field[0] = '\0';
        snprintf(err->msg, sizeof(err->msg), "empty input");
        return -EINVAL;
    }

    qdec qd = {.d = {.base = json,
                     .end = json + len,
                     .err = err,
                     .max_depth = HM_QUALITY_MAX_DEPTH,
                     .refuse_nonfinite = true,
                     .t = &out->tick},
               .q = out};
    dec *d = &qd.d;
    const char *p = skip_ws(json, d->end);
    if (HM_UNLIKELY(p >= d->end)) {
        fail(d, d->end, "empty input");
        return -EINVAL;
    }
    if (HM_UNLIKELY(*p != '{')) {
        fail_expected(d, p, "'{'");
        return -EINVAL;
    }
    p = hm_tick_decode_object(d, p, quality_member);
    if (HM_UNLIKELY(!p)) return -EINVAL;
    const char *tail = skip_ws(p, d->end);
    if (HM_UNLIKELY(tail != d->end)) {
        fail(d, tail, "trailing characters after the object at byte %zu", (size_t)(tail - json));
        return -EINVAL;
    }
    return 0;
}
