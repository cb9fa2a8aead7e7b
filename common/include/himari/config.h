/*
 * himari/config.h: YAML configuration described by a schema.
 *
 * A service declares its keys once, as a table of hm_cfg_key (dotted path,
 * type, where the value lands in the service's config struct, default, bounds,
 * one line of documentation). hm_config_load() then:
 *   1. applies every default;
 *   2. reads the YAML file (nested mappings, e.g. `kafka: {bootstrap_servers: ..}`
 *      is the key "kafka.bootstrap_servers");
 *   3. applies environment overrides: HIMARI_ + the path upper-cased with '.'
 *      as '_' (kafka.bootstrap_servers -> HIMARI_KAFKA_BOOTSTRAP_SERVERS);
 *   4. reads secrets: a HM_CFG_SECRET key "redis.password" may instead be
 *      given as "redis.password_file: /run/secrets/redis" (or the env variable
 *      HIMARI_REDIS_PASSWORD_FILE); the file's content, without a trailing
 *      newline, is the value. Giving both the value and the file is an error.
 *      A secret file its group or others may read (mode & 077) is loaded with
 *      one warning (config_secret_file_mode: key, file, mode; never the value).
 *   5. checks: unknown keys, wrong types, out-of-range numbers and missing
 *      required keys are errors naming the file, line and key, e.g.
 *      "config/iv.yaml:12: kafka.comit_interval_ms: unknown key".
 * HM_CFG_STR_MAP keys are file-only: their free-form inner keys have no
 * unambiguous env spelling, so no env variable overrides a map. A map flagged
 * HM_CFG_SECRET_VALUES (kafka.properties) treats the values of inner keys that
 * look secret (hm_config_is_secret_name: sasl.password, ssl.key.password, ...)
 * as secrets: digested by length only, and given either inline or as
 * "<inner key>_file: /run/secrets/x" (read like any secret file, both forms
 * at once are an error).
 * The same table renders a documented example file (hm_config_write_example),
 * which is how the config/<service>.example.yaml files are generated and checked.
 *
 * Loading never half-applies: on error dst is left as it was (the loader fills
 * a scratch copy first), which is what ReloadConfig's atomic swap relies on.
 */
#ifndef HIMARI_CONFIG_H
#define HIMARI_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "himari/common.h"

typedef enum hm_cfg_type {
    HM_CFG_STR,      /* char * (malloc'd; NULL when unset and no default) */
    HM_CFG_INT,      /* int64_t */
    HM_CFG_DOUBLE,   /* double (an integer in YAML is accepted) */
    HM_CFG_BOOL,     /* bool: true/false (YAML 1.2 core: also yes/no are refused) */
    HM_CFG_STR_LIST, /* hm_str_list: a YAML sequence of scalars, or in env a comma list */
    HM_CFG_STR_MAP,  /* hm_str_map: a YAML mapping of scalar -> scalar (free-form keys) */
    HM_CFG_SECRET,   /* char *: like STR, plus the <key>_file form; never rendered */
} hm_cfg_type;

/** A list of strings; items and each item are malloc'd. */
typedef struct hm_str_list {
    char **items;
    size_t n;
} hm_str_list;

/** A map of strings, in file order; keys/vals and each string are malloc'd. */
typedef struct hm_str_map {
    char **keys;
    char **vals;
    size_t n;
} hm_str_map;

enum {
    HM_CFG_REQUIRED = 1u << 0,      /* no default: must be set by file or env */
    HM_CFG_RELOADABLE = 1u << 1,    /* may change at ReloadConfig without a restart */
    HM_CFG_SECRET_VALUES = 1u << 2, /* STR_MAP: secret-looking inner keys hold secrets */
};

/** One configuration key. */
typedef struct hm_cfg_key {
    const char *path; /* dotted path, "kafka.bootstrap_servers" */
    hm_cfg_type type;
    size_t offset;   /* offsetof(<config struct>, field) */
    const char *def; /* default, written as in YAML ("100", "true", "[a, b]"); NULL: none */
    unsigned flags;  /* HM_CFG_* */
    double min, max; /* inclusive bounds for INT/DOUBLE; ignored when min > max */
    const char *doc; /* one line: meaning and unit */
} hm_cfg_key;

/** A table of keys and the struct their values land in. */
typedef struct hm_cfg_section {
    const hm_cfg_key *keys;
    size_t n_keys;
    void *dst;       /* base address the offsets apply to */
    size_t dst_size; /* sizeof the struct (for the scratch copy) */
} hm_cfg_section;

/**
 * @brief Load defaults, the file at path (NULL: none), env overrides and
 * secrets into the sections' structs; validate everything.
 * @return 0, or a negative code with err naming file:line, key and reason.
 * On error nothing in any section's dst has changed.
 * Strings and lists written into dst are owned by dst: free with hm_config_free().
 */
int hm_config_load(const hm_cfg_section *sections, size_t n_sections, const char *path,
                   hm_err *err) HM_MUST_CHECK;

/** @brief Free what hm_config_load stored in the sections' structs. */
void hm_config_free(const hm_cfg_section *sections, size_t n_sections);

/**
 * @brief Name the first key whose value differs between two loaded copies and is
 * not HM_CFG_RELOADABLE: a reload that changes it is refused, since it needs a
 * restart. Returns NULL when every difference is reloadable.
 * old_dst[i]/new_dst[i] are the i-th section's two structs.
 */
const char *hm_config_non_reloadable_change(const hm_cfg_section *sections, size_t n_sections,
                                            void *const *old_dst, void *const *new_dst);

/**
 * @brief The paths of every key whose value differs between two loaded copies
 * (same arguments as above), in table order. Writes at most max_out paths to
 * out (static strings of the key tables); returns how many keys differ.
 */
size_t hm_config_changed_keys(const hm_cfg_section *sections, size_t n_sections,
                              void *const *old_dst, void *const *new_dst, const char **out,
                              size_t max_out);

/**
 * @brief A 64-bit FNV-1a digest of the effective configuration (every key and
 * value in table order, secrets as their length only, including the secret
 * inner keys of an HM_CFG_SECRET_VALUES map), as 16 hex chars + NUL.
 */
void hm_config_digest(const hm_cfg_section *sections, size_t n_sections, char out[17]);

/**
 * @brief Write a documented example YAML: every key with its default (or
 * `# required`), its doc line, range and env variable, nested as in the file.
 */
void hm_config_write_example(const hm_cfg_section *sections, size_t n_sections, const char *title,
                             FILE *out);

/**
 * @brief Does a free-form key name a secret? Case-insensitive: it contains
 * "password", "secret", "passphrase" or "private.key", ends in "key.pem", or
 * is "sasl.oauthbearer.config" (librdkafka's sasl.password, ssl.key.password,
 * ssl.keystore.password, sasl.oauthbearer.client.secret, ssl.key.pem, ...).
 * Such a value is never echoed in a message nor hashed into the digest.
 */
bool hm_config_is_secret_name(const char *name);

/** @brief The env variable that overrides a path: "HIMARI_KAFKA_BOOTSTRAP_SERVERS". */
void hm_config_env_name(const char *path, char *out, size_t out_size);

void hm_str_list_free(hm_str_list *l);
void hm_str_map_free(hm_str_map *m);
/** @brief Is s one of the list's items (exact match)? */
bool hm_str_list_contains(const hm_str_list *l, const char *s, size_t n);

#endif
