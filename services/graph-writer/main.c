/*
 * graph-writer: causal events into the Neo4j knowledge graph.
 *
 *   causal_events --> [pipeline: one graph transaction per batch, offsets committed after
 *                      it] --> WhaleTransfer, PriceMovement, CascadeEvent, FeedEvent nodes,
 *                      their entities, and PRECEDED links (docs/GRAPH.md)
 *
 * Offline: --replay FILE writes the transactions it would run (or, with --apply, runs them
 * against neo4j.*) through the same code. This file is the service's descriptor.
 */
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "himari/service.h"
#include "pipeline.h"
#include "replay.h"

enum { OPT_REPLAY, OPT_OUTPUT, OPT_DLQ, OPT_APPLY };
static const hm_service_option k_options[] = {
    [OPT_REPLAY] = {"replay", "FILE",
                    "read causal events (JSONL, '-' for stdin) and write the Neo4j "
                    "transactions they make, one request body a line, then exit",
                    true},
    [OPT_OUTPUT] = {"output", "FILE", "replay: the transactions to FILE instead of stdout", false},
    [OPT_DLQ] = {"dlq", "FILE", "replay: lines that are not events the graph holds, here", false},
    [OPT_APPLY] = {"apply", NULL, "replay: run the transactions against neo4j.* instead", false},
};

static int on_option(void *opts, size_t index, const char *arg) {
    gw_replay_opts *o = opts;
    if (index == OPT_APPLY) {
        o->apply = true;
        return 0;
    }
    return hm_replay_opts_set(&o->io, k_options[index].name, arg);
}

static int run_offline(void *cfg, void *opts) {
    return gw_replay_run(cfg, opts);
}

static int start(hm_service *svc, void *cfg, void **ctx, hm_control_hooks *hooks, hm_err *err) {
    hm_stage *st = NULL;
    int rc = gw_pipeline_start(svc, cfg, &st, err);
    return hm_stage_service_started(rc, st, ctx, hooks, gw_pipeline_status,
                                    gw_pipeline_reconfigure);
}

static const hm_service_desc k_service = {
    .id = HM_SVC_GRAPH_WRITER,
    .summary = "Merges causal_events into the Neo4j knowledge graph (events, entities, causal\n"
               "links), committing offsets only after the graph transaction committed.",
    .schema = &gw_config_schema,
    .options = k_options,
    .n_options = HM_ARRAY_LEN(k_options),
    .on_option = on_option,
    .run_offline = run_offline,
    .start = start,
    .free = hm_stage_service_free,
};

int main(int argc, char **argv) {
    static gw_config cfg; /* lives as long as the process; the stage reads it */
    static gw_replay_opts offline;
    return hm_service_main(argc, argv, &k_service, &cfg, &offline);
}
