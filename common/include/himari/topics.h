/*
 * himari/topics.h: the Kafka topics of the system, in one table.
 *
 * The seed's four topics with its partitions, retention and compression, a
 * dead-letter topic for each topic a service consumes (unparseable input is
 * kept there whole, with the error in a header), and the validator's state
 * changelog (compacted; one partition per raw_market_data partition, since a
 * partition's state is restored from the changelog partition of the same number).
 * tools/himari-topics creates them; services look up names here.
 */
#ifndef HIMARI_TOPICS_H
#define HIMARI_TOPICS_H

#include <stddef.h>

#define HM_TOPIC_RAW                 "raw_market_data"
#define HM_TOPIC_QUALITY             "quality_scores"
#define HM_TOPIC_CAUSAL              "causal_events"
#define HM_TOPIC_FEATURES            "features_computed"
#define HM_TOPIC_RAW_DLQ             "raw_market_data.dlq"
#define HM_TOPIC_QUALITY_DLQ         "quality_scores.dlq"
#define HM_TOPIC_CAUSAL_DLQ          "causal_events.dlq"
#define HM_TOPIC_VALIDATOR_CHANGELOG "ingest-validator.changelog"

/** Header names on dead-letter records. */
#define HM_DLQ_HEADER_ERROR     "himari.error"        /* what was wrong, human-readable */
#define HM_DLQ_HEADER_TOPIC     "himari.source.topic" /* where the bytes were read */
#define HM_DLQ_HEADER_PARTITION "himari.source.partition"
#define HM_DLQ_HEADER_OFFSET    "himari.source.offset"
/* Present when the value is only the record's first bytes (it was larger than a message
 * may be): the whole record stays at its source coordinates for the topic's retention. */
#define HM_DLQ_HEADER_TRUNCATED      "himari.truncated"
#define HM_DLQ_HEADER_ORIGINAL_BYTES "himari.original_bytes"

typedef struct hm_topic_config {
    const char *name;
    const char *value;
} hm_topic_config;

typedef struct hm_topic_spec {
    const char *name;
    int partitions;
    hm_topic_config configs[6]; /* terminated by a {NULL, NULL} entry */
    const char *doc;
} hm_topic_spec;

extern const hm_topic_spec hm_topics[];
extern const size_t hm_topics_n;

/** @brief The spec of a topic by name, or NULL. */
const hm_topic_spec *hm_topic_find(const char *name);

#endif
