/*
 * ingest-validator: judges every raw tick for quality and passes it on.
 *
 *   raw_market_data --> [engine: checks per (exchange, symbol)] --> quality_scores
 *                                  |-> raw_market_data.dlq (unparseable, kept whole)
 *                                  |-> causal_events (feed silence / resumption)
 *
 * Kafka mode (default) runs the engine on the stage framework, exactly once
 * (pipeline.c); --replay FILE runs the same engine over JSONL (replay.c). This file
 * is the service's descriptor: its options, its configuration schema, how it starts.
 */
#include "config.h"
#include "himari/service.h"
#include "pipeline.h"
#include "replay.h"

enum { OPT_REPLAY, OPT_OUTPUT, OPT_EVENTS, OPT_DLQ, OPT_PROGRESS };

static const hm_service_option k_options[] = {
    [OPT_REPLAY] = {"replay", "FILE",
                    "judge a JSONL file (- for stdin) instead of Kafka: one quality\n"
                    "                           record per input line, in order, on stdout",
                    true},
    [OPT_OUTPUT] = {"output", "FILE", "replay output to FILE instead of stdout", false},
    [OPT_EVENTS] = {"events", "FILE", "replay: write feed-silence events here (JSONL)", false},
    [OPT_DLQ] = {"dlq", "FILE", "replay: write unparseable lines here, verbatim", false},
    [OPT_PROGRESS] = {"progress", NULL, "replay: a progress line on stderr every second", false},
};

static int on_option(void *opts, size_t index, const char *arg) {
    return hm_replay_opts_set(opts, k_options[index].name, arg);
}

static int run_replay(void *cfg, void *opts) {
    return iv_replay_run(cfg, opts);
}

static int start(hm_service *svc, void *cfg, void **ctx, hm_control_hooks *hooks, hm_err *err) {
    hm_stage *st = NULL;
    int rc = iv_pipeline_start(svc, cfg, &st, err);
    return hm_stage_service_started(rc, st, ctx, hooks, NULL, iv_pipeline_reconfigure);
}

static const hm_service_desc k_service = {
    .id = HM_SVC_INGEST_VALIDATOR,
    .summary = "Judges every raw tick on raw_market_data for quality and writes one quality\n"
               "record per tick to quality_scores, exactly once.",
    .schema = &iv_config_schema,
    .options = k_options,
    .n_options = HM_ARRAY_LEN(k_options),
    .on_option = on_option,
    .run_offline = run_replay,
    .start = start,
    .free = hm_stage_service_free,
};

int main(int argc, char **argv) {
    static iv_config cfg; /* lives as long as the process; the stage reads it */
    static hm_replay_opts replay;
    return hm_service_main(argc, argv, &k_service, &cfg, &replay);
}
