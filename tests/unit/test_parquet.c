// uses: services/archiver
/*
 * test_parquet.c: unit tests for services/archiver/parquet.c, the archiver's Parquet writer.
 *
 * The encoders (Thrift compact, RLE/bit-packed hybrid) are checked against bytes computed by
 * hand from the specifications; the writer's contract (one value per column per row, NULLs
 * only in optional columns, tmp file + rename, abort leaves nothing) against a temp dir.
 * Reading the files back with real readers is tests/integration/test_parquet_writer.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "parquet.h"

#define assert_bytes(buf, ...)                                                                     \
    do {                                                                                           \
        const uint8_t expected_[] = {__VA_ARGS__};                                                 \
        assert_int_equal((buf)->len, sizeof(expected_));                                           \
        assert_memory_equal((buf)->data, expected_, sizeof(expected_));                            \
    } while (0)

/* ---- codec names ----------------------------------------------------------------- */

static void test_codec_names_parse_and_unknown_is_einval(void **state) {
    (void)state;
    ar_pq_codec c = AR_PQ_NONE;
    assert_int_equal(ar_pq_codec_parse("zstd", &c), 0);
    assert_int_equal(c, AR_PQ_ZSTD);
    assert_int_equal(ar_pq_codec_parse("snappy", &c), 0);
    assert_int_equal(c, AR_PQ_SNAPPY);
    assert_int_equal(ar_pq_codec_parse("none", &c), 0);
    assert_int_equal(c, AR_PQ_NONE);
    c = AR_PQ_ZSTD;
    assert_int_equal(ar_pq_codec_parse("gzip", &c), -EINVAL);
    assert_int_equal(ar_pq_codec_parse("ZSTD", &c), -EINVAL);
    assert_int_equal(ar_pq_codec_parse("", &c), -EINVAL);
    assert_int_equal(ar_pq_codec_parse(NULL, &c), -EINVAL);
    assert_int_equal(c, AR_PQ_ZSTD); /* untouched on failure */
    assert_string_equal(ar_pq_codec_name(AR_PQ_SNAPPY), "snappy");
    assert_string_equal(ar_pq_codec_name(AR_PQ_ZSTD), "zstd");
    assert_string_equal(ar_pq_codec_name(AR_PQ_NONE), "none");
}

/* ---- Thrift compact -------------------------------------------------------------- */

static void test_varint_is_uleb128(void **state) {
    (void)state;
    hm_buf b = HM_BUF_INIT;
    ar_tc_varint(&b, 0);
    ar_tc_varint(&b, 1);
    ar_tc_varint(&b, 127);
    ar_tc_varint(&b, 128);
    ar_tc_varint(&b, 300);
    ar_tc_varint(&b, UINT64_MAX);
    assert_bytes(&b, 0x00, 0x01, 0x7F, 0x80, 0x01, 0xAC, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                 0xFF, 0xFF, 0xFF, 0x01);
    hm_buf_free(&b);
}

static void test_zigzag_interleaves_signs(void **state) {
    (void)state;
    assert_int_equal(ar_tc_zigzag(0), 0);
    assert_int_equal(ar_tc_zigzag(-1), 1);
    assert_int_equal(ar_tc_zigzag(1), 2);
    assert_int_equal(ar_tc_zigzag(-2), 3);
    assert_int_equal(ar_tc_zigzag(INT32_MAX), 4294967294u);
    assert_int_equal(ar_tc_zigzag(INT64_MIN), UINT64_MAX);
    assert_int_equal(ar_tc_zigzag(INT64_MAX), UINT64_MAX - 1);
}

static void test_field_headers_use_deltas_and_long_form_past_15(void **state) {
    (void)state;
    hm_buf b = HM_BUF_INIT;
    ar_tc t;
    ar_tc_begin(&t, &b);
    ar_tc_i32(&t, 1, 5);                  /* delta 1, I32: 0x15, zigzag 10 */
    ar_tc_i32(&t, 3, -1);                 /* delta 2: 0x25, zigzag 1 */
    ar_tc_i64(&t, 20, 1);                 /* delta 17: type byte 0x06, zigzag(20) = 40, value 2 */
    ar_tc_bool(&t, 21, 1);                /* true in the header: 0x11 */
    ar_tc_struct(&t, 22);                 /* 0x1C */
    ar_tc_i32(&t, 1, 0);                  /* ids restart inside: 0x15 0x00 */
    ar_tc_end(&t);                        /* 0x00 */
    ar_tc_binary(&t, 23, "ab", 2);        /* delta 1 from 22: 0x18, len 2 */
    ar_tc_list(&t, 24, AR_TC_I32, 2);     /* 0x19, 2 x I32: 0x25 */
    ar_tc_list(&t, 25, AR_TC_STRUCT, 20); /* long list: 0xFC, size 20 */
    ar_tc_bool(&t, 10, 0);                /* backwards: long form 0x02, zigzag(10) = 20 */
    ar_tc_end(&t);
    assert_bytes(&b, 0x15, 0x0A, 0x25, 0x01, 0x06, 0x28, 0x02, 0x11, 0x1C, 0x15, 0x00, 0x00, 0x18,
                 0x02, 'a', 'b', 0x19, 0x25, 0x19, 0xFC, 0x14, 0x02, 0x14, 0x00);
    hm_buf_free(&b);
}

