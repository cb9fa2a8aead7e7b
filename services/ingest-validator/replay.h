/*
 * replay.h: the ingest-validator over a file instead of Kafka (backfills,
 * research, tests): JSONL in, exactly one quality record per input line out,
 * in input order, through the same engine as Kafka mode.
 */
#ifndef IV_REPLAY_H
#define IV_REPLAY_H

#include "config.h"
#include "himari/jsonl.h"

/*
 * Options (himari/jsonl.h's hm_replay_opts): input (--replay), output (quality records,
 * stdout by default), events (feed_silence/feed_resumed), dlq (unparseable lines,
 * verbatim), progress.
 */

/**
 * @brief Run the replay. The freshness clock is always the event clock (a
 * replay has no ingest times). Prints a summary line on stderr at the end.
 * @return the process exit code: 0, or 1 on an I/O error (named on stderr).
 */
int iv_replay_run(const iv_config *cfg, const hm_replay_opts *opts);

#endif
