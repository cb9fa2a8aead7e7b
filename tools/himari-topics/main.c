/*
 * himari-topics: create and check the system's Kafka topics (himari/topics.h)
 * through the Kafka admin API, against Apache Kafka in tests and Redpanda in
 * production alike.
 *
 *   himari-topics [--bootstrap HOST:PORT] [-X prop=value ...] [--sasl-password-file FILE]
 *                 [--wait SECONDS] ensure|check|list
 *
 *   ensure  create every missing topic with its partitions and configs; an
 *           existing topic with fewer partitions than the table is an error
 *   check   exit 1 unless every topic exists with at least its partitions
 *   list    print the table and what the broker has
 *
 * A tool, not a service: it blocks on the admin API with timeouts.
 */
#include <getopt.h>
#include <librdkafka/rdkafka.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "himari/common.h"
#include "himari/topics.h"

static void usage(FILE *f) {
    fprintf(f, "usage: himari-topics [--bootstrap HOST:PORT] [-X prop=value ...]"
               " [--sasl-password-file FILE] [--wait SECONDS]"
               " ensure|check|list\n"
               "  --bootstrap  brokers (default: $HIMARI_KAFKA_BOOTSTRAP or 127.0.0.1:9092)\n"
               "  -X           a librdkafka property, e.g. -X security.protocol=sasl_plaintext\n"
               "  --sasl-password-file FILE  the SASL password, read from a file (one trailing\n"
               "               newline removed), so it is not on the command line\n"
               "  --wait       seconds to wait for the broker to answer (default 60)\n");
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "himari-topics: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* The broker's partition count for a topic: -1 when absent. */
static int broker_partitions(const rd_kafka_metadata_t *md, const char *name) {
    for (int i = 0; i < md->topic_cnt; i++)
        if (strcmp(md->topics[i].topic, name) == 0)
            return md->topics[i].err ? -1 : md->topics[i].partition_cnt;
    return -1;
}

static const rd_kafka_metadata_t *fetch_metadata(rd_kafka_t *rk, int wait_s) {
    const rd_kafka_metadata_t *md = NULL;
    for (int waited = 0;; waited++) {
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 1, NULL, &md, 2000);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) return md;
        if (waited >= wait_s) die("broker not answering: %s", rd_kafka_err2str(e));
        if (waited == 0) fprintf(stderr, "==> waiting for the broker (up to %d s)\n", wait_s);
        sleep(1);
    }
}

static int create_missing(rd_kafka_t *rk, const rd_kafka_metadata_t *md) {
    rd_kafka_NewTopic_t *nt[32];
    size_t n = 0;
    char errstr[256];
    for (size_t i = 0; i < hm_topics_n; i++) {
        const hm_topic_spec *t = &hm_topics[i];
        int have = broker_partitions(md, t->name);
        if (have >= 0) {
            if (have < t->partitions) {
                fprintf(stderr, "himari-topics: %s has %d partitions, expected %d\n", t->name, have,
                        t->partitions);
                return 1;
            }
            continue;
        }
        nt[n] = rd_kafka_NewTopic_new(t->name, t->partitions, 1, errstr, sizeof(errstr));
        if (!nt[n]) die("%s: %s", t->name, errstr);
        for (const hm_topic_config *c = t->configs; c->name; c++)
            rd_kafka_NewTopic_set_config(nt[n], c->name, c->value);
        n++;
    }
    if (n == 0) {
        fprintf(stderr, "==> topics: all %zu present\n", hm_topics_n);
        return 0;
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, nt, n, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    int rc = 0;
    if (!ev) {
        fprintf(stderr, "himari-topics: CreateTopics timed out\n");
        rc = 1;
    } else {
        const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
        size_t cnt;
        const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &cnt);
        for (size_t i = 0; i < cnt; i++) {
            rd_kafka_resp_err_t e = rd_kafka_topic_result_error(tr[i]);
            const char *name = rd_kafka_topic_result_name(tr[i]);
            if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                fprintf(stderr, "himari-topics: create %s: %s\n", name,
                        rd_kafka_topic_result_error_string(tr[i]));
                rc = 1;
            } else {
                const hm_topic_spec *t = hm_topic_find(name);
                fprintf(stderr, "==> created %s (%d partitions)\n", name, t ? t->partitions : 0);
            }
        }
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy_array(nt, n);
    return rc;
}

int main(int argc, char **argv) {
    const char *bootstrap = getenv("HIMARI_KAFKA_BOOTSTRAP");
    if (!bootstrap || !*bootstrap) bootstrap = "127.0.0.1:9092";
    int wait_s = 60;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[256];
    static const struct option opts[] = {{"bootstrap", required_argument, NULL, 'b'},
                                         {"wait", required_argument, NULL, 'w'},
                                         {"sasl-password-file", required_argument, NULL, 'P'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "b:X:w:h", opts, NULL)) != -1) {
        switch (ch) {
            case 'b':
                bootstrap = optarg;
                break;
            case 'w':
                wait_s = atoi(optarg);
                break;
            case 'X': {
                char *eq = strchr(optarg, '=');
                if (!eq) die("-X %s: expected prop=value", optarg);
                *eq = '\0';
                if (rd_kafka_conf_set(conf, optarg, eq + 1, errstr, sizeof(errstr)))
                    die("-X %s: %s", optarg, errstr);
                break;
            }
            case 'P': {
                char *pw;
                size_t n;
                hm_err perr;
                if (hm_read_file(optarg, 65536, &pw, &n, &perr) != 0) die("%s", perr.msg);
                while (n > 0 && (pw[n - 1] == '\n' || pw[n - 1] == '\r'))
                    pw[--n] = '\0';
                /* Not through die(): a message would echo the secret. */
                if (rd_kafka_conf_set(conf, "sasl.password", pw, errstr, sizeof(errstr)))
                    die("--sasl-password-file: %s", errstr);
                memset(pw, 0, n);
                free(pw);
                break;
            }
            case 'h':
                usage(stdout);
                return 0;
            default:
                usage(stderr);
                return 2;
        }
    }
    const char *cmd = optind < argc ? argv[optind] : "ensure";
    if (strcmp(cmd, "ensure") && strcmp(cmd, "check") && strcmp(cmd, "list")) {
        usage(stderr);
        return 2;
    }
    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, sizeof(errstr)) ||
        rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr)))
        die("%s", errstr);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) die("%s", errstr);

    const rd_kafka_metadata_t *md = fetch_metadata(rk, wait_s);
    int rc = 0;
    if (strcmp(cmd, "ensure") == 0) {
        rc = create_missing(rk, md);
    } else {
        for (size_t i = 0; i < hm_topics_n; i++) {
            const hm_topic_spec *t = &hm_topics[i];
            int have = broker_partitions(md, t->name);
            bool ok = have >= t->partitions;
            if (!ok) rc = 1;
            if (strcmp(cmd, "list") == 0 || !ok)
                printf("%-24s partitions %2d (broker: %s%d)  %s\n", t->name, t->partitions,
                       have < 0 ? "missing " : "", have < 0 ? 0 : have, t->doc);
        }
    }
    rd_kafka_metadata_destroy(md);
    rd_kafka_destroy(rk);
    return rc;
}
