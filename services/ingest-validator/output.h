/*
 * output.h: the ingest-validator's quality record writer: one JSON object per
 * input record, fields in a fixed order, always valid JSON whatever the input
 * held (see engine.h and docs/QUALITY_CHECKS.md for the format).
 *
 * Pure formatting into an hm_buf: no state, no I/O, no allocation beyond the
 * buffer's growth.
 */
#ifndef IV_OUTPUT_H
#define IV_OUTPUT_H

#include <stddef.h>
#include <stdint.h>

#include "checks.h"
#include "himari/buf.h"
#include "himari/tick.h"

/**
 * @brief The quality record of a decoded tick.
 * processed_at is the ISO-8601 text (24 chars).
 */
void iv_write_record(hm_buf *b, const hm_tick *t, iv_codeset codes, double score,
                     const char *processed_at);

/**
 * @brief The quality record of an input that could not be decoded: every field
 * null, PARSE_ERROR, the error text, and the original bytes as a JSON string
 * (or, for an oversized record, null plus "original_bytes":N).
 */
void iv_write_parse_error(hm_buf *b, const char *data, size_t len, bool oversized,
                          const char *error, const char *processed_at);

/** @brief The "issues" array of a code set, in code-table order. */
void iv_write_issues(hm_buf *b, iv_codeset codes);

#endif
