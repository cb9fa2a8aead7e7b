/*
 * himari-kafkacheck: round-trip N records through Kafka with common/'s clients
 * on one libuv loop, and prove none was lost, duplicated or altered.
 *
 *   himari-kafkacheck --bootstrap HOST:PORT --topic T [--count N] [--transactional]
 *                     [--txn-records N] [--timeout SECONDS] [--run-id ID]
 *
 * Each record's key is "<run-id>-<seq>" and its value a JSON object whose
 * fields are derived from seq, so the consumer can check every byte it reads.
 * The consumer (read_committed, a fresh group) counts records of this run only.
 * With --transactional the producer commits every --txn-records records.
 * Prints one JSON summary line on stdout; exit 0 only when every record was
 * read back exactly once with the right content.
 *
 * An operator can run it against a live cluster (on a scratch topic) to check
 * that the path from this host to the brokers round-trips.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "himari/buf.h"
#include "himari/kafka.h"
#include "himari/log.h"

typedef struct check {
    uv_loop_t *loop;
    hm_kafka_config kc;
    const char *topic;
    char run_id[64];
    uint64_t count;
    bool transactional;
    uint64_t txn_records;

    hm_metrics *metrics;
    hm_producer *producer;
    hm_consumer *consumer;
    uint64_t next_seq; /* next record to send */
    uint64_t in_txn;   /* records sent in the open transaction */
    bool txn_open;
    bool producing_done;
    uint64_t delivered, delivery_failed;

    uint8_t *seen; /* seen[seq]: times read back */
    uint64_t read, duplicates, corrupt, foreign;
    uv_timer_t deadline;
    bool timed_out;
    int closing;
    hm_buf val;
} check;

static void value_for(hm_buf *b, const char *run_id, uint64_t seq) {
    hm_buf_reset(b);
    hm_buf_puts(b, "{\"run\":");
    hm_json_cstr(b, run_id);
    hm_buf_puts(b, ",\"seq\":");
    hm_buf_u64(b, seq);
    hm_buf_puts(b, ",\"price\":");
    hm_buf_u64(b, 30000 + seq % 1000);
    hm_buf_puts(b, ".5,\"pad\":\"");
    for (uint64_t i = 0; i < seq % 17; i++)
        hm_buf_putc(b, (char)('a' + (seq + i) % 26));
    hm_buf_puts(b, "\"}");
}

static void produce_more(check *c);
static void maybe_finish(check *c);

static void on_txn_committed(hm_producer *p, const hm_txn_result *r, void *ud) {
    check *c = ud;
    if (r->err) {
        fprintf(stderr, "kafkacheck: commit failed: %s\n", r->msg);
        exit(1);
    }
    c->txn_open = false;
    c->in_txn = 0;
    if (c->next_seq >= c->count)
        c->producing_done = true;
    else
        produce_more(c);
}

static void produce_more(check *c) {
    hm_err err;
    while (c->next_seq < c->count) {
        if (c->transactional && !c->txn_open) {
            if (hm_producer_txn_begin(c->producer, &err) != 0) {
                fprintf(stderr, "kafkacheck: %s\n", err.msg);
                exit(1);
            }
            c->txn_open = true;
        }
        char key[96];
        int klen = snprintf(key, sizeof(key), "%s-%" PRIu64, c->run_id, c->next_seq);
        value_for(&c->val, c->run_id, c->next_seq);
        int rc = hm_producer_send(c->producer, c->topic, RD_KAFKA_PARTITION_UA, key, (size_t)klen,
                                  c->val.data, c->val.len, NULL, NULL, &err);
        if (rc == -EAGAIN) return; /* on_writable resumes */
        if (rc != 0) {
            fprintf(stderr, "kafkacheck: send: %s\n", err.msg);
            exit(1);
        }
        c->next_seq++;
        c->in_txn++;
        if (c->transactional && (c->in_txn >= c->txn_records || c->next_seq == c->count)) {
            if (hm_producer_txn_commit(c->producer, NULL, NULL, on_txn_committed, c) != 0) {
                fprintf(stderr, "kafkacheck: cannot start commit\n");
                exit(1);
            }
            return;
        }
    }
    if (!c->transactional) c->producing_done = true;
}

