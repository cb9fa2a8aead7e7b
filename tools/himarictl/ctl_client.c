/*
 * ctl_client.c: the blocking gRPC client behind himarictl (see ctl_client.h).
 *
 * Each call gets its own pluck completion queue, so calls from several
 * threads (the tests run many at once) never see each other's events. A unary
 * call is one batch of six ops; a stream is a send batch, a status batch
 * started at once (it completes when the call ends) and one receive batch
 * per message.
 *
 * Must never: print or log the authorization value; wait without bound on a
 * call that has a deadline.
 */
#include "ctl_client.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "himari/common.h"

struct ctl_client {
    grpc_channel *channel;
    char *target;
};

struct ctl_stream {
    grpc_completion_queue *cq;
    grpc_call *call;
    grpc_metadata auth_md;
    bool has_auth;
    grpc_byte_buffer *send_bb;
    grpc_metadata_array initial_md;
    grpc_metadata_array trailing_md;
    grpc_status_code status;
    grpc_slice details;
    bool got_initial_md;
    bool ended;
};

/* Tags are only compared by pluck; distinct addresses are enough. */
static char TAG_SEND, TAG_STATUS, TAG_RECV, TAG_UNARY;

ctl_client *ctl_client_new(const char *target) {
    grpc_init();
    ctl_client *c = hm_xcalloc(1, sizeof(*c));
    c->target = hm_xstrdup(target);
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    /* The request size is the server's business: let oversized requests go
     * out so the server's limit is what answers. */
    grpc_arg args[] = {
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, .value.integer = -1},
        /* Each client its own connection, as separate processes would have (the tests
         * and the load generator run several clients in one process). */
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, .value.integer = 1},
    };
    grpc_channel_args chan_args = {.num_args = HM_ARRAY_LEN(args), .args = args};
    c->channel = grpc_channel_create(target, creds, &chan_args);
    grpc_channel_credentials_release(creds);
    return c;
}

void ctl_client_free(ctl_client *c) {
    if (!c) return;
    grpc_channel_destroy(c->channel);
    free(c->target);
    free(c);
    grpc_shutdown();
}

const char *ctl_client_target(const ctl_client *c) {
    return c->target;
}

static gpr_timespec deadline_after(int64_t timeout_ms) {
    if (timeout_ms <= 0) return gpr_inf_future(GPR_CLOCK_REALTIME);
    return gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                        gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
}

static grpc_byte_buffer *bytes_to_bb(const void *p, size_t n) {
    grpc_slice sl = grpc_slice_from_copied_buffer(p, n);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    return bb;
}

static grpc_byte_buffer *msg_to_bb(const ProtobufCMessage *m) {
    size_t n = protobuf_c_message_get_packed_size(m);
    grpc_slice sl = grpc_slice_malloc(n);
    protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(sl));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    return bb;
}

/* The whole message as one malloc'd buffer (NUL-terminated for safety). */
static char *bb_to_bytes(grpc_byte_buffer *bb, size_t *len) {
    grpc_byte_buffer_reader rd;
    if (!grpc_byte_buffer_reader_init(&rd, bb)) return NULL;
    grpc_slice all = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    size_t n = GRPC_SLICE_LENGTH(all);
    char *out = hm_xmalloc(n + 1);
    memcpy(out, GRPC_SLICE_START_PTR(all), n);
    out[n] = '\0';
    grpc_slice_unref(all);
    *len = n;
    return out;
}

static void set_result(ctl_result *res, grpc_status_code code, grpc_slice details) {
    res->code = code;
    size_t n = GRPC_SLICE_LENGTH(details);
    if (n >= sizeof(res->message)) n = sizeof(res->message) - 1;
    memcpy(res->message, GRPC_SLICE_START_PTR(details), n);
    res->message[n] = '\0';
}

