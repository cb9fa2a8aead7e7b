/*
 * gen.h: himari-sim's record generator: the market, the anomaly injector and
 * the writer composed into "give me the next line".
 *
 * This is the whole of the simulator's logic without I/O: main.c decides where
 * lines go (a file, stdout, Kafka) and how fast; tests call it directly and
 * read lines from memory. One line per call, in arrival order, each with its
 * 0-based index (seq) and, when labelled, one label line.
 */
#ifndef HIMARI_SIM_GEN_H
#define HIMARI_SIM_GEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "anomaly.h"
#include "himari/buf.h"
#include "market.h"
#include "scenario.h"

typedef struct sim_gen_opts {
    sim_market_opts market;
    sim_anomaly_opts anomaly; /* seed is taken from market.seed */
    sim_scenario_kind scenario;
} sim_gen_opts;

typedef struct sim_gen {
    sim_market *market;
    sim_anomaly anomaly;
    sim_scenario scenario;
    sim_record rec; /* the last record, as written */
    uint64_t seq;   /* lines written so far */
} sim_gen;

/** What main.c needs to know about a line it was handed. */
typedef struct sim_line {
    const char *key; /* Kafka key: the record's symbol; NULL when it has no valid one */
    size_t key_len;
    int64_t sim_ms;         /* the simulated clock when it arrived */
    sim_anomaly_kind label; /* SIM_AN_NONE: clean */
} sim_line;

/** @brief Build a generator; err names a bad option. Free with sim_gen_free(). */
int sim_gen_new(const sim_gen_opts *o, sim_gen **out, hm_err *err) HM_MUST_CHECK;
void sim_gen_free(sim_gen *g);

/**
 * @brief Append the next record as one line (with '\n') to out and, when it
 * is labelled and labels is not NULL, its label line to labels.
 * live_now_ms < 0: simulated clock (file mode); else the wall clock in ms.
 */
void sim_gen_next(sim_gen *g, int64_t live_now_ms, hm_buf *out, hm_buf *labels, sim_line *line);

#endif
