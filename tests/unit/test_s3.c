// uses: services/archiver
/*
 * test_s3.c: unit tests for the pure parts of the archiver's S3 client
 * (services/archiver/s3.c): how keys and query values are encoded for SigV4, how
 * S3's XML replies are read, how a file is cut into parts, which failures are retried
 * and how long the client waits between attempts.
 *
 * No network, no files: the requests themselves are tested against a real server in
 * tests/integration/test_s3_client.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <errno.h>
#include <string.h>

#include "s3.h"

#define MIB ((int64_t)1 << 20)

/* ---- key encoding ------------------------------------------------------------------- */

static void test_key_keeps_slashes_and_encodes_equals_as_sigv4_does(void **state) {
    char out[256];
    int n = ar_s3_uri_encode("market_data/date=2026-12-01/exchange=binance/part-0.parquet", true,
                             out, sizeof(out));
    assert_string_equal(out, "market_data/date%3D2026-12-01/exchange%3Dbinance/part-0.parquet");
    assert_int_equal(n, strlen(out));
}

static void test_unreserved_bytes_stay_and_others_are_upper_case_percent(void **state) {
    char out[256];
    assert_true(ar_s3_uri_encode("AZaz09-._~", true, out, sizeof(out)) >= 0);
    assert_string_equal(out, "AZaz09-._~");
    assert_true(ar_s3_uri_encode("a b+c&d%e?f#g", true, out, sizeof(out)) >= 0);
    assert_string_equal(out, "a%20b%2Bc%26d%25e%3Ff%23g");
    assert_true(ar_s3_uri_encode("\xc3\xa9\xff", true, out, sizeof(out)) >= 0);
    assert_string_equal(out, "%C3%A9%FF");
}

static void test_query_values_encode_slash(void **state) {
    char out[64];
    assert_true(ar_s3_uri_encode("market_data/date=", false, out, sizeof(out)) >= 0);
    assert_string_equal(out, "market_data%2Fdate%3D");
}

static void test_empty_key_encodes_to_empty(void **state) {
    char out[4];
    assert_int_equal(ar_s3_uri_encode("", true, out, sizeof(out)), 0);
    assert_string_equal(out, "");
}

static void test_encoding_that_does_not_fit_is_refused_not_truncated(void **state) {
    char out[8];
    assert_int_equal(ar_s3_uri_encode("abcdefg", true, out, sizeof(out)), 7);
    assert_int_equal(ar_s3_uri_encode("abcdefgh", true, out, sizeof(out)), -ENOSPC);
    assert_int_equal(ar_s3_uri_encode("abcd=", true, out, sizeof(out)), 7);
    assert_int_equal(ar_s3_uri_encode("abcde=", true, out, sizeof(out)), -ENOSPC);
    assert_int_equal(ar_s3_uri_encode("abcd", true, out, 0), -ENOSPC);
}

/* ---- XML ---------------------------------------------------------------------------- */

