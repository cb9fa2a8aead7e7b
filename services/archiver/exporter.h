/*
 * exporter.h: the archiver's day-close scheduler. Every archive.check_interval_s it looks
 * for closed days not yet in the cold archive (export.h: ar_export_due) and exports them
 * on a libuv worker thread, one pass at a time, so the loop never waits on PostgreSQL's
 * SELECT, the Parquet writer's disk or S3. Results are logged, counted in metrics and
 * shown in Status.details from the loop thread. A failed day stays due and is tried at
 * the next check.
 */
#ifndef AR_EXPORTER_H
#define AR_EXPORTER_H

#include <uv.h>

#include "config.h"
#include "himari/control.h"
#include "himari/metrics.h"

typedef struct ar_exporter ar_exporter;

/** @brief Start the checks (the first one a second after start); cfg is read at each. */
ar_exporter *ar_exporter_new(uv_loop_t *loop, const ar_config *cfg, hm_metrics *m);
/** @brief A reload: take check_interval_s again (the other keys are read at each pass). */
void ar_exporter_reconfigure(ar_exporter *e);
/** @brief The archive's figures in Status.details. */
void ar_exporter_status(const ar_exporter *e, hm_control_status *out);
/** @brief Stop: a running pass is cancelled within 64k rows; frees when it has ended. */
void ar_exporter_close(ar_exporter *e);

#endif
