/*
 * codes.c: the ingest-validator's issue-code table (codes.h) as functions:
 * name, default weight and held state of each code, and lookup by name.
 *
 * Everything here is generated from the IV_CODES X-macro, so a code added to
 * the table needs no edit in this file. Read-only data: nothing here may keep
 * state or allocate.
 */
#include "codes.h"

#include <assert.h>
#include <string.h>

static const char *const k_names[IV_CODE_COUNT] = {
#define IV_CODE_NAME_(name, weight, holds) [IV_##name] = #name,
    IV_CODES(IV_CODE_NAME_)
#undef IV_CODE_NAME_
};

static const double k_weights[IV_CODE_COUNT] = {
#define IV_CODE_WEIGHT_(name, weight, holds) [IV_##name] = weight,
    IV_CODES(IV_CODE_WEIGHT_)
#undef IV_CODE_WEIGHT_
};

static const unsigned k_holds[IV_CODE_COUNT] = {
#define IV_CODE_HOLDS_(name, weight, holds) [IV_##name] = (holds),
    IV_CODES(IV_CODE_HOLDS_)
#undef IV_CODE_HOLDS_
};

const char *iv_code_name(iv_code c) {
    assert((unsigned)c < IV_CODE_COUNT);
    return (unsigned)c < IV_CODE_COUNT ? k_names[c] : "UNKNOWN";
}

double iv_code_default_weight(iv_code c) {
    assert((unsigned)c < IV_CODE_COUNT);
    return (unsigned)c < IV_CODE_COUNT ? k_weights[c] : 0.0;
}

unsigned iv_code_holds(iv_code c) {
    assert((unsigned)c < IV_CODE_COUNT);
    return (unsigned)c < IV_CODE_COUNT ? k_holds[c] : 0u;
}

/* Linear: called at configuration time and in tests, never per record. */
int iv_code_by_name(const char *name) {
    if (!name) return -1;
    for (int c = 0; c < IV_CODE_COUNT; c++)
        if (strcmp(k_names[c], name) == 0) return c;
    return -1;
}
