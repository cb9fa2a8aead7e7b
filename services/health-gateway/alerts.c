/*
 * alerts.c: Alertmanager's webhook notifications into the table of firing alerts
 * (alerts.h). Parsed whole before anything changes, so a bad notification changes nothing.
 */
#include "alerts.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *str_of(json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : "";
}

static void remove_at(hg_alerts *a, size_t i) {
    free(a->items[i].labels_json);
    memmove(&a->items[i], &a->items[i + 1], (a->n - i - 1) * sizeof(a->items[0]));
    a->n--;
}

static size_t find(const hg_alerts *a, const char *fingerprint) {
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->items[i].fingerprint, fingerprint) == 0) return i;
    return a->n;
}

static void upsert(hg_alerts *a, json_t *al, int64_t now_ms) {
    const char *fp = str_of(al, "fingerprint");
    size_t i = find(a, fp);
    if (i == a->n) {
        if (a->n == HG_ALERTS_MAX) {
            size_t oldest = 0;
            for (size_t j = 1; j < a->n; j++)
                if (a->items[j].received_ms < a->items[oldest].received_ms) oldest = j;
            remove_at(a, oldest);
            i = a->n;
        }
        memset(&a->items[i], 0, sizeof(a->items[i]));
        a->n++;
    }
    hg_alert *x = &a->items[i];
    json_t *labels = json_object_get(al, "labels");
    json_t *ann = json_object_get(al, "annotations");
    snprintf(x->fingerprint, sizeof(x->fingerprint), "%s", fp);
    snprintf(x->name, sizeof(x->name), "%s", str_of(labels, "alertname"));
    snprintf(x->severity, sizeof(x->severity), "%s", str_of(labels, "severity"));
    const char *summary = str_of(ann, "summary");
    snprintf(x->summary, sizeof(x->summary), "%s", *summary ? summary : str_of(ann, "description"));
    snprintf(x->starts_at, sizeof(x->starts_at), "%s", str_of(al, "startsAt"));
    free(x->labels_json);
    x->labels_json =
        json_is_object(labels) ? json_dumps(labels, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    x->received_ms = now_ms;
}

int hg_alerts_apply(hg_alerts *a, const char *body, size_t len, int64_t now_ms, char *err,
                    size_t err_size) {
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        snprintf(err, err_size, "not JSON: %s (line %d)", je.text, je.line);
        return -EINVAL;
    }
    json_t *alerts = json_object_get(root, "alerts");
    if (!json_is_array(alerts)) {
        snprintf(err, err_size,
                 "no \"alerts\" array (an Alertmanager webhook notification has one)");
        json_decref(root);
        return -EINVAL;
    }
    size_t idx;
    json_t *al;
    json_array_foreach(alerts, idx, al) {
        const char *st = str_of(al, "status");
        if (!*str_of(al, "fingerprint") ||
            (strcmp(st, "firing") != 0 && strcmp(st, "resolved") != 0)) {
            snprintf(err, err_size,
                     "alerts[%zu]: needs a fingerprint and a status of firing or resolved", idx);
            json_decref(root);
            return -EINVAL;
        }
    }
    json_array_foreach(alerts, idx, al) {
        if (strcmp(str_of(al, "status"), "firing") == 0) {
            upsert(a, al, now_ms);
            a->firing_received++;
        } else {
            size_t i = find(a, str_of(al, "fingerprint"));
            if (i < a->n) remove_at(a, i);
            a->resolved_received++;
        }
    }
    json_decref(root);
    return 0;
}

void hg_alerts_json(const hg_alerts *a, hm_buf *out) {
    hm_buf_putc(out, '[');
    for (size_t i = 0; i < a->n; i++) {
        const hg_alert *x = &a->items[i];
        if (i) hm_buf_putc(out, ',');
        hm_buf_puts(out, "{\"name\":");
        hm_json_cstr(out, x->name);
        hm_json_member_str(out, "status", "firing");
        hm_json_member_str(out, "severity", x->severity);
        hm_json_member_str(out, "summary", x->summary);
        hm_json_member_str(out, "starts_at", x->starts_at);
        hm_json_member_str(out, "fingerprint", x->fingerprint);
        hm_buf_puts(out, ",\"labels\":");
        hm_buf_puts(out, x->labels_json ? x->labels_json : "{}");
        hm_buf_putc(out, '}');
    }
    hm_buf_putc(out, ']');
}

void hg_alerts_free(hg_alerts *a) {
    for (size_t i = 0; i < a->n; i++)
        free(a->items[i].labels_json);
    a->n = 0;
}
