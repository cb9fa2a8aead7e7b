/*
 * replay.h: the feature-engine over a file instead of Kafka (backfills, research,
 * tests): quality records as JSONL in, features_computed records and causal events as
 * JSONL out, through the same engine as Kafka mode, so a replay of a topic's records
 * in partition order emits what the service emitted.
 */
#ifndef FE_REPLAY_H
#define FE_REPLAY_H

#include "config.h"
#include "himari/jsonl.h"

/*
 * Options (himari/jsonl.h's hm_replay_opts): input (--replay), output (features_computed
 * records, stdout by default), events, latest (every symbol's latest view at the end, by
 * name), dlq (lines that are not quality records), progress.
 */

/**
 * @brief Run the replay; a summary line goes to stderr at the end, and the first lines
 * that are not quality records are named there (line number and reason).
 * @return the process exit code: 0, or 1 on an I/O error (named on stderr).
 */
int fe_replay_run(const fe_config *cfg, const hm_replay_opts *opts);

#endif