/* ---- RLE / bit-packed hybrid ----------------------------------------------------- */

static void test_rle_long_run_is_one_rle_run(void **state) {
    (void)state;
    uint32_t v[10];
    for (int i = 0; i < 10; i++)
        v[i] = 1;
    hm_buf b = HM_BUF_INIT;
    ar_pq_rle_encode(&b, v, 10, 1);
    assert_bytes(&b, 0x14, 0x01); /* header 10 << 1, value in one byte */
    hm_buf_reset(&b);
    uint32_t w[300];
    for (int i = 0; i < 300; i++)
        w[i] = 0x1234;
    ar_pq_rle_encode(&b, w, 300, 13); /* header 600 as varint, value in two bytes */
    assert_bytes(&b, 0xD8, 0x04, 0x34, 0x12);
    hm_buf_free(&b);
}

static void test_rle_distinct_values_are_bit_packed_lsb_first(void **state) {
    (void)state;
    uint32_t v[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    hm_buf b = HM_BUF_INIT;
    ar_pq_rle_encode(&b, v, 8, 3); /* the format spec's own example */
    assert_bytes(&b, 0x03, 0x88, 0xC6, 0xFA);
    hm_buf_reset(&b);
    uint32_t d[3] = {1, 0, 1};
    ar_pq_rle_encode(&b, d, 3, 1); /* one group, padded with zeros */
    assert_bytes(&b, 0x03, 0x05);
    hm_buf_free(&b);
}

static void test_rle_literals_before_a_run_fill_a_whole_group(void **state) {
    (void)state;
    uint32_t v[18] = {2, 3};
    for (int i = 2; i < 18; i++)
        v[i] = 5;
    hm_buf b = HM_BUF_INIT;
    ar_pq_rle_encode(&b, v, 18, 3);
    /* [2,3,5,5,5,5,5,5] bit-packed (2 | 3<<3 | 5<<6 | ... = 0xB6DB5A), then 10 x 5 as RLE */
    assert_bytes(&b, 0x03, 0x5A, 0xDB, 0xB6, 0x14, 0x05);
    hm_buf_free(&b);
}

/* ---- the writer ------------------------------------------------------------------ */

static const ar_pq_column k_cols[] = {
    {"ts", AR_PQ_TIMESTAMP_US, false, false},
    {"symbol", AR_PQ_STRING, false, true},
    {"note", AR_PQ_STRING, true, false},
};

typedef struct tmp_dir {
    char dir[64];
    char path[128];
    char tmp[140];
} tmp_dir;

static void tmp_dir_make(tmp_dir *d) {
    snprintf(d->dir, sizeof(d->dir), "/tmp/test_parquet.XXXXXX");
    assert_non_null(mkdtemp(d->dir));
    snprintf(d->path, sizeof(d->path), "%s/trades.parquet", d->dir);
    snprintf(d->tmp, sizeof(d->tmp), "%s.tmp", d->path);
}

static void tmp_dir_remove(tmp_dir *d) {
    unlink(d->path);
    unlink(d->tmp);
    assert_int_equal(rmdir(d->dir), 0); /* fails if the writer left anything else */
}

static bool exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static ar_pq_writer *open_writer(const tmp_dir *d, int64_t row_group_rows) {
    ar_pq_options opt = {.codec = AR_PQ_ZSTD, .row_group_rows = row_group_rows};
    ar_pq_writer *w = NULL;
    char err[256] = "";
    assert_int_equal(ar_pq_open(&w, d->path, k_cols, 3, &opt, err, sizeof(err)), 0);
    assert_non_null(w);
    return w;
}

static void test_put_null_into_required_column_is_einval_and_row_still_usable(void **state) {
    (void)state;
    tmp_dir d = {0};
    tmp_dir_make(&d);
    ar_pq_writer *w = open_writer(&d, 100);
    assert_int_equal(ar_pq_put_null(w, 0), -EINVAL);
    assert_non_null(strstr(ar_pq_errmsg(w), "'ts' is required"));
    assert_int_equal(ar_pq_put_int32(w, 0, 1), -EINVAL); /* wrong type */
    assert_non_null(strstr(ar_pq_errmsg(w), "TIMESTAMP_US"));
    assert_int_equal(ar_pq_put_int64(w, 7, 1), -EINVAL); /* no such column */
    assert_int_equal(ar_pq_put_int64(w, 0, 1700000000000000), 0);
    assert_int_equal(ar_pq_put_int64(w, 0, 1), -EINVAL); /* twice in one row */
    assert_non_null(strstr(ar_pq_errmsg(w), "already has a value"));
    assert_int_equal(ar_pq_put_string(w, 1, "BTC-USD", 7), 0);
    assert_int_equal(ar_pq_put_null(w, 2), 0);
    assert_int_equal(ar_pq_end_row(w), 0);
    ar_pq_stats st;
    char err[256];
    assert_int_equal(ar_pq_close(w, &st, err, sizeof(err)), 0);
    assert_int_equal(st.rows, 1);
    assert_true(exists(d.path));
    tmp_dir_remove(&d);
}

static void test_end_row_with_a_missing_column_fails_the_writer(void **state) {
    (void)state;
    tmp_dir d = {0};
    tmp_dir_make(&d);
    ar_pq_writer *w = open_writer(&d, 100);
    assert_int_equal(ar_pq_put_int64(w, 0, 1), 0);
    assert_int_equal(ar_pq_put_null(w, 2), 0);
    assert_int_equal(ar_pq_end_row(w), -EINVAL);
    assert_non_null(strstr(ar_pq_errmsg(w), "'symbol' has no value"));
    assert_int_equal(ar_pq_put_string(w, 1, "x", 1), -EINVAL); /* failed for good */
    char err[256] = "";
    assert_int_equal(ar_pq_close(w, NULL, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "symbol"));
    assert_false(exists(d.path));
    assert_false(exists(d.tmp));
    tmp_dir_remove(&d);
}

static void test_open_refuses_bad_schemas_with_a_message(void **state) {
    (void)state;
    ar_pq_writer *w = (ar_pq_writer *)1;
    char err[256] = "";
    const ar_pq_column dup[] = {{"a", AR_PQ_INT32, false, false}, {"a", AR_PQ_INT64, 0, 0}};
    assert_int_equal(ar_pq_open(&w, "/tmp/never.parquet", dup, 2, NULL, err, sizeof(err)), -EINVAL);
    assert_null(w);
    assert_non_null(strstr(err, "'a' appears twice"));
    assert_int_equal(ar_pq_open(&w, "/tmp/never.parquet", dup, 0, NULL, err, sizeof(err)), -EINVAL);
    assert_int_equal(
        ar_pq_open(&w, "/nonexistent-dir/x.parquet", k_cols, 3, NULL, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "/nonexistent-dir/x.parquet.tmp"));
    assert_false(exists("/tmp/never.parquet.tmp"));
}

static void test_abort_leaves_no_file(void **state) {
    (void)state;
    tmp_dir d = {0};
    tmp_dir_make(&d);
    ar_pq_writer *w = open_writer(&d, 2);
    for (int i = 0; i < 5; i++) { /* two row groups already on disk */
        assert_int_equal(ar_pq_put_int64(w, 0, i), 0);
        assert_int_equal(ar_pq_put_string(w, 1, "ETH-USD", 7), 0);
        assert_int_equal(ar_pq_put_null(w, 2), 0);
        assert_int_equal(ar_pq_end_row(w), 0);
    }
    assert_true(exists(d.tmp));
    assert_false(exists(d.path));
    ar_pq_abort(w);
    assert_false(exists(d.tmp));
    assert_false(exists(d.path));
    tmp_dir_remove(&d);
}

/* A minimal Thrift compact reader: enough to find FileMetaData.num_rows (field 3). */
typedef struct tc_reader {
    const uint8_t *p, *end;
} tc_reader;

static uint64_t rd_varint(tc_reader *r) {
    uint64_t v = 0;
    for (int shift = 0; r->p < r->end; shift += 7) {
        uint8_t b = *r->p++;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) break;
    }
    return v;
}