static const char error_xml[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated "
    "does not match &amp; so on</Message><AWSAccessKeyId>AKID</AWSAccessKeyId>"
    "<RequestId>R1</RequestId></Error>";

static void test_error_code_and_message_are_extracted_and_decoded(void **state) {
    char code[64], msg[128];
    assert_int_equal(ar_s3_xml_text(error_xml, strlen(error_xml), "Code", code, sizeof(code)), 0);
    assert_string_equal(code, "SignatureDoesNotMatch");
    assert_int_equal(ar_s3_xml_text(error_xml, strlen(error_xml), "Message", msg, sizeof(msg)), 0);
    assert_string_equal(msg, "The request signature we calculated does not match & so on");
}

static void test_upload_id_is_found_inside_a_namespaced_root(void **state) {
    const char *x =
        "<InitiateMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
        "<Bucket>b</Bucket><Key>k</Key><UploadId>da1b9f15-7ab2-47ea</UploadId>"
        "</InitiateMultipartUploadResult>";
    char id[64];
    assert_int_equal(ar_s3_xml_text(x, strlen(x), "UploadId", id, sizeof(id)), 0);
    assert_string_equal(id, "da1b9f15-7ab2-47ea");
}

static void test_etag_entities_named_and_numeric_become_quotes(void **state) {
    const char *a = "<ETag>&#34;a2924ceb&#34;</ETag>";
    const char *b = "<ETag>&quot;a2924ceb&quot;</ETag>";
    const char *c = "<ETag>&#x22;a2924ceb&#x22;</ETag>";
    char out[32];
    assert_int_equal(ar_s3_xml_text(a, strlen(a), "ETag", out, sizeof(out)), 0);
    assert_string_equal(out, "\"a2924ceb\"");
    assert_int_equal(ar_s3_xml_text(b, strlen(b), "ETag", out, sizeof(out)), 0);
    assert_string_equal(out, "\"a2924ceb\"");
    assert_int_equal(ar_s3_xml_text(c, strlen(c), "ETag", out, sizeof(out)), 0);
    assert_string_equal(out, "\"a2924ceb\"");
}

static void test_a_tag_is_not_matched_by_a_longer_name_sharing_its_prefix(void **state) {
    const char *x = "<KeyCount>2</KeyCount><Key>real</Key>";
    char out[32];
    assert_int_equal(ar_s3_xml_text(x, strlen(x), "Key", out, sizeof(out)), 0);
    assert_string_equal(out, "real");
}

static void test_absent_tag_is_enoent_and_leaves_out_empty(void **state) {
    char out[16] = "junk";
    assert_int_equal(ar_s3_xml_text(error_xml, strlen(error_xml), "UploadId", out, sizeof(out)),
                     -ENOENT);
    assert_string_equal(out, "");
    /* An opening tag without its closing tag is not an element. */
    const char *x = "<Code>NoSuch";
    assert_int_equal(ar_s3_xml_text(x, strlen(x), "Code", out, sizeof(out)), -ENOENT);
}

static void test_text_too_long_for_out_is_enospc_with_a_prefix(void **state) {
    char out[8];
    assert_int_equal(ar_s3_xml_text(error_xml, strlen(error_xml), "Code", out, sizeof(out)),
                     -ENOSPC);
    assert_string_equal(out, "Signatu");
}

static void test_search_is_bounded_by_len_not_by_nul(void **state) {
    const char *x = "<Code>A</Code><Message>B</Message>";
    char out[8];
    /* The Message element lies past len. */
    assert_int_equal(ar_s3_xml_text(x, 14, "Message", out, sizeof(out)), -ENOENT);
    assert_int_equal(ar_s3_xml_text(x, 14, "Code", out, sizeof(out)), 0);
    assert_string_equal(out, "A");
}

static void test_contents_blocks_are_walked_in_order_with_next(void **state) {
    const char *x = "<ListBucketResult><KeyCount>2</KeyCount>"
                    "<Contents><Key>a/date=1</Key><Size>10</Size></Contents>"
                    "<Contents><Key>b &amp; c</Key><Size>0</Size></Contents>"
                    "<IsTruncated>false</IsTruncated></ListBucketResult>";
    const char *p = x, *end = x + strlen(x), *body, *next;
    size_t bl;
    const char *keys[2] = {"a/date=1", "b & c"};
    int n = 0;
    char key[32];
    while (ar_s3_xml_find(p, (size_t)(end - p), "Contents", &body, &bl, &next) == 0) {
        assert_true(n < 2);
        assert_int_equal(ar_s3_xml_text(body, bl, "Key", key, sizeof(key)), 0);
        assert_string_equal(key, keys[n]);
        n++;
        p = next;
    }
    assert_int_equal(n, 2);
}

static void test_self_closing_tag_is_present_and_empty(void **state) {
    const char *x = "<Prefix/><Key>k</Key>";
    char out[8] = "junk";
    assert_int_equal(ar_s3_xml_text(x, strlen(x), "Prefix", out, sizeof(out)), 0);
    assert_string_equal(out, "");
}

/* ---- part planning ------------------------------------------------------------------ */

static void test_empty_file_is_one_single_put(void **state) {
    ar_s3_plan p = ar_s3_plan_upload(0, 5 * MIB);
    assert_false(p.multipart);
    assert_int_equal(p.parts, 0);
    int64_t off, len;
    ar_s3_plan_part(&p, 0, 1, &off, &len);
    assert_int_equal(off, 0);
    assert_int_equal(len, 0);
}

static void test_file_of_exactly_the_part_size_is_a_single_put(void **state) {
    ar_s3_plan p = ar_s3_plan_upload(5 * MIB, 5 * MIB);
    assert_false(p.multipart);
    assert_int_equal(p.part_bytes, 5 * MIB);
}

static void test_one_byte_over_the_part_size_is_two_parts_the_last_of_one_byte(void **state) {
    ar_s3_plan p = ar_s3_plan_upload(5 * MIB + 1, 5 * MIB);
    assert_true(p.multipart);
    assert_int_equal(p.parts, 2);
    int64_t off, len;
    ar_s3_plan_part(&p, 5 * MIB + 1, 1, &off, &len);
    assert_int_equal(off, 0);
    assert_int_equal(len, 5 * MIB);
    ar_s3_plan_part(&p, 5 * MIB + 1, 2, &off, &len);
    assert_int_equal(off, 5 * MIB);
    assert_int_equal(len, 1);
}

static void test_exact_multiple_has_no_empty_last_part(void **state) {
    ar_s3_plan p = ar_s3_plan_upload(4 * 5 * MIB, 5 * MIB);
    assert_true(p.multipart);
    assert_int_equal(p.parts, 4);
    int64_t off, len, total = 0;
    for (int i = 1; i <= p.parts; i++) {
        ar_s3_plan_part(&p, 4 * 5 * MIB, i, &off, &len);
        assert_int_equal(off, total);
        assert_int_equal(len, 5 * MIB);
        total += len;
    }
    assert_int_equal(total, 4 * 5 * MIB);
}

static void test_parts_cover_the_file_without_gap_or_overlap(void **state) {
    const int64_t size = 24000000;
    ar_s3_plan p = ar_s3_plan_upload(size, 5 * MIB);
    assert_int_equal(p.parts, 5);
    int64_t off, len, total = 0;
    for (int i = 1; i <= p.parts; i++) {
        ar_s3_plan_part(&p, size, i, &off, &len);
        assert_int_equal(off, total);
        assert_true(len > 0 && len <= 5 * MIB);
        total += len;
    }
    assert_int_equal(total, size);
}

static void test_a_file_too_big_for_10000_parts_gets_bigger_whole_mib_parts(void **state) {
    const int64_t size = 100000 * MIB + 7; /* ~98 GiB at 5 MiB would be 20001 parts */
    ar_s3_plan p = ar_s3_plan_upload(size, 5 * MIB);
    assert_true(p.multipart);
    assert_true(p.parts <= AR_S3_MAX_PARTS);
    assert_int_equal(p.part_bytes % MIB, 0);
    assert_true((int64_t)p.parts * p.part_bytes >= size);
    assert_true((int64_t)(p.parts - 1) * p.part_bytes < size);
}

/* ---- retries ------------------------------------------------------------------------ */

static void test_connection_errors_and_timeouts_are_retried(void **state) {
    assert_true(ar_s3_retryable(CURLE_COULDNT_CONNECT, 0, ""));
    assert_true(ar_s3_retryable(CURLE_OPERATION_TIMEDOUT, 0, ""));
    assert_true(ar_s3_retryable(CURLE_RECV_ERROR, 0, ""));
    assert_true(ar_s3_retryable(CURLE_SEND_ERROR, 0, ""));
    assert_true(ar_s3_retryable(CURLE_GOT_NOTHING, 0, ""));
    assert_true(ar_s3_retryable(CURLE_PARTIAL_FILE, 0, ""));
}

static void test_local_curl_errors_are_not_retried(void **state) {
    assert_false(ar_s3_retryable(CURLE_URL_MALFORMAT, 0, ""));
    assert_false(ar_s3_retryable(CURLE_OUT_OF_MEMORY, 0, ""));
    assert_false(ar_s3_retryable(CURLE_WRITE_ERROR, 0, ""));
}

static void test_5xx_429_and_s3_throttling_codes_are_retried(void **state) {
    assert_true(ar_s3_retryable(CURLE_OK, 500, "InternalError"));
    assert_true(ar_s3_retryable(CURLE_OK, 503, "SlowDown"));
    assert_true(ar_s3_retryable(CURLE_OK, 502, ""));
    assert_true(ar_s3_retryable(CURLE_OK, 429, ""));
    /* Some stores send SlowDown or InternalError with a 4xx status. */
    assert_true(ar_s3_retryable(CURLE_OK, 400, "SlowDown"));
    assert_true(ar_s3_retryable(CURLE_OK, 400, "RequestTimeout"));
}

static void test_other_4xx_fail_at_once(void **state) {
    assert_false(ar_s3_retryable(CURLE_OK, 403, "SignatureDoesNotMatch"));
    assert_false(ar_s3_retryable(CURLE_OK, 403, "InvalidAccessKeyId"));
    assert_false(ar_s3_retryable(CURLE_OK, 404, "NoSuchUpload"));
    assert_false(ar_s3_retryable(CURLE_OK, 404, "NoSuchBucket"));
    assert_false(ar_s3_retryable(CURLE_OK, 400, "EntityTooSmall"));
    assert_false(ar_s3_retryable(CURLE_OK, 409, "BucketAlreadyExists"));
}

static void test_backoff_doubles_from_200ms_and_stops_at_10s(void **state) {
    /* rnd 0: no jitter taken, the cap itself. */
    assert_int_equal(ar_s3_backoff_ms(1, 0), 200);
    assert_int_equal(ar_s3_backoff_ms(2, 0), 400);
    assert_int_equal(ar_s3_backoff_ms(3, 0), 800);
    assert_int_equal(ar_s3_backoff_ms(6, 0), 6400);
    assert_int_equal(ar_s3_backoff_ms(7, 0), 10000);
    assert_int_equal(ar_s3_backoff_ms(60, 0), 10000);
}

static void test_backoff_jitter_stays_within_half_and_full_cap(void **state) {
    uint64_t r = 0x9E3779B97F4A7C15ull;
    for (int attempt = 1; attempt < 12; attempt++) {
        int64_t cap = ar_s3_backoff_ms(attempt, 0);
        for (int i = 0; i < 200; i++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            int64_t d = ar_s3_backoff_ms(attempt, r);
            assert_true(d >= cap / 2);
            assert_true(d <= cap);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_keeps_slashes_and_encodes_equals_as_sigv4_does),
        cmocka_unit_test(test_unreserved_bytes_stay_and_others_are_upper_case_percent),
        cmocka_unit_test(test_query_values_encode_slash),
        cmocka_unit_test(test_empty_key_encodes_to_empty),
        cmocka_unit_test(test_encoding_that_does_not_fit_is_refused_not_truncated),
        cmocka_unit_test(test_error_code_and_message_are_extracted_and_decoded),
        cmocka_unit_test(test_upload_id_is_found_inside_a_namespaced_root),
        cmocka_unit_test(test_etag_entities_named_and_numeric_become_quotes),
        cmocka_unit_test(test_a_tag_is_not_matched_by_a_longer_name_sharing_its_prefix),
        cmocka_unit_test(test_absent_tag_is_enoent_and_leaves_out_empty),
        cmocka_unit_test(test_text_too_long_for_out_is_enospc_with_a_prefix),
        cmocka_unit_test(test_search_is_bounded_by_len_not_by_nul),
        cmocka_unit_test(test_contents_blocks_are_walked_in_order_with_next),
        cmocka_unit_test(test_self_closing_tag_is_present_and_empty),
        cmocka_unit_test(test_empty_file_is_one_single_put),
        cmocka_unit_test(test_file_of_exactly_the_part_size_is_a_single_put),
        cmocka_unit_test(test_one_byte_over_the_part_size_is_two_parts_the_last_of_one_byte),
        cmocka_unit_test(test_exact_multiple_has_no_empty_last_part),
        cmocka_unit_test(test_parts_cover_the_file_without_gap_or_overlap),
        cmocka_unit_test(test_a_file_too_big_for_10000_parts_gets_bigger_whole_mib_parts),
        cmocka_unit_test(test_connection_errors_and_timeouts_are_retried),
        cmocka_unit_test(test_local_curl_errors_are_not_retried),
        cmocka_unit_test(test_5xx_429_and_s3_throttling_codes_are_retried),
        cmocka_unit_test(test_other_4xx_fail_at_once),
        cmocka_unit_test(test_backoff_doubles_from_200ms_and_stops_at_10s),
        cmocka_unit_test(test_backoff_jitter_stays_within_half_and_full_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