static void pluck(grpc_completion_queue *cq, void *tag) {
    /* The batches we pluck always complete: grpc ends a call at its deadline
     * or when it is cancelled, and every batch of an ended call completes. */
    grpc_event ev = grpc_completion_queue_pluck(cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    assert(ev.type == GRPC_OP_COMPLETE && ev.tag == tag);
    HM_UNUSED(ev);
}

static void destroy_cq(grpc_completion_queue *cq) {
    grpc_completion_queue_shutdown(cq);
    grpc_event ev;
    do {
        ev = grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    } while (ev.type != GRPC_QUEUE_SHUTDOWN);
    grpc_completion_queue_destroy(cq);
}

static void auth_metadata(grpc_metadata *md, const char *auth) {
    memset(md, 0, sizeof(*md));
    md->key = grpc_slice_from_static_string("authorization");
    md->value = grpc_slice_from_copied_string(auth);
}

int ctl_unary_raw(ctl_client *c, const char *path, const void *req, size_t req_len,
                  const char *auth, int64_t timeout_ms, ctl_result *res, char **resp_bytes,
                  size_t *resp_len) {
    memset(res, 0, sizeof(*res));
    if (resp_bytes) *resp_bytes = NULL;
    if (resp_len) *resp_len = 0;
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_slice method = grpc_slice_from_copied_string(path);
    grpc_call *call = grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                               method, NULL, deadline_after(timeout_ms), NULL);
    grpc_slice_unref(method);

    grpc_metadata md;
    if (auth) auth_metadata(&md, auth);
    grpc_byte_buffer *send_bb = bytes_to_bb(req, req_len);
    grpc_byte_buffer *recv_bb = NULL;
    grpc_metadata_array initial_md, trailing_md;
    grpc_metadata_array_init(&initial_md);
    grpc_metadata_array_init(&trailing_md);
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();

    grpc_op ops[6];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = auth ? 1 : 0;
    ops[0].data.send_initial_metadata.metadata = auth ? &md : NULL;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send_bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv_bb;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trailing_md;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;
    int rc = 0;
    grpc_call_error e = grpc_call_start_batch(call, ops, HM_ARRAY_LEN(ops), &TAG_UNARY, NULL);
    if (e != GRPC_CALL_OK) {
        res->code = GRPC_STATUS_INTERNAL;
        snprintf(res->message, sizeof(res->message), "grpc refused the call: %s",
                 grpc_call_error_to_string(e));
        rc = -EIO;
    } else {
        pluck(cq, &TAG_UNARY);
        set_result(res, status, details);
        if (recv_bb) {
            size_t n = 0;
            char *bytes = bb_to_bytes(recv_bb, &n);
            if (resp_bytes)
                *resp_bytes = bytes;
            else
                free(bytes);
            if (resp_len) *resp_len = n;
        }
    }
    if (recv_bb) grpc_byte_buffer_destroy(recv_bb);
    grpc_byte_buffer_destroy(send_bb);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&initial_md);
    grpc_metadata_array_destroy(&trailing_md);
    if (auth) grpc_slice_unref(md.value);
    grpc_call_unref(call);
    destroy_cq(cq);
    return rc;
}

int ctl_unary(ctl_client *c, const char *path, const ProtobufCMessage *req,
              const ProtobufCMessageDescriptor *out_desc, const char *auth, int64_t timeout_ms,
              ProtobufCMessage **resp, ctl_result *res) {
    *resp = NULL;
    size_t n = protobuf_c_message_get_packed_size(req);
    uint8_t *buf = hm_xmalloc(n ? n : 1);
    protobuf_c_message_pack(req, buf);
    char *bytes = NULL;
    size_t len = 0;
    int rc = ctl_unary_raw(c, path, buf, n, auth, timeout_ms, res, &bytes, &len);
    free(buf);
    if (rc == 0 && res->code == GRPC_STATUS_OK) {
        *resp =
            protobuf_c_message_unpack(out_desc, NULL, len, (const uint8_t *)(bytes ? bytes : ""));
        if (!*resp) {
            res->code = GRPC_STATUS_INTERNAL;
            snprintf(res->message, sizeof(res->message), "response does not decode as %s",
                     out_desc->name);
        }
    }
    free(bytes);
    return rc;
}