static void on_writable(hm_producer *p, void *ud) {
    produce_more(ud);
}

static void on_delivery(hm_producer *p, rd_kafka_resp_err_t e, const rd_kafka_message_t *m,
                        void *opaque, void *ud) {
    check *c = ud;
    if (e)
        c->delivery_failed++;
    else
        c->delivered++;
}

static void on_producer_fatal(hm_producer *p, const char *reason, void *ud) {
    fprintf(stderr, "kafkacheck: producer fatal: %s\n", reason);
    exit(1);
}

static void on_txn_init(hm_producer *p, const hm_txn_result *r, void *ud) {
    if (r->err) {
        fprintf(stderr, "kafkacheck: init_transactions: %s\n", r->msg);
        exit(1);
    }
    produce_more(ud);
}

static void on_message(hm_consumer *cons, const rd_kafka_message_t *m, void *ud) {
    check *c = ud;
    size_t idlen = strlen(c->run_id);
    if (m->key_len <= idlen + 1 || memcmp(m->key, c->run_id, idlen) != 0 ||
        ((const char *)m->key)[idlen] != '-') {
        c->foreign++;
        return;
    }
    char digits[32];
    size_t dl = m->key_len - idlen - 1;
    if (dl >= sizeof(digits)) {
        c->corrupt++;
        return;
    }
    memcpy(digits, (const char *)m->key + idlen + 1, dl);
    digits[dl] = '\0';
    uint64_t seq = strtoull(digits, NULL, 10);
    if (seq >= c->count) {
        c->corrupt++;
        return;
    }
    value_for(&c->val, c->run_id, seq);
    if (m->len != c->val.len || memcmp(m->payload, c->val.data, m->len) != 0) {
        c->corrupt++;
        return;
    }
    if (c->seen[seq]++)
        c->duplicates++;
    else
        c->read++;
}

static void on_batch_end(hm_consumer *cons, void *ud) {
    maybe_finish(ud);
}

static void on_consumer_fatal(hm_consumer *cons, const char *reason, void *ud) {
    fprintf(stderr, "kafkacheck: consumer fatal: %s\n", reason);
    exit(1);
}

static void on_closed_any(check *c) {
    if (--c->closing == 0) uv_close((uv_handle_t *)&c->deadline, NULL);
}
static void on_consumer_closed(void *ud) {
    on_closed_any(ud);
}
static void on_producer_closed(void *ud, size_t undelivered) {
    check *c = ud;
    c->delivery_failed += undelivered;
    on_closed_any(c);
}

static void finish(check *c) {
    if (c->closing) return;
    c->closing = 2;
    uv_timer_stop(&c->deadline);
    hm_consumer_close(c->consumer, on_consumer_closed, c);
    hm_producer_close(c->producer, 10000, on_producer_closed, c);
}

static void maybe_finish(check *c) {
    if (c->producing_done && c->read == c->count) finish(c);
}

static void on_deadline(uv_timer_t *t) {
    check *c = t->data;
    c->timed_out = true;
    finish(c);
}

