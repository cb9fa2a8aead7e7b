/*
 * alerts.h: the alerts Alertmanager says are firing, from its webhook notifications
 * (payload version 4: {"status", "alerts": [{"status", "labels", "annotations",
 * "startsAt", "endsAt", "fingerprint"}, ...]}).
 *
 * A firing alert is added or updated (keyed by fingerprint), a resolved one removed. The
 * table is what Alertmanager last said: a gateway restarted learns the alerts still firing
 * at the next notification of their group (group_interval / repeat_interval).
 */
#ifndef HG_ALERTS_H
#define HG_ALERTS_H

#include <stddef.h>
#include <stdint.h>

#include "himari/buf.h"

#define HG_ALERTS_MAX 256

typedef struct hg_alert {
    char fingerprint[64];
    char name[128];     /* labels.alertname */
    char severity[32];  /* labels.severity */
    char summary[512];  /* annotations.summary, or .description */
    char starts_at[40]; /* RFC 3339, as Alertmanager sent it */
    char *labels_json;  /* the labels object, as JSON (malloc'd) */
    int64_t received_ms;
} hg_alert;

typedef struct hg_alerts {
    hg_alert items[HG_ALERTS_MAX];
    size_t n;
    uint64_t firing_received;   /* alerts received with status firing */
    uint64_t resolved_received; /* ... resolved */
} hg_alerts;

/**
 * @brief Apply one notification. @return 0, or -EINVAL with err naming what is wrong
 * (not JSON, no alerts array, an alert without fingerprint or status); the table is then
 * unchanged. Past HG_ALERTS_MAX firing alerts, the oldest received is dropped.
 */
int hg_alerts_apply(hg_alerts *a, const char *body, size_t len, int64_t now_ms, char *err,
                    size_t err_size);

/** @brief The firing alerts as a JSON array (docs/HEALTH_GATEWAY.md, "alerts"). */
void hg_alerts_json(const hg_alerts *a, hm_buf *out);

void hg_alerts_free(hg_alerts *a);

#endif
