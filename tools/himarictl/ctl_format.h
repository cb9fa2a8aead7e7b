/*
 * ctl_format.h: how himarictl prints ControlService and health answers, as a
 * readable block for a person or as one JSON object per message (--json).
 *
 * Pure functions over the decoded messages, appending to an hm_buf: no I/O,
 * so the unit tests check the exact text.
 */
#ifndef HIMARICTL_CTL_FORMAT_H
#define HIMARICTL_CTL_FORMAT_H

#include <stdbool.h>

#include "grpc/health/v1/health.pb-c.h"
#include "himari/buf.h"
#include "himari/v1/control.pb-c.h"
#include "himari/v1/features.pb-c.h"

/** @brief "SERVING", "NOT_SERVING", "UNKNOWN", "SERVICE_UNKNOWN"; "STATUS_<n>" otherwise. */
const char *ctl_health_name(int status, char tmp[32]);

/** @brief "1d 02h 03m 04s", "3m 07s", "12s" (whole seconds, truncated). */
void ctl_format_duration(hm_buf *out, double seconds);

/* Each appends one block (human, ending with a newline) or one JSON object
 * followed by a newline (json). */
void ctl_format_status(hm_buf *out, const Himari__V1__Status *st, bool json);
void ctl_format_state(hm_buf *out, int state, bool json);
void ctl_format_reload(hm_buf *out, const Himari__V1__ReloadConfigResponse *r, bool json);
void ctl_format_drain(hm_buf *out, const Himari__V1__DrainResponse *r, bool json);
void ctl_format_health(hm_buf *out, const char *service, int status, bool json);
/** A FeatureService answer: the symbol's block and each exchange's (keys sorted). */
void ctl_format_features(hm_buf *out, const Himari__V1__SymbolFeatures *f, bool json);

#endif