static void rd_skip(tc_reader *r, int type);

static void rd_skip_struct(tc_reader *r) {
    while (r->p < r->end) {
        uint8_t h = *r->p++;
        if (h == 0) return;
        if ((h >> 4) == 0) rd_varint(r); /* long-form id */
        rd_skip(r, h & 0x0F);
    }
}

static void rd_skip(tc_reader *r, int type) {
    switch (type) {
        case AR_TC_TRUE:
        case AR_TC_FALSE:
            break;
        case AR_TC_BYTE:
            r->p++;
            break;
        case AR_TC_I16:
        case AR_TC_I32:
        case AR_TC_I64:
            rd_varint(r);
            break;
        case AR_TC_DOUBLE:
            r->p += 8;
            break;
        case AR_TC_BINARY:
            r->p += rd_varint(r);
            break;
        case AR_TC_LIST: {
            uint8_t h = *r->p++;
            uint64_t n = h >> 4 == 15 ? rd_varint(r) : h >> 4;
            for (uint64_t i = 0; i < n; i++)
                rd_skip(r, h & 0x0F);
            break;
        }
        case AR_TC_STRUCT:
            rd_skip_struct(r);
            break;
        default:
            fail_msg("unexpected thrift type %d", type);
    }
}

static int64_t footer_num_rows(const uint8_t *meta, size_t n) {
    tc_reader r = {meta, meta + n};
    int id = 0;
    while (r.p < r.end) {
        uint8_t h = *r.p++;
        if (h == 0) break;
        id = (h >> 4) ? id + (h >> 4) : (int)(rd_varint(&r) >> 1);
        if (id == 3 && (h & 0x0F) == AR_TC_I64) {
            uint64_t z = rd_varint(&r);
            return (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
        }
        rd_skip(&r, h & 0x0F);
    }
    return -1;
}

static void test_small_file_has_magic_footer_and_row_count(void **state) {
    (void)state;
    tmp_dir d = {0};
    tmp_dir_make(&d);
    ar_pq_writer *w = open_writer(&d, 4);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(ar_pq_put_string(w, 1, i % 2 ? "BTC-USD" : "ETH-USD", 7), 0);
        assert_int_equal(ar_pq_put_int64(w, 0, 1700000000000000 + i), 0);
        if (i == 3)
            assert_int_equal(ar_pq_put_string(w, 2, "late", 4), 0);
        else
            assert_int_equal(ar_pq_put_null(w, 2), 0);
        assert_int_equal(ar_pq_end_row(w), 0);
    }
    ar_pq_stats st;
    char err[256] = "";
    assert_int_equal(ar_pq_close(w, &st, err, sizeof(err)), 0);
    assert_int_equal(st.rows, 10);
    assert_int_equal(st.row_groups, 3);
    assert_false(exists(d.tmp));

    FILE *f = fopen(d.path, "rb");
    assert_non_null(f);
    uint8_t buf[8192];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    assert_int_equal((int64_t)n, st.bytes);
    assert_true(n > 12);
    assert_memory_equal(buf, "PAR1", 4);
    assert_memory_equal(buf + n - 4, "PAR1", 4);
    uint32_t len = buf[n - 8] | buf[n - 7] << 8 | buf[n - 6] << 16 | (uint32_t)buf[n - 5] << 24;
    assert_true(len > 0 && len + 12 <= n);
    assert_int_equal(footer_num_rows(buf + n - 8 - len, len), 10);
    assert_non_null(memmem(buf + n - 8 - len, len, "himari archiver", 15));
    tmp_dir_remove(&d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_names_parse_and_unknown_is_einval),
        cmocka_unit_test(test_varint_is_uleb128),
        cmocka_unit_test(test_zigzag_interleaves_signs),
        cmocka_unit_test(test_field_headers_use_deltas_and_long_form_past_15),
        cmocka_unit_test(test_rle_long_run_is_one_rle_run),
        cmocka_unit_test(test_rle_distinct_values_are_bit_packed_lsb_first),
        cmocka_unit_test(test_rle_literals_before_a_run_fill_a_whole_group),
        cmocka_unit_test(test_put_null_into_required_column_is_einval_and_row_still_usable),
        cmocka_unit_test(test_end_row_with_a_missing_column_fails_the_writer),
        cmocka_unit_test(test_open_refuses_bad_schemas_with_a_message),
        cmocka_unit_test(test_abort_leaves_no_file),
        cmocka_unit_test(test_small_file_has_magic_footer_and_row_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
