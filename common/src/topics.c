/*
 * topics.c: the topic table (see himari/topics.h). Partition counts,
 * retention and compression of the four data topics are the seed's
 * (rpk topic create ...); dead-letter topics keep 30 days so an operator has
 * time to look at what was refused and replay it.
 */
#include <string.h>

#include "himari/topics.h"

const hm_topic_spec hm_topics[] = {
    {HM_TOPIC_RAW,
     12,
     {{"retention.ms", "604800000"},
      {"compression.type", "snappy"},
      {"cleanup.policy", "delete"},
      {NULL, NULL}},
     "raw ticks from exchange connectors (JSON), keyed by symbol; 7 days"},
    {HM_TOPIC_QUALITY,
     6,
     {{"retention.ms", "1209600000"}, {"compression.type", "snappy"}, {NULL, NULL}},
     "validated ticks with quality score and issues; 14 days"},
    {HM_TOPIC_CAUSAL,
     3,
     {{"retention.ms", "2592000000"}, {"compression.type", "snappy"}, {NULL, NULL}},
     "detected market events (price moves, liquidation cascades, whale transfers); 30 days"},
    {HM_TOPIC_FEATURES,
     6,
     {{"retention.ms", "7776000000"}, {"compression.type", "snappy"}, {NULL, NULL}},
     "computed features per symbol; 90 days"},
    {HM_TOPIC_RAW_DLQ,
     3,
     {{"retention.ms", "2592000000"}, {"compression.type", "snappy"}, {NULL, NULL}},
     "raw_market_data records that could not be parsed, kept whole; 30 days"},
    {HM_TOPIC_QUALITY_DLQ,
     3,
     {{"retention.ms", "2592000000"}, {"compression.type", "snappy"}, {NULL, NULL}},
     "quality_scores records a consumer could not use, kept whole; 30 days"},
    {HM_TOPIC_CAUSAL_DLQ,
     3,
     {{"retention.ms", "2592000000"}, {"compression.type", "snappy"}, {NULL, NULL}},
     "causal_events records a consumer could not use, kept whole; 30 days"},
    {HM_TOPIC_VALIDATOR_CHANGELOG,
     12,
     {{"cleanup.policy", "compact"},
      {"compression.type", "snappy"},
      {"segment.ms", "600000"},
      {"min.cleanable.dirty.ratio", "0.1"},
      {NULL, NULL}},
     "ingest-validator state per (exchange, symbol), written in its transactions; compacted"},
};
const size_t hm_topics_n = sizeof(hm_topics) / sizeof(hm_topics[0]);

const hm_topic_spec *hm_topic_find(const char *name) {
    for (size_t i = 0; i < hm_topics_n; i++)
        if (strcmp(hm_topics[i].name, name) == 0) return &hm_topics[i];
    return NULL;
}