int main(int argc, char **argv) {
    check c = {0};
    c.count = 100000;
    c.txn_records = 10000;
    int timeout_s = 120;
    const char *bootstrap = getenv("HIMARI_KAFKA_BOOTSTRAP");
    snprintf(c.run_id, sizeof(c.run_id), "kc%lld", (long long)hm_now_ms());
    static const struct option opts[] = {
        {"bootstrap", required_argument, NULL, 'b'},   {"topic", required_argument, NULL, 't'},
        {"count", required_argument, NULL, 'n'},       {"transactional", no_argument, NULL, 'x'},
        {"txn-records", required_argument, NULL, 'r'}, {"timeout", required_argument, NULL, 'T'},
        {"run-id", required_argument, NULL, 'i'},      {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
            case 'b':
                bootstrap = optarg;
                break;
            case 't':
                c.topic = optarg;
                break;
            case 'n':
                c.count = strtoull(optarg, NULL, 10);
                break;
            case 'x':
                c.transactional = true;
                break;
            case 'r':
                c.txn_records = strtoull(optarg, NULL, 10);
                break;
            case 'T':
                timeout_s = atoi(optarg);
                break;
            case 'i':
                snprintf(c.run_id, sizeof(c.run_id), "%s", optarg);
                break;
            default:
                fprintf(stderr,
                        "usage: himari-kafkacheck --bootstrap B --topic T [--count N] "
                        "[--transactional] [--txn-records N] [--timeout S] [--run-id ID]\n");
                return 2;
        }
    }
    if (!bootstrap || !c.topic || c.count == 0 || c.txn_records == 0) {
        fprintf(stderr, "kafkacheck: --bootstrap (or HIMARI_KAFKA_BOOTSTRAP), --topic and a "
                        "positive --count are required\n");
        return 2;
    }
    hm_log_init("himari-kafkacheck", HM_LOG_WARN);
    c.loop = uv_default_loop();
    c.kc.bootstrap_servers = (char *)bootstrap;
    c.kc.statistics_interval_ms = 1000;
    c.metrics = hm_metrics_new();
    c.seen = hm_xcalloc(c.count, 1);

    hm_err err;
    char group[96];
    snprintf(group, sizeof(group), "%s-group", c.run_id);
    const char *topics[] = {c.topic};
    hm_consumer_opts co = {.group_id = group,
                           .topics = topics,
                           .n_topics = 1,
                           .read_committed = true,
                           .auto_commit = false,
                           .client_id = "kafkacheck-consumer"};
    hm_consumer_handlers ch_ = {
        .on_message = on_message, .on_batch_end = on_batch_end, .on_fatal = on_consumer_fatal};
    char txn_id[96];
    snprintf(txn_id, sizeof(txn_id), "%s-txn", c.run_id);
    hm_producer_opts po = {.transactional_id = c.transactional ? txn_id : NULL,
                           .client_id = "kafkacheck-producer"};
    hm_producer_handlers ph = {
        .on_delivery = on_delivery, .on_writable = on_writable, .on_fatal = on_producer_fatal};
    if (hm_consumer_new(c.loop, &c.kc, &co, &ch_, &c, c.metrics, &c.consumer, &err) ||
        hm_producer_new(c.loop, &c.kc, &po, &ph, &c, c.metrics, &c.producer, &err)) {
        fprintf(stderr, "kafkacheck: %s\n", err.msg);
        return 1;
    }
    uv_timer_init(c.loop, &c.deadline);
    c.deadline.data = &c;
    uv_timer_start(&c.deadline, on_deadline, (uint64_t)timeout_s * 1000, 0);

    uint64_t t0 = hm_mono_ns();
    if (c.transactional) {
        if (hm_producer_txn_init(c.producer, on_txn_init, &c) != 0) return 1;
    } else {
        produce_more(&c);
    }
    uv_run(c.loop, UV_RUN_DEFAULT);
    double secs = (double)(hm_mono_ns() - t0) / 1e9;

    uint64_t missing = 0;
    for (uint64_t i = 0; i < c.count; i++)
        missing += c.seen[i] == 0;
    bool ok = !c.timed_out && missing == 0 && c.duplicates == 0 && c.corrupt == 0 &&
              c.delivery_failed == 0 && c.delivered == c.count;
    printf("{\"ok\":%s,\"count\":%" PRIu64 ",\"sent\":%" PRIu64 ",\"delivered\":%" PRIu64
           ",\"delivery_failed\":%" PRIu64 ",\"read\":%" PRIu64 ",\"missing\":%" PRIu64
           ",\"duplicates\":%" PRIu64 ",\"corrupt\":%" PRIu64 ",\"foreign\":%" PRIu64
           ",\"transactional\":%s,\"timed_out\":%s,\"seconds\":%.3f,\"records_per_s\":%.0f}\n",
           ok ? "true" : "false", c.count, c.next_seq, c.delivered, c.delivery_failed, c.read,
           missing, c.duplicates, c.corrupt, c.foreign, c.transactional ? "true" : "false",
           c.timed_out ? "true" : "false", secs, secs > 0 ? (double)c.count / secs : 0.0);
    int closed = uv_loop_close(c.loop);
    free(c.seen);
    hm_buf_free(&c.val);
    hm_metrics_free(c.metrics);
    if (closed != 0) {
        fprintf(stderr, "kafkacheck: loop handles left open\n");
        return 1;
    }
    return ok ? 0 : 1;
}
