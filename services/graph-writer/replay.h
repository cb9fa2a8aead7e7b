/*
 * replay.h: graph-writer --replay FILE: causal events (JSONL) through the same batches and
 * statements as the service (events.h), written out as the transactions it would run
 * (--output, one request body a line), or applied to the configured Neo4j (--apply),
 * cypher/ schema first.
 */
#ifndef GW_REPLAY_H
#define GW_REPLAY_H

#include <stdbool.h>

#include "config.h"
#include "himari/jsonl.h"

typedef struct gw_replay_opts {
    hm_replay_opts io; /* --replay, --output, --dlq, --progress */
    bool apply;        /* --apply: to neo4j.* instead of --output */
} gw_replay_opts;

/** @brief Run it; the exit status (0: every line written or applied; 1: not). */
int gw_replay_run(const gw_config *cfg, const gw_replay_opts *opts);

#endif
