/*
 * himari/status.h: a service's himari.v1.Status as JSON, the one rendering
 * shared by every service's GET /status and by `himarictl --json`, so an
 * operator sees the same fields whichever way they ask. Field names are the
 * proto's; enums are their names without the prefix; numbers stay numbers.
 */
#ifndef HIMARI_STATUS_H
#define HIMARI_STATUS_H

#include "himari/buf.h"
#include "himari/v1/control.pb-c.h"

/** @brief "RUNNING", "PAUSED", ... (without "SERVICE_STATE_"); "STATE_<n>" otherwise. */
const char *hm_status_state_name(int state, char tmp[32]);

/** @brief Append st as one JSON object (no newline). */
void hm_status_json(hm_buf *out, const Himari__V1__Status *st);

#endif
