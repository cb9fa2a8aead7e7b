/*
 * replay.h: the ingest-validator over a file instead of Kafka (backfills,
 * research, tests): JSONL in, exactly one quality record per input line out,
 * in input order, through the same engine as Kafka mode.
 */
#ifndef IV_REPLAY_H
#define IV_REPLAY_H

#include "config.h"

typedef struct iv_replay_opts {
    const char *input;  /* path, or "-" for stdin */
    const char *output; /* path, or "-"/NULL for stdout */
    const char *events; /* feed_silence/feed_resumed events as JSONL; NULL: discarded */
    const char *dlq;    /* unparseable lines, verbatim; NULL: not written */
    bool progress;      /* a progress line on stderr every second */
} iv_replay_opts;

/**
 * @brief Run the replay. The freshness clock is always the event clock (a
 * replay has no ingest times). Prints a summary line on stderr at the end.
 * @return the process exit code: 0, or 1 on an I/O error (named on stderr).
 */
int iv_replay_run(const iv_config *cfg, const iv_replay_opts *opts);

#endif
