/*
 * ctl_client.h: a small blocking gRPC client on the grpc C core (insecure
 * channel, one pluck completion queue per call) for himarictl and for the
 * tests that drive our server from a second thread.
 *
 * Calls are described by their path ("/himari.v1.ControlService/GetStatus"),
 * and messages are protobuf-c messages or raw bytes (tests send bytes that do
 * not decode). Every wait is bounded by the call's deadline when it has one;
 * grpc core ends a call at its deadline, so a call with a timeout never hangs.
 *
 * Must never: print or log the authorization value it is given.
 */
#ifndef HIMARICTL_CTL_CLIENT_H
#define HIMARICTL_CTL_CLIENT_H

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ctl_client ctl_client;
typedef struct ctl_stream ctl_stream;

/** The end of a call: its status code and message (NUL-terminated, cut to fit). */
typedef struct ctl_result {
    grpc_status_code code;
    char message[512];
} ctl_result;

/**
 * @brief A client for target ("127.0.0.1:9081"); connects lazily at the first
 * call. Calls grpc_init (released by ctl_client_free). Free with ctl_client_free.
 */
ctl_client *ctl_client_new(const char *target);
void ctl_client_free(ctl_client *c);
const char *ctl_client_target(const ctl_client *c);

/**
 * @brief A unary call with raw request bytes. auth is the whole
 * "authorization" value ("Bearer x") or NULL to send none; timeout_ms <= 0
 * means no deadline. On return res holds the status; *resp_bytes (when
 * resp_bytes is not NULL) a malloc'd copy of the response message (NULL when
 * none came) the caller frees, its length in *resp_len.
 * @return 0 when the call ran (whatever its status), -EIO when grpc refused
 * to start it.
 */
int ctl_unary_raw(ctl_client *c, const char *path, const void *req, size_t req_len,
                  const char *auth, int64_t timeout_ms, ctl_result *res, char **resp_bytes,
                  size_t *resp_len);

/**
 * @brief A unary call with protobuf-c messages: req is packed; on OK the
 * response is unpacked with out_desc into *resp (free with
 * protobuf_c_message_free_unpacked(*resp, NULL)); a response that does not
 * decode turns into an INTERNAL result. *resp is NULL unless res->code is OK.
 */
int ctl_unary(ctl_client *c, const char *path, const ProtobufCMessage *req,
              const ProtobufCMessageDescriptor *out_desc, const char *auth, int64_t timeout_ms,
              ProtobufCMessage **resp, ctl_result *res);

/**
 * @brief Open a server-streaming call: the request is sent and half-closed at
 * once. Read with ctl_stream_next, end with ctl_stream_close (after an
 * optional ctl_stream_cancel).
 */
int ctl_stream_open(ctl_client *c, const char *path, const ProtobufCMessage *req, const char *auth,
                    int64_t timeout_ms, ctl_stream **out);
/**
 * @brief The next message, unpacked with desc into *msg (caller frees).
 * @return 1 with a message, 0 at the end of the stream (ctl_stream_close
 * gives the status), -EBADMSG when a message did not decode.
 */
int ctl_stream_next(ctl_stream *st, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **msg);
/** @brief Cancel the call (the status becomes CANCELLED unless it had ended). */
void ctl_stream_cancel(ctl_stream *st);
/** @brief Wait for the status into res and free st. */
void ctl_stream_close(ctl_stream *st, ctl_result *res);

#endif
