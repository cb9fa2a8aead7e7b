/*
 * ingest-validator: judges every raw tick for quality and passes it on.
 *
 *   raw_market_data --> [engine: checks per (exchange, symbol)] --> quality_scores
 *                                  |-> raw_market_data.dlq (unparseable, kept whole)
 *                                  |-> causal_events (feed silence / resumption)
 *
 * Kafka mode (default) runs the pipeline exactly once; --replay FILE runs the
 * same engine over JSONL. This file only parses arguments, loads the config and
 * wires the parts together.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "control.h"
#include "himari/log.h"
#include "himari/service.h"
#include "pipeline.h"
#include "replay.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: ingest-validator [--config FILE] [--replay FILE|- [--output FILE]\n"
            "                        [--events FILE] [--dlq FILE] [--progress]]\n"
            "       ingest-validator --print-config-example | --check-config | --version\n"
            "\n"
            "  --config FILE     YAML configuration (see config/ingest-validator.example.yaml);\n"
            "                    HIMARI_* environment variables override it\n"
            "  --replay FILE     judge a JSONL file (or - for stdin) instead of Kafka: one\n"
            "                    quality record per input line, in order, on stdout\n"
            "  --output FILE     replay output to FILE instead of stdout\n"
            "  --events FILE     replay: write feed-silence events here (JSONL)\n"
            "  --dlq FILE        replay: write unparseable lines here, verbatim\n"
            "  --progress        replay: a progress line on stderr every second\n"
            "  --print-config-example  print every configuration key with its default\n"
            "  --check-config    load and validate the configuration, then exit\n");
}

int main(int argc, char **argv) {
    const char *config_path = NULL;
    iv_replay_opts replay = {0};
    bool print_example = false, check_only = false;
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"replay", required_argument, NULL, 'r'},
                                         {"output", required_argument, NULL, 'o'},
                                         {"events", required_argument, NULL, 'e'},
                                         {"dlq", required_argument, NULL, 'd'},
                                         {"progress", no_argument, NULL, 'p'},
                                         {"print-config-example", no_argument, NULL, 'P'},
                                         {"check-config", no_argument, NULL, 'C'},
                                         {"version", no_argument, NULL, 'V'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (ch) {
            case 'c':
                config_path = optarg;
                break;
            case 'r':
                replay.input = optarg;
                break;
            case 'o':
                replay.output = optarg;
                break;
            case 'e':
                replay.events = optarg;
                break;
            case 'd':
                replay.dlq = optarg;
                break;
            case 'p':
                replay.progress = true;
                break;
            case 'P':
                print_example = true;
                break;
            case 'C':
                check_only = true;
                break;
            case 'V':
                printf("ingest-validator %s\n", HM_VERSION);
                return 0;
            case 'h':
                usage(stdout);
                return 0;
            default:
                usage(stderr);
                return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "ingest-validator: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    static iv_config cfg; /* lives as long as the process; the pipeline reads it */
    if (print_example) {
        hm_cfg_section sections[IV_CONFIG_SECTIONS];
        iv_config_sections(&cfg, sections);
        hm_config_write_example(sections, IV_CONFIG_SECTIONS, "ingest-validator", stdout);
        return 0;
    }
    hm_err err;
    if (iv_config_load(&cfg, config_path, &err) != 0) {
        fprintf(stderr, "ingest-validator: %s\n", err.msg);
        return 2;
    }
    if (check_only) {
        printf("ingest-validator: configuration OK\n");
        iv_config_free(&cfg);
        return 0;
    }
    if (replay.input) {
        hm_log_init("ingest-validator", HM_LOG_WARN);
        int rc = iv_replay_run(&cfg, &replay);
        iv_config_free(&cfg);
        return rc;
    }

    hm_service svc;
    if (hm_service_init(&svc, uv_default_loop(), "ingest-validator", &cfg.base, &err) != 0) {
        fprintf(stderr, "ingest-validator: %s\n", err.msg);
        return 1;
    }
    iv_pipeline *pipeline = NULL;
    iv_control *control = NULL;
    if (iv_pipeline_start(&svc, &cfg, &pipeline, &err) != 0) {
        hm_log_error("pipeline_start_failed", HM_LS("error", err.msg));
        hm_service_stop(&svc, 1);
    } else {
        control = iv_control_start(&svc, &cfg, config_path, pipeline);
    }
    int rc = hm_service_run(&svc);
    iv_control_free(control);
    iv_pipeline_free(pipeline);
    iv_config_free(&cfg);
    return rc;
}
