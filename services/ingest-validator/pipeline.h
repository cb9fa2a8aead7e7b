/*
 * pipeline.h: the ingest-validator in Kafka mode: consume raw_market_data,
 * judge each record with the engine, and produce quality records, dead
 * letters, events and state changelog in Kafka transactions together with the
 * consumed offsets (consume-transform-produce, exactly once).
 */
#ifndef IV_PIPELINE_H
#define IV_PIPELINE_H

#include "config.h"
#include "himari/service.h"

typedef struct iv_pipeline iv_pipeline;

/**
 * @brief Create the clients, initialise transactions and start consuming on
 * svc's loop. Stops gracefully on svc's stop (commit, leave the group).
 * cfg must outlive the pipeline (a reload swaps it through iv_pipeline_reconfigure).
 */
int iv_pipeline_start(hm_service *svc, iv_config *cfg, iv_pipeline **out,
                      hm_err *err) HM_MUST_CHECK;

/**
 * @brief Free the pipeline after the service's loop has ended (hm_service_run
 * returned); NULL is fine.
 */
void iv_pipeline_free(iv_pipeline *p);

typedef enum iv_pipeline_state {
    IV_STARTING, /* initialising transactions, restoring state, waiting for partitions */
    IV_RUNNING,
    IV_PAUSED,   /* assigned, consumption paused by an operator */
    IV_DRAINING, /* committing the last transaction before exiting */
} iv_pipeline_state;

/** What GetStatus and /status report (the partitions come from the consumer). */
typedef struct iv_pipeline_status {
    iv_pipeline_state state;
    uint64_t records_in;  /* records judged */
    uint64_t records_out; /* quality records acknowledged by the broker */
    uint64_t transactions_committed;
    uint64_t transactions_aborted;
    const char *last_error; /* "" when none; valid until the next loop turn */
    const char *transactional_id;
} iv_pipeline_status;

void iv_pipeline_get_status(iv_pipeline *p, iv_pipeline_status *out);
/** @brief The consumer (positions and lag per partition), or NULL once closed. */
hm_consumer *iv_pipeline_consumer(iv_pipeline *p);

/** @brief Stop / restart consumption (lag grows meanwhile; nothing is lost). */
void iv_pipeline_pause(iv_pipeline *p);
void iv_pipeline_resume(iv_pipeline *p);

/**
 * @brief Stop consuming, commit what is in flight and exit 0 (the service's
 * graceful stop); done runs once the last transaction committed, before the
 * process exits, with that transaction's record count (0 when none was open).
 */
void iv_pipeline_drain(iv_pipeline *p, void (*done)(void *ud, uint64_t records), void *ud);

/** @brief Apply a reloaded configuration (already swapped into the cfg). */
void iv_pipeline_reconfigure(iv_pipeline *p);

#endif
