/*
 * pg_probe.h: one PostgreSQL probe on the loop: connect (libpq non-blocking, a uv_poll on
 * its socket), SELECT 1, disconnect. A new connection each time, so authentication and
 * the server's accepting backends are what is checked, not a connection kept from before.
 */
#ifndef HG_PG_PROBE_H
#define HG_PG_PROBE_H

#include <uv.h>

#include "config.h"

typedef struct hg_pg_probe hg_pg_probe;

/** The end: err 0 (SELECT 1 answered) or -EIO with libpq's message in error. */
typedef void (*hg_pg_probe_cb)(void *ud, int err, const char *error);

/**
 * @brief Start a probe; cb runs once on the loop, never from within this call, unless
 * hg_pg_probe_cancel comes first. The handle is valid until then.
 */
hg_pg_probe *hg_pg_probe_start(uv_loop_t *loop, const hg_pg_config *cfg, hg_pg_probe_cb cb,
                               void *ud);
/** @brief Abandon the probe (no callback); its connection and handles are freed. */
void hg_pg_probe_cancel(hg_pg_probe *p);

#endif
