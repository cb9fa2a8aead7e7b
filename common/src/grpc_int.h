/*
 * grpc_int.h: what grpc_server.c shares with grpc_health.c; not part of the
 * public API (himari/grpc.h is).
 *
 * The health service is an ordinary service of the server: it registers its
 * rows through hm_grpc_server_add_service and answers through the public
 * reply functions. The only extra it needs is a hook at shutdown, so that
 * open Watch streams end with a status before the server cancels every call.
 */
#ifndef HIMARI_GRPC_INT_H
#define HIMARI_GRPC_INT_H

#include "himari/grpc.h"

typedef struct hm_grpc_health hm_grpc_health;

/** @brief The health state of s, registered as grpc.health.v1.Health on s. */
hm_grpc_health *hm_grpc_health_new(hm_grpc_server *s);
/** @brief The server's health state (for hm_grpc_health_set). */
hm_grpc_health *hm_grpc_server_health(hm_grpc_server *s);
/**
 * @brief Server shutdown began: end every Watch stream with UNAVAILABLE and
 * refuse new ones. Their status batches go out before the server cancels the
 * remaining calls (see hm_grpc_server_shutdown).
 */
void hm_grpc_health_stop(hm_grpc_health *h);
/** @brief Free the state (no Watch may be open any more). */
void hm_grpc_health_free(hm_grpc_health *h);

#endif
