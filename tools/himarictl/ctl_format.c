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
