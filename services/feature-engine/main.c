/*
 * feature-engine: rolling features of every market, for trading strategies.
 *
 *   quality_scores --> [engine: exact 1 s-bucket windows per (exchange, symbol) and per
 *                       symbol across exchanges] --> features_computed (per interval)
 *                                                |-> causal_events (price movements,
 *                                                |   liquidation cascades, whale transfers)
 *
 * Kafka mode (default) runs the engine on the stage framework, exactly once, its state
 * rebuilt from the input after a restart (pipeline.c); --replay FILE runs the same engine
 * over JSONL (replay.c). This file is the service's descriptor.
 */
#include "config.h"
#include "himari/service.h"
#include "pipeline.h"
#include "replay.h"

enum { OPT_REPLAY, OPT_OUTPUT, OPT_EVENTS, OPT_LATEST, OPT_DLQ, OPT_PROGRESS };

static const hm_service_option k_options[] = {
    [OPT_REPLAY] =
        {"replay", "FILE",
         "compute features over a JSONL file of quality records (- for stdin)\n"
         "                           instead of Kafka: features_computed records on stdout",
         true},
    [OPT_OUTPUT] = {"output", "FILE", "replay: features to FILE instead of stdout", false},
    [OPT_EVENTS] = {"events", "FILE", "replay: write causal events here (JSONL)", false},
    [OPT_LATEST] = {"latest", "FILE", "replay: at the end, every symbol's latest view here", false},
    [OPT_DLQ] = {"dlq", "FILE", "replay: write lines that are not quality records here", false},
    [OPT_PROGRESS] = {"progress", NULL, "replay: a progress line on stderr every second", false},
};

static int on_option(void *opts, size_t index, const char *arg) {
    return hm_replay_opts_set(opts, k_options[index].name, arg);
}

static int run_replay(void *cfg, void *opts) {
    return fe_replay_run(cfg, opts);
}

static int start(hm_service *svc, void *cfg, void **ctx, hm_control_hooks *hooks, hm_err *err) {
    hm_stage *st = NULL;
    int rc = fe_pipeline_start(svc, cfg, &st, err);
    return hm_stage_service_started(rc, st, ctx, hooks, NULL, fe_pipeline_reconfigure);
}

static const hm_service_desc k_service = {
    .id = HM_SVC_FEATURE_ENGINE,
    .summary = "Computes rolling features of every market from quality_scores and writes\n"
               "them to features_computed, with causal events to causal_events, exactly once.",
    .schema = &fe_config_schema,
    .options = k_options,
    .n_options = HM_ARRAY_LEN(k_options),
    .on_option = on_option,
    .run_offline = run_replay,
    .start = start,
    .free = hm_stage_service_free,
};

int main(int argc, char **argv) {
    static fe_config cfg; /* lives as long as the process; the stage reads it */
    static hm_replay_opts replay;
    return hm_service_main(argc, argv, &k_service, &cfg, &replay);
}
