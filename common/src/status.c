/*
 * status.c: himari.v1.Status as JSON (see himari/status.h). Pure: appends to
 * the hm_buf it is given, never allocates elsewhere, no I/O.
 */
#include "himari/status.h"

#include <stdio.h>
#include <string.h>

const char *hm_status_state_name(int state, char tmp[32]) {
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&himari__v1__service_state__descriptor, state);
    static const char prefix[] = "SERVICE_STATE_";
    if (v && strncmp(v->name, prefix, sizeof(prefix) - 1) == 0) return v->name + sizeof(prefix) - 1;
    snprintf(tmp, 32, "STATE_%d", state);
    return tmp;
}

static void json_str_field(hm_buf *out, const char *key, const char *v, bool *first) {
    if (!*first) hm_buf_putc(out, ',');
    *first = false;
    hm_json_key(out, key);
    hm_json_cstr(out, v ? v : "");
}

static void json_u64_field(hm_buf *out, const char *key, uint64_t v, bool *first) {
    if (!*first) hm_buf_putc(out, ',');
    *first = false;
    hm_json_key(out, key);
    hm_buf_u64(out, v);
}

void hm_status_json(hm_buf *out, const Himari__V1__Status *st) {
    char tmp[32];
    bool first = true;
    hm_buf_putc(out, '{');
    json_str_field(out, "service", st->service, &first);
    json_str_field(out, "instance_id", st->instance_id, &first);
    json_str_field(out, "version", st->version, &first);
    json_str_field(out, "state", hm_status_state_name((int)st->state, tmp), &first);
    json_str_field(out, "config_digest", st->config_digest, &first);
    hm_buf_putc(out, ',');
    hm_json_key(out, "uptime_seconds");
    hm_json_double(out, st->uptime_seconds);
    json_u64_field(out, "records_in", st->records_in, &first);
    json_u64_field(out, "records_out", st->records_out, &first);
    json_u64_field(out, "transactions_committed", st->transactions_committed, &first);
    json_u64_field(out, "transactions_aborted", st->transactions_aborted, &first);
    json_str_field(out, "last_error", st->last_error, &first);
    hm_buf_putc(out, ',');
    hm_json_key(out, "partitions");
    hm_buf_putc(out, '[');
    for (size_t i = 0; i < st->n_partitions; i++) {
        const Himari__V1__PartitionStatus *p = st->partitions[i];
        if (i) hm_buf_putc(out, ',');
        hm_buf_putc(out, '{');
        hm_json_key(out, "topic");
        hm_json_cstr(out, p->topic ? p->topic : "");
        hm_buf_putc(out, ',');
        hm_json_key(out, "partition");
        hm_buf_i64(out, p->partition);
        hm_buf_putc(out, ',');
        hm_json_key(out, "position");
        hm_buf_i64(out, p->position);
        hm_buf_putc(out, ',');
        hm_json_key(out, "lag");
        hm_buf_i64(out, p->lag);
        hm_buf_putc(out, '}');
    }
    hm_buf_append(out, "],", 2);
    hm_json_key(out, "details");
    hm_buf_putc(out, '{');
    for (size_t i = 0; i < st->n_details; i++) {
        if (i) hm_buf_putc(out, ',');
        hm_json_key(out, st->details[i]->key ? st->details[i]->key : "");
        hm_json_cstr(out, st->details[i]->value ? st->details[i]->value : "");
    }
    hm_buf_append(out, "}}", 2);
}