int ctl_stream_open(ctl_client *c, const char *path, const ProtobufCMessage *req, const char *auth,
                    int64_t timeout_ms, ctl_stream **out) {
    ctl_stream *st = hm_xcalloc(1, sizeof(*st));
    st->cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_slice method = grpc_slice_from_copied_string(path);
    st->call = grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, st->cq, method,
                                        NULL, deadline_after(timeout_ms), NULL);
    grpc_slice_unref(method);
    if (auth) {
        auth_metadata(&st->auth_md, auth);
        st->has_auth = true;
    }
    st->send_bb = msg_to_bb(req);
    grpc_metadata_array_init(&st->initial_md);
    grpc_metadata_array_init(&st->trailing_md);
    st->status = GRPC_STATUS_UNKNOWN;
    st->details = grpc_empty_slice();

    grpc_op ops[3];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = auth ? 1 : 0;
    ops[0].data.send_initial_metadata.metadata = auth ? &st->auth_md : NULL;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = st->send_bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    grpc_call_error e1 = grpc_call_start_batch(st->call, ops, 3, &TAG_SEND, NULL);
    grpc_op sop;
    memset(&sop, 0, sizeof(sop));
    sop.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    sop.data.recv_status_on_client.trailing_metadata = &st->trailing_md;
    sop.data.recv_status_on_client.status = &st->status;
    sop.data.recv_status_on_client.status_details = &st->details;
    grpc_call_error e2 = grpc_call_start_batch(st->call, &sop, 1, &TAG_STATUS, NULL);
    /* Both are well-formed first batches of a fresh call: grpc accepts them. */
    assert(e1 == GRPC_CALL_OK && e2 == GRPC_CALL_OK);
    if (e1 != GRPC_CALL_OK || e2 != GRPC_CALL_OK) hm_panic("grpc refused a stream's first batches");
    *out = st;
    return 0;
}

int ctl_stream_next(ctl_stream *st, const ProtobufCMessageDescriptor *desc,
                    ProtobufCMessage **msg) {
    *msg = NULL;
    if (st->ended) return 0;
    grpc_byte_buffer *bb = NULL;
    grpc_op ops[2];
    size_t n = 0;
    memset(ops, 0, sizeof(ops));
    if (!st->got_initial_md) {
        ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[n].data.recv_initial_metadata.recv_initial_metadata = &st->initial_md;
        n++;
        st->got_initial_md = true;
    }
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n].data.recv_message.recv_message = &bb;
    n++;
    grpc_call_error e = grpc_call_start_batch(st->call, ops, n, &TAG_RECV, NULL);
    if (e != GRPC_CALL_OK) hm_panic("grpc refused a receive: %s", grpc_call_error_to_string(e));
    pluck(st->cq, &TAG_RECV);
    if (!bb) {
        st->ended = true;
        return 0;
    }
    size_t len = 0;
    char *bytes = bb_to_bytes(bb, &len);
    grpc_byte_buffer_destroy(bb);
    if (!bytes) return -EBADMSG;
    *msg = protobuf_c_message_unpack(desc, NULL, len, (const uint8_t *)bytes);
    free(bytes);
    return *msg ? 1 : -EBADMSG;
}

void ctl_stream_cancel(ctl_stream *st) {
    grpc_call_cancel(st->call, NULL);
}

void ctl_stream_close(ctl_stream *st, ctl_result *res) {
    pluck(st->cq, &TAG_SEND);
    pluck(st->cq, &TAG_STATUS);
    memset(res, 0, sizeof(*res));
    set_result(res, st->status, st->details);
    grpc_byte_buffer_destroy(st->send_bb);
    grpc_slice_unref(st->details);
    grpc_metadata_array_destroy(&st->initial_md);
    grpc_metadata_array_destroy(&st->trailing_md);
    if (st->has_auth) grpc_slice_unref(st->auth_md.value);
    grpc_call_unref(st->call);
    destroy_cq(st->cq);
    free(st);
}
