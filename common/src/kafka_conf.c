/*
 * kafka_conf.c: the "kafka.*" configuration keys, building librdkafka confs
 * from them, and the events every client handles the same way: librdkafka's
 * own log lines (re-emitted as our JSON log lines), errors (counted, logged,
 * fatal ones reported to the owner) and statistics (parsed into metrics).
 *
 * Runs on the loop thread only (events are drained there).
 */
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include "himari/log.h"
#include "kafka_int.h"

#define KC(field) offsetof(hm_kafka_config, field)

const hm_cfg_key hm_kafka_config_keys[] = {
    {"kafka.bootstrap_servers", HM_CFG_STR, KC(bootstrap_servers), "127.0.0.1:9092", 0, 0, -1,
     "Kafka/Redpanda brokers, host:port[,host:port]"},
    {"kafka.security_protocol", HM_CFG_STR, KC(security_protocol), "plaintext", 0, 0, -1,
     "plaintext | ssl | sasl_plaintext | sasl_ssl"},
    {"kafka.sasl_mechanism", HM_CFG_STR, KC(sasl_mechanism), "", 0, 0, -1,
     "SASL mechanism when security_protocol is sasl_*: PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512"},
    {"kafka.sasl_username", HM_CFG_STR, KC(sasl_username), "", 0, 0, -1, "SASL user name"},
    {"kafka.sasl_password", HM_CFG_SECRET, KC(sasl_password), NULL, 0, 0, -1,
     "SASL password (prefer sasl_password_file)"},
    {"kafka.ssl_ca_location", HM_CFG_STR, KC(ssl_ca_location), "", 0, 0, -1,
     "CA certificate file for ssl/sasl_ssl; empty: system default"},
    {"kafka.statistics_interval_ms", HM_CFG_INT, KC(statistics_interval_ms), "5000", 0, 0, 3600000,
     "librdkafka statistics into metrics every N ms; 0 disables"},
    {"kafka.properties", HM_CFG_STR_MAP, KC(properties), NULL, HM_CFG_SECRET_VALUES, 0, -1,
     "further librdkafka properties, passed as is (e.g. socket.keepalive.enable: 'true'); a "
     "secret one (ssl.key.password, ...) may be given as <name>_file: /run/secrets/x; "
     "consumers default fetch.queue.backoff.ms to 10 (librdkafka: 1000)"},
};
const size_t hm_kafka_config_keys_n = HM_ARRAY_LEN(hm_kafka_config_keys);

int hm_kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, hm_err *err) {
    char errstr[256];
    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) == RD_KAFKA_CONF_OK) return 0;
    if (!hm_config_is_secret_name(name))
        return hm_err_set(err, -EINVAL, "kafka: %s=%s: %s", name, value, errstr);
    /* A secret (kafka.properties.ssl.key.password, ...): neither our message nor
     * librdkafka's, should it quote the value, may carry it. */
    if (*value && strstr(errstr, value))
        return hm_err_set(err, -EINVAL, "kafka: %s: invalid value (not shown: a secret)", name);
    return hm_err_set(err, -EINVAL, "kafka: %s: %s", name, errstr);
}

static bool nonempty(const char *s) {
    return s && *s;
}

int hm_kafka_conf_apply(rd_kafka_conf_t *conf, const hm_kafka_config *kc, hm_err *err) {
    int rc;
    if (nonempty(kc->bootstrap_servers) &&
        (rc = hm_kafka_conf_set(conf, "bootstrap.servers", kc->bootstrap_servers, err)))
        return rc;
    if (nonempty(kc->security_protocol) &&
        (rc = hm_kafka_conf_set(conf, "security.protocol", kc->security_protocol, err)))
        return rc;
    if (nonempty(kc->sasl_mechanism) &&
        (rc = hm_kafka_conf_set(conf, "sasl.mechanisms", kc->sasl_mechanism, err)))
        return rc;
    if (nonempty(kc->sasl_username) &&
        (rc = hm_kafka_conf_set(conf, "sasl.username", kc->sasl_username, err)))
        return rc;
    /* A secret name: hm_kafka_conf_set keeps the value out of its message. */
    if (nonempty(kc->sasl_password) &&
        (rc = hm_kafka_conf_set(conf, "sasl.password", kc->sasl_password, err)))
        return rc;
    if (nonempty(kc->ssl_ca_location) &&
        (rc = hm_kafka_conf_set(conf, "ssl.ca.location", kc->ssl_ca_location, err)))
        return rc;
    for (size_t i = 0; i < kc->properties.n; i++)
        if ((rc = hm_kafka_conf_set(conf, kc->properties.keys[i], kc->properties.vals[i], err)))
            return rc;
    return 0;
}

/* When a partition's prefetched records fill the local queue (queued.min.messages,
 * queued.max.messages.kbytes), librdkafka fetches for it again only after
 * fetch.queue.backoff.ms, 1 s by default. A consumer that drains 64 MB in less (the
 * archiver takes ~50 MB/s) then starves for the rest of that second: with 1 s it made
 * 122 k records/s, with 10 ms 166 k (docs/BENCHMARKS.md, "Archiver"). */
#define FETCH_QUEUE_BACKOFF_MS "10"

static bool has_property(const hm_kafka_config *kc, const char *name) {
    for (size_t i = 0; i < kc->properties.n; i++)
        if (strcmp(kc->properties.keys[i], name) == 0) return true;
    return false;
}

