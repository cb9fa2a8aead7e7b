/*
 * replay.h: the feature-engine over a file instead of Kafka (backfills, research,
 * tests): quality records as JSONL in, features_computed records and causal events as
 * JSONL out, through the same engine as Kafka mode, so a replay of a topic's records
 * in partition order emits what the service emitted.
 */
#ifndef FE_REPLAY_H
#define FE_REPLAY_H

#include <stdbool.h>

#include "config.h"

typedef struct fe_replay_opts {
    const char *input;  /* path, or "-" for stdin */
    const char *output; /* features_computed records; path, or "-"/NULL for stdout */
    const char *events; /* causal events; NULL: discarded */
    const char *latest; /* at the end, every symbol's latest view (by name); NULL: none */
    const char *dlq;    /* lines that are not quality records, verbatim; NULL: none */
    bool progress;      /* a progress line on stderr every second */
} fe_replay_opts;

/**
 * @brief Run the replay; a summary line goes to stderr at the end, and the first lines
 * that are not quality records are named there (line number and reason).
 * @return the process exit code: 0, or 1 on an I/O error (named on stderr).
 */
int fe_replay_run(const fe_config *cfg, const fe_replay_opts *opts);

#endif
