/*
 * ctl_format.c: himarictl's output (see ctl_format.h). Human output is a
 * labelled block with a partitions table; JSON output uses the proto's field
 * names, enum names without their prefix, and numbers as numbers (an operator
 * pipes it into jq; 64-bit counters stay exact up to 2^53).
 *
 * Must never: do I/O or allocate outside the hm_buf it is given.
 */
#include "ctl_format.h"

#include "himari/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *ctl_health_name(int status, char tmp[32]) {
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
        &grpc__health__v1__health_check_response__serving_status__descriptor, status);
    if (v) return v->name;
    snprintf(tmp, 32, "STATUS_%d", status);
    return tmp;
}

void ctl_format_duration(hm_buf *out, double seconds) {
    if (!(seconds >= 0)) seconds = 0; /* NaN and negatives read as 0 */
    uint64_t t = (uint64_t)seconds;
    uint64_t d = t / 86400, h = (t / 3600) % 24, m = (t / 60) % 60, s = t % 60;
    if (d > 0)
        hm_buf_printf(out, "%llud %02lluh %02llum %02llus", (unsigned long long)d,
                      (unsigned long long)h, (unsigned long long)m, (unsigned long long)s);
    else if (h > 0)
        hm_buf_printf(out, "%lluh %02llum %02llus", (unsigned long long)h, (unsigned long long)m,
                      (unsigned long long)s);
    else if (m > 0)
        hm_buf_printf(out, "%llum %02llus", (unsigned long long)m, (unsigned long long)s);
    else
        hm_buf_printf(out, "%llus", (unsigned long long)s);
}

static const char *or_dash(const char *s) {
    return (s && *s) ? s : "-";
}

/* A -1 position or lag means "none yet" / "unknown" in the proto. */
static void cell_i64(char *dst, size_t n, int64_t v) {
    if (v < 0)
        snprintf(dst, n, "-");
    else
        snprintf(dst, n, "%lld", (long long)v);
}

static void status_human(hm_buf *out, const Himari__V1__Status *st) {
    char tmp[32];
    hm_buf_printf(out, "service:        %s\n", or_dash(st->service));
    hm_buf_printf(out, "instance:       %s\n", or_dash(st->instance_id));
    hm_buf_printf(out, "version:        %s\n", or_dash(st->version));
    hm_buf_printf(out, "state:          %s\n", hm_status_state_name((int)st->state, tmp));
    hm_buf_puts(out, "uptime:         ");
    ctl_format_duration(out, st->uptime_seconds);
    hm_buf_putc(out, '\n');
    hm_buf_printf(out, "config digest:  %s\n", or_dash(st->config_digest));
    hm_buf_printf(out, "records in:     %llu\n", (unsigned long long)st->records_in);
    hm_buf_printf(out, "records out:    %llu\n", (unsigned long long)st->records_out);
    hm_buf_printf(out, "transactions:   %llu committed, %llu aborted\n",
                  (unsigned long long)st->transactions_committed,
                  (unsigned long long)st->transactions_aborted);
    hm_buf_printf(out, "last error:     %s\n", or_dash(st->last_error));
    for (size_t i = 0; i < st->n_details; i++) {
        const char *k = st->details[i]->key ? st->details[i]->key : "";
        int pad = 15 - (int)strlen(k);
        hm_buf_printf(out, "%s:%*s%s\n", k, pad > 0 ? pad : 1, "", or_dash(st->details[i]->value));
    }
    if (st->n_partitions == 0) {
        hm_buf_puts(out, "partitions:     none assigned\n");
        return;
    }
    int topic_w = 5; /* "TOPIC" */
    for (size_t i = 0; i < st->n_partitions; i++) {
        int w = (int)strlen(st->partitions[i]->topic ? st->partitions[i]->topic : "");
        if (w > topic_w) topic_w = w;
    }
    hm_buf_puts(out, "partitions:\n");
    hm_buf_printf(out, "  %-*s  %9s  %14s  %12s\n", topic_w, "TOPIC", "PARTITION", "POSITION",
                  "LAG");
    for (size_t i = 0; i < st->n_partitions; i++) {
        const Himari__V1__PartitionStatus *p = st->partitions[i];
        char pos[24], lag[24];
        cell_i64(pos, sizeof(pos), p->position);
        cell_i64(lag, sizeof(lag), p->lag);
        hm_buf_printf(out, "  %-*s  %9d  %14s  %12s\n", topic_w, p->topic ? p->topic : "",
                      (int)p->partition, pos, lag);
    }
}

void ctl_format_status(hm_buf *out, const Himari__V1__Status *st, bool json) {
    if (json) {
        hm_status_json(out, st);
        hm_buf_putc(out, '\n');
    } else {
        status_human(out, st);
    }
}

void ctl_format_state(hm_buf *out, int state, bool json) {
    char tmp[32];
    const char *name = hm_status_state_name(state, tmp);
    if (json) {
        hm_buf_puts(out, "{\"state\":");
        hm_json_cstr(out, name);
        hm_buf_append(out, "}\n", 2);
    } else {
        hm_buf_printf(out, "state: %s\n", name);
    }
}