int hm_kafka_conf_consumer_defaults(rd_kafka_conf_t *conf, const hm_kafka_config *kc, hm_err *err) {
    if (has_property(kc, "fetch.queue.backoff.ms")) return 0;
    return hm_kafka_conf_set(conf, "fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS, err);
}

rd_kafka_conf_t *hm_kafka_conf_new(const hm_kafka_config *kc, const char *client_id, int events,
                                   hm_err *err) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char interval[32];
    snprintf(interval, sizeof(interval), "%lld", (long long)kc->statistics_interval_ms);
    events |= RD_KAFKA_EVENT_LOG | RD_KAFKA_EVENT_ERROR;
    if (kc->statistics_interval_ms > 0) events |= RD_KAFKA_EVENT_STATS;
    if (hm_kafka_conf_set(conf, "client.id", client_id ? client_id : "himari", err) ||
        /* Logs become events on the main queue, so they reach us on the loop. */
        hm_kafka_conf_set(conf, "log.queue", "true", err) ||
        hm_kafka_conf_set(conf, "statistics.interval.ms", interval, err) ||
        hm_kafka_conf_apply(conf, kc, err)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_events(conf, events);
    return conf;
}

rd_kafka_t *hm_kafka_new_consumer(rd_kafka_conf_t *conf, const char *what, hm_err *err) {
    char errstr[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        hm_err_set(err, -EINVAL, "%s: %s", what, errstr);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    return rk;
}

void hm_kafka_metrics_init(hm_kafka_metrics *km, hm_metrics *m) {
    km->errors = hm_metrics_counter(m, "himari_kafka_errors_total",
                                    "Errors reported by Kafka clients, by client and error name.",
                                    "client,error");
    km->broker_rtt = hm_metrics_gauge(m, "himari_kafka_broker_rtt_seconds",
                                      "Average broker round-trip time over the last statistics "
                                      "window.",
                                      "client,broker");
    km->queue_msgs = hm_metrics_gauge(m, "himari_kafka_client_queue_messages",
                                      "Messages in the client's local queues.", "client");
    km->tx_msgs = hm_metrics_counter(m, "himari_kafka_client_tx_messages_total",
                                     "Messages sent to brokers, from client statistics.", "client");
    km->rx_msgs =
        hm_metrics_counter(m, "himari_kafka_client_rx_messages_total",
                           "Messages received from brokers, from client statistics.", "client");
}

/* librdkafka's statistics JSON: a few figures into metrics. */
static void stats_to_metrics(const char *client, hm_kafka_metrics *km, const char *json) {
    json_error_t jerr;
    json_t *root = json_loads(json, 0, &jerr);
    if (!root) return;
    json_t *v;
    if ((v = json_object_get(root, "msg_cnt")) && json_is_integer(v))
        hm_gauge_set(hm_metrics_gauge_child(km->queue_msgs, client), (double)json_integer_value(v));
    if ((v = json_object_get(root, "txmsgs")) && json_is_integer(v))
        hm_metrics_counter_child(km->tx_msgs, client)->value = (double)json_integer_value(v);
    if ((v = json_object_get(root, "rxmsgs")) && json_is_integer(v))
        hm_metrics_counter_child(km->rx_msgs, client)->value = (double)json_integer_value(v);
    json_t *brokers = json_object_get(root, "brokers");
    const char *name;
    json_t *b;
    json_object_foreach(brokers, name, b) {
        json_t *nodeid = json_object_get(b, "nodeid");
        if (json_is_integer(nodeid) && json_integer_value(nodeid) < 0) continue; /* bootstrap */
        json_t *rtt = json_object_get(json_object_get(b, "rtt"), "avg");
        if (json_is_integer(rtt))
            hm_gauge_set(hm_metrics_gauge_child(km->broker_rtt, client, name),
                         (double)json_integer_value(rtt) / 1e6); /* us -> s */
    }
    json_decref(root);
}

bool hm_kafka_common_event(rd_kafka_t *rk, const char *client, hm_kafka_metrics *km,
                           rd_kafka_event_t *ev, char *fatal_buf, size_t fatal_buf_size,
                           bool *fatal) {
    *fatal = false;
    switch (rd_kafka_event_type(ev)) {
        case RD_KAFKA_EVENT_LOG: {
            const char *fac, *str;
            int level;
            if (rd_kafka_event_log(ev, &fac, &str, &level) == 0) {
                hm_log_level l = level <= LOG_ERR       ? HM_LOG_ERROR
                                 : level <= LOG_WARNING ? HM_LOG_WARN
                                 : level <= LOG_INFO    ? HM_LOG_INFO
                                                        : HM_LOG_DEBUG;
                hm_log_limited(l, "kafka_client_log", 120, HM_LS("client", client),
                               HM_LS("facility", fac), HM_LS("message", str));
            }
            return true;
        }
        case RD_KAFKA_EVENT_ERROR: {
            rd_kafka_resp_err_t e = rd_kafka_event_error(ev);
            hm_counter_inc(hm_metrics_counter_child(km->errors, client, rd_kafka_err2name(e)));
            if (rd_kafka_event_error_is_fatal(ev)) {
                char reason[512];
                rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, reason, sizeof(reason));
                snprintf(fatal_buf, fatal_buf_size, "%s: %s", rd_kafka_err2name(orig), reason);
                *fatal = true;
                hm_log_error("kafka_fatal_error", HM_LS("client", client),
                             HM_LS("error", fatal_buf));
            } else {
                /* Transient (broker down, timeouts): librdkafka retries by itself. */
                hm_log_limited(HM_LOG_WARN, "kafka_error", 60, HM_LS("client", client),
                               HM_LS("error", rd_kafka_err2name(e)),
                               HM_LS("reason", rd_kafka_event_error_string(ev)));
            }
            return true;
        }
        case RD_KAFKA_EVENT_STATS:
            stats_to_metrics(client, km, rd_kafka_event_stats(ev));
            return true;
        default:
            return false;
    }
}