void ctl_format_reload(hm_buf *out, const Himari__V1__ReloadConfigResponse *r, bool json) {
    if (json) {
        hm_buf_puts(out, "{\"config_digest\":");
        hm_json_cstr(out, r->config_digest ? r->config_digest : "");
        hm_buf_puts(out, ",\"changed_keys\":[");
        for (size_t i = 0; i < r->n_changed_keys; i++) {
            if (i) hm_buf_putc(out, ',');
            hm_json_cstr(out, r->changed_keys[i] ? r->changed_keys[i] : "");
        }
        hm_buf_append(out, "]}\n", 3);
        return;
    }
    hm_buf_printf(out, "config digest:  %s\n", or_dash(r->config_digest));
    if (r->n_changed_keys == 0) {
        hm_buf_puts(out, "changed keys:   none\n");
        return;
    }
    hm_buf_puts(out, "changed keys:  ");
    for (size_t i = 0; i < r->n_changed_keys; i++)
        hm_buf_printf(out, " %s", r->changed_keys[i] ? r->changed_keys[i] : "");
    hm_buf_putc(out, '\n');
}

void ctl_format_drain(hm_buf *out, const Himari__V1__DrainResponse *r, bool json) {
    if (json) {
        hm_buf_puts(out, "{\"records_committed\":");
        hm_buf_u64(out, r->records_committed);
        hm_buf_append(out, "}\n", 2);
    } else {
        hm_buf_printf(out, "drained: %llu records in the final transaction\n",
                      (unsigned long long)r->records_committed);
    }
}

void ctl_format_health(hm_buf *out, const char *service, int status, bool json) {
    char tmp[32];
    const char *name = ctl_health_name(status, tmp);
    if (json) {
        hm_buf_puts(out, "{\"service\":");
        hm_json_cstr(out, service ? service : "");
        hm_buf_puts(out, ",\"status\":");
        hm_json_cstr(out, name);
        hm_buf_append(out, "}\n", 2);
    } else if (service && *service) {
        hm_buf_printf(out, "%s: %s\n", service, name);
    } else {
        hm_buf_printf(out, "%s\n", name);
    }
}

static int cmp_entry(const void *a, const void *b) {
    const Himari__V1__Features__ValuesEntry *x =
        *(const Himari__V1__Features__ValuesEntry *const *)a;
    const Himari__V1__Features__ValuesEntry *y =
        *(const Himari__V1__Features__ValuesEntry *const *)b;
    return strcmp(x->key, y->key);
}

/* The values by key, so that the output reads the same whatever order the map came in. */
static void format_block(hm_buf *out, const Himari__V1__Features *f, bool json) {
    Himari__V1__Features__ValuesEntry **v = hm_xmalloc((f->n_values + 1) * sizeof(*v));
    memcpy(v, f->values, f->n_values * sizeof(*v));
    qsort(v, f->n_values, sizeof(*v), cmp_entry);
    if (json) {
        HM_BUF_PUT_LIT(out, "{\"symbol\":");
        hm_json_cstr(out, f->symbol);
        HM_BUF_PUT_LIT(out, ",\"exchange\":");
        hm_json_cstr(out, f->exchange);
        HM_BUF_PUT_LIT(out, ",\"timestamp_ms\":");
        hm_buf_i64(out, f->timestamp_ms);
        HM_BUF_PUT_LIT(out, ",\"ticks\":");
        hm_buf_u64(out, f->ticks);
        HM_BUF_PUT_LIT(out, ",\"values\":{");
        for (size_t i = 0; i < f->n_values; i++) {
            if (i) hm_buf_putc(out, ',');
            hm_json_cstr(out, v[i]->key);
            hm_buf_putc(out, ':');
            hm_json_double(out, v[i]->value);
        }
        HM_BUF_PUT_LIT(out, "}}");
    } else {
        hm_buf_printf(out, "%s %s  (newest tick %lld, %llu ticks)\n", f->symbol,
                      f->exchange[0] ? f->exchange : "all exchanges", (long long)f->timestamp_ms,
                      (unsigned long long)f->ticks);
        for (size_t i = 0; i < f->n_values; i++) {
            hm_buf_printf(out, "  %-28s %.10g\n", v[i]->key, v[i]->value);
        }
    }
    free(v);
}

void ctl_format_features(hm_buf *out, const Himari__V1__SymbolFeatures *f, bool json) {
    if (json) {
        HM_BUF_PUT_LIT(out, "{\"features\":");
        format_block(out, f->features, true);
        HM_BUF_PUT_LIT(out, ",\"exchanges\":[");
        for (size_t i = 0; i < f->n_exchanges; i++) {
            if (i) hm_buf_putc(out, ',');
            format_block(out, f->exchanges[i], true);
        }
        HM_BUF_PUT_LIT(out, "]}\n");
        return;
    }
    format_block(out, f->features, false);
    for (size_t i = 0; i < f->n_exchanges; i++)
        format_block(out, f->exchanges[i], false);
}
