/*
 * config.c: schema-driven YAML configuration (common/; every service's main.c
 * loads through it at start, and ReloadConfig loads through it again).
 *
 * How a load works: the sections' key tables are flattened into slots, one per
 * key. Each section's struct is copied into a scratch buffer, every key's field
 * in the copy is reset and given its default; the default is parsed by libyaml
 * exactly like a file value, so a default and a file can never disagree on
 * syntax. The file is loaded with libyaml's document API (which resolves
 * anchors and aliases and keeps every node's line) and walked, turning nested
 * mappings into dotted paths. Environment overrides and secrets follow, then
 * the required-key check. Only when all of that passed are the old values in
 * dst freed and the scratch copies copied over dst.
 *
 * A secret file that its group or others may read (mode & 077) is loaded, with
 * one warning naming the key, the file and its mode (config_secret_file_mode).
 *
 * Must never: half-apply a load (dst changes only on success), put a secret's
 * value in any message, or stop the process on bad input (hm_panic is kept for
 * a broken schema or default, which is a programming error that the first test
 * loading the schema catches).
 */
#include "himari/config.h"

#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <yaml.h>

#include "himari/log.h"

enum {
    CFG_MAX_FILE_BYTES = 1 << 20,    /* a config is a page or two; refuse anything absurd */
    CFG_MAX_SECRET_BYTES = 64 << 10, /* the contract's limit for a secret file */
    CFG_MAX_DEPTH = 16,              /* nesting levels; also stops self-referencing aliases */
    CFG_MAX_PATH = 200,              /* bytes of a dotted path, in the schema and in a file */
    CFG_ENV_MAX = CFG_MAX_PATH + 16, /* "HIMARI_" + path + "_FILE" + NUL */
    CFG_ECHO_MAX = 48,               /* bytes of a bad value quoted back in a message */
    CFG_NUM_MAX = 40,                /* a formatted int64 or shortest double */
};

/* ---------------------------------------------------------------------------
 * Small helpers: fields, lists, maps.
 */

static size_t cfg_field_size(hm_cfg_type t) {
    switch (t) {
        case HM_CFG_STR:
        case HM_CFG_SECRET:
            return sizeof(char *);
        case HM_CFG_INT:
            return sizeof(int64_t);
        case HM_CFG_DOUBLE:
            return sizeof(double);
        case HM_CFG_BOOL:
            return sizeof(bool);
        case HM_CFG_STR_LIST:
            return sizeof(hm_str_list);
        case HM_CFG_STR_MAP:
            return sizeof(hm_str_map);
    }
    return 0;
}

static void *cfg_field(void *base, const hm_cfg_key *k) {
    return (char *)base + k->offset;
}

/* Free what a field owns and leave it zeroed, so freeing twice is harmless. */
static void cfg_field_free(hm_cfg_type t, void *f) {
    switch (t) {
        case HM_CFG_STR:
        case HM_CFG_SECRET:
            free(*(char **)f);
            *(char **)f = NULL;
            break;
        case HM_CFG_STR_LIST:
            hm_str_list_free(f);
            break;
        case HM_CFG_STR_MAP:
            hm_str_map_free(f);
            break;
        case HM_CFG_INT:
        case HM_CFG_DOUBLE:
        case HM_CFG_BOOL:
            memset(f, 0, cfg_field_size(t));
            break;
    }
}

void hm_str_list_free(hm_str_list *l) {
    if (!l) return;
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

void hm_str_map_free(hm_str_map *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n; i++) {
        free(m->keys[i]);
        free(m->vals[i]);
    }
    free(m->keys);
    free(m->vals);
    m->keys = NULL;
    m->vals = NULL;
    m->n = 0;
}

bool hm_str_list_contains(const hm_str_list *l, const char *s, size_t n) {
    if (!l) return false;
    for (size_t i = 0; i < l->n; i++) {
        if (strlen(l->items[i]) == n && memcmp(l->items[i], s, n) == 0) return true;
    }
    return false;
}

/* Lists and maps hold a handful of items: growing by one keeps the code plain. */
static void cfg_list_push(hm_str_list *l, char *item) {
    l->items = hm_xrealloc(l->items, (l->n + 1) * sizeof(*l->items));
    l->items[l->n++] = item;
}

static void cfg_map_push(hm_str_map *m, char *key, char *val) {
    m->keys = hm_xrealloc(m->keys, (m->n + 1) * sizeof(*m->keys));
    m->vals = hm_xrealloc(m->vals, (m->n + 1) * sizeof(*m->vals));
    m->keys[m->n] = key;
    m->vals[m->n] = val;
    m->n++;
}

static const char *cfg_map_get(const hm_str_map *m, const char *key) {
    for (size_t i = 0; i < m->n; i++) {
        if (strcmp(m->keys[i], key) == 0) return m->vals[i];
    }
    return NULL;
}

/* Does hay contain needle, ignoring ASCII case? */
static bool cfg_contains_ci(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++) {
        if (strncasecmp(p, needle, n) == 0) return true;
    }
    return false;
}

bool hm_config_is_secret_name(const char *name) {
    static const char *const parts[] = {"password", "secret", "passphrase", "private.key"};
    static const char suffix[] = "key.pem";
    if (!name) return false;
    for (size_t i = 0; i < HM_ARRAY_LEN(parts); i++) {
        if (cfg_contains_ci(name, parts[i])) return true;
    }
    size_t len = strlen(name), slen = sizeof(suffix) - 1;
    if (len >= slen && strcasecmp(name + len - slen, suffix) == 0) return true;
    return strcasecmp(name, "sasl.oauthbearer.config") == 0;
}

/* The last component of a dotted path: "redis.password" -> "password". */
static const char *cfg_last_component(const char *path) {
    const char *dot = strrchr(path, '.');
    return dot ? dot + 1 : path;
}

void hm_config_env_name(const char *path, char *out, size_t out_size) {
    static const char prefix[] = "HIMARI_";
    if (out_size == 0) return;
    size_t o = 0;
    for (const char *p = prefix; *p && o + 1 < out_size; p++)
        out[o++] = *p;
    for (const char *p = path; *p && o + 1 < out_size; p++) {
        char c = *p;
        /* ASCII only, independent of the locale: env names are [A-Z0-9_]. */
        if (c >= 'a' && c <= 'z') {
            out[o++] = (char)(c - 'a' + 'A');
        } else if ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
            out[o++] = c;
        } else {
            out[o++] = '_';
        }
    }
    out[o] = '\0';
}

/* ---------------------------------------------------------------------------
 * Numbers: strict parsing and shortest formatting.
 */

/* Strict decimal: optional sign, digits, no leading zeros (YAML 1.1 would read
 * "0644" as octal; refusing it avoids a silent disagreement with other tools). */
static int cfg_parse_int(const char *s, int64_t *out) {
    const char *p = s;
    bool neg = false;
    if (*p == '+' || *p == '-') neg = *p++ == '-';
    if (*p < '0' || *p > '9') return -EINVAL;
    if (*p == '0' && p[1] != '\0') return -EINVAL;
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1u : (uint64_t)INT64_MAX;
    uint64_t v = 0;
    bool overflow = false;
    for (; *p; p++) {
        if (*p < '0' || *p > '9') return -EINVAL;
        unsigned d = (unsigned)(*p - '0');
        if (v > (limit - d) / 10)
            overflow = true; /* keep scanning: "9...9x" is not a number */
        else
            v = v * 10 + d;
    }
    if (overflow) return -ERANGE;
    if (neg)
        *out = v == (uint64_t)INT64_MAX + 1u ? INT64_MIN : -(int64_t)v;
    else
        *out = (int64_t)v;
    return 0;
}

/* Decimal with optional fraction and exponent. The syntax is checked here so
 * that strtod's extras (hex floats, "nan", "inf", leading blanks) are refused.
 * strtod reads '.' as the decimal point in the C locale, which services keep. */
static int cfg_parse_double(const char *s, double *out) {
    const char *p = s;
    int digits = 0;
    if (*p == '+' || *p == '-') p++;
    while (*p >= '0' && *p <= '9')
        p++, digits++;
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9')
            p++, digits++;
    }
    if (digits == 0) return -EINVAL;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        if (*p < '0' || *p > '9') return -EINVAL;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p != '\0') return -EINVAL;
    char *end = NULL;
    double v = strtod(s, &end);
    if (end != p) return -EINVAL;
    if (!isfinite(v)) return -ERANGE;
    *out = v;
    return 0;
}

/* Whole numbers as integers ("1000", not "1e+03": bounds and ports read
 * better so), anything else as the shortest "%g" text that reads back as v. */
static void cfg_fmt_double(double v, char *buf, size_t size) {
    if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(buf, size, "%.0f", v);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

static bool cfg_has_range(const hm_cfg_key *k) {
    return k->min <= k->max;
}

static bool cfg_in_range(const hm_cfg_key *k, double v) {
    return !cfg_has_range(k) || (v >= k->min && v <= k->max);
}

/* ---------------------------------------------------------------------------
 * Messages: "<file>:<line>: <key>: <reason>", "env <VAR>: <key>: <reason>".
 */

typedef enum cfg_source { CFG_FROM_DEFAULT, CFG_FROM_FILE, CFG_FROM_ENV } cfg_source;

/** Where a value came from, for messages. */
typedef struct cfg_origin {
    cfg_source source;
    const char *file; /* CFG_FROM_FILE: the file's path as given */
    const char *env;  /* CFG_FROM_ENV: the variable's name */
} cfg_origin;

static int cfg_fail(hm_err *err, const cfg_origin *o, int line, const char *path, const char *fmt,
                    ...) HM_PRINTF(5, 6);

static int cfg_fail(hm_err *err, const cfg_origin *o, int line, const char *path, const char *fmt,
                    ...) {
    char why[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    switch (o->source) {
        case CFG_FROM_FILE:
            if (line > 0)
                return hm_err_set(err, -EINVAL, "%s:%d: %s: %s", o->file, line, path, why);
            return hm_err_set(err, -EINVAL, "%s: %s: %s", o->file, path, why);
        case CFG_FROM_ENV:
            return hm_err_set(err, -EINVAL, "env %s: %s: %s", o->env, path, why);
        case CFG_FROM_DEFAULT:
            break;
    }
    return hm_err_set(err, -EINVAL, "schema default: %s: %s", path, why);
}

/* Quote a bad value back, shortened and on one line. Never used for secrets. */
static const char *cfg_echo(const char *s, size_t len, char *buf, size_t size) {
    assert(size > CFG_ECHO_MAX + 4);
    size_t n = len;
    if (n > CFG_ECHO_MAX) n = CFG_ECHO_MAX;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    if (n < len) {
        memcpy(buf + n, "...", 4);
    } else {
        buf[n] = '\0';
    }
    return buf;
}

static const char *cfg_type_want(hm_cfg_type t) {
    switch (t) {
        case HM_CFG_INT:
            return "an integer";
        case HM_CFG_DOUBLE:
            return "a number";
        case HM_CFG_BOOL:
            return "true or false";
        case HM_CFG_STR:
        case HM_CFG_SECRET:
            return "a string";
        case HM_CFG_STR_LIST:
            return "a list (a YAML sequence)";
        case HM_CFG_STR_MAP:
            return "a mapping of strings";
    }
    return "?";
}

/* ---------------------------------------------------------------------------
 * Values: text (a YAML scalar or an env value) and YAML nodes into fields.
 */

/**
 * @brief Parse text (NUL-terminated, len bytes) as a value of k's type into the
 * field f, replacing what was there. On failure f is unchanged and why says
 * what is wrong. Used for file scalars, env values and defaults alike.
 */
static int cfg_set_text(const hm_cfg_key *k, void *f, const char *text, size_t len, char *why,
                        size_t why_size) {
    char echo[CFG_ECHO_MAX + 8];
    char lo[CFG_NUM_MAX] = "", hi[CFG_NUM_MAX] = "";
    if (strlen(text) != len) {
        snprintf(why, why_size, "the value contains a NUL byte");
        return -EINVAL;
    }
    if (cfg_has_range(k)) {
        cfg_fmt_double(k->min, lo, sizeof(lo));
        cfg_fmt_double(k->max, hi, sizeof(hi));
    }
    switch (k->type) {
        case HM_CFG_STR:
        case HM_CFG_SECRET:
            free(*(char **)f);
            *(char **)f = hm_xstrndup(text, len);
            return 0;
        case HM_CFG_INT: {
            int64_t v = 0;
            int rc = cfg_parse_int(text, &v);
            if (rc == -ERANGE) {
                snprintf(why, why_size, "'%s' does not fit in a 64-bit integer",
                         cfg_echo(text, len, echo, sizeof(echo)));
                return -EINVAL;
            }
            if (rc != 0) {
                snprintf(why, why_size, "expected an integer, got '%s'",
                         cfg_echo(text, len, echo, sizeof(echo)));
                return -EINVAL;
            }
            if (!cfg_in_range(k, (double)v)) {
                snprintf(why, why_size, "%" PRId64 " is out of range [%s, %s]", v, lo, hi);
                return -EINVAL;
            }
            *(int64_t *)f = v;
            return 0;
        }
        case HM_CFG_DOUBLE: {
            double v = 0;
            int rc = cfg_parse_double(text, &v);
            if (rc == -ERANGE) {
                snprintf(why, why_size, "'%s' is too large for a double",
                         cfg_echo(text, len, echo, sizeof(echo)));
                return -EINVAL;
            }
            if (rc != 0) {
                snprintf(why, why_size, "expected a number, got '%s'",
                         cfg_echo(text, len, echo, sizeof(echo)));
                return -EINVAL;
            }
            if (!cfg_in_range(k, v)) {
                char num[CFG_NUM_MAX];
                cfg_fmt_double(v, num, sizeof(num));
                snprintf(why, why_size, "%s is out of range [%s, %s]", num, lo, hi);
                return -EINVAL;
            }
            *(double *)f = v;
            return 0;
        }
        case HM_CFG_BOOL:
            /* YAML 1.1 reads yes/no/on/off as booleans and YAML 1.2 does not; only
             * the spelling both agree on is accepted, so no tool reads it otherwise. */
            if (strcmp(text, "true") == 0 || strcmp(text, "false") == 0) {
                *(bool *)f = text[0] == 't';
                return 0;
            }
            snprintf(why, why_size, "expected a boolean, got '%s' (write true or false)",
                     cfg_echo(text, len, echo, sizeof(echo)));
            return -EINVAL;
        case HM_CFG_STR_LIST:
        case HM_CFG_STR_MAP:
            break;
    }
    snprintf(why, why_size, "expected %s, got a scalar", cfg_type_want(k->type));
    return -EINVAL;
}

static int cfg_line(const yaml_node_t *n) {
    return (int)n->start_mark.line + 1;
}

static const char *cfg_scalar(const yaml_node_t *n) {
    return (const char *)n->data.scalar.value;
}

/* A plain ~, null, Null, NULL or nothing at all: YAML's null. Quoted text is
 * never null, so `key: ""` is an empty string and `key: "null"` the word. */
static bool cfg_is_null(const yaml_node_t *n) {
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = cfg_scalar(n);
    return n->data.scalar.length == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

static const char *cfg_node_kind(const yaml_node_t *n) {
    if (cfg_is_null(n)) return "null";
    switch (n->type) {
        case YAML_SCALAR_NODE:
            return "a scalar";
        case YAML_SEQUENCE_NODE:
            return "a sequence";
        case YAML_MAPPING_NODE:
            return "a mapping";
        case YAML_NO_NODE:
            break;
    }
    return "nothing";
}

/* A scalar that can be a list item, map key or map value: non-null, no NUL. */
static bool cfg_is_string_node(const yaml_node_t *n) {
    return n && n->type == YAML_SCALAR_NODE && !cfg_is_null(n) &&
           strlen(cfg_scalar(n)) == n->data.scalar.length;
}

/**
 * @brief Read the secret file named by the key kpath (a "<key>_file" form) into
 * *out (malloc'd, the caller frees): the content without one trailing newline.
 * Messages name the origin, line, kpath and the file, never the content.
 */
static int cfg_read_secret_file(hm_err *err, const cfg_origin *o, int line, const char *kpath,
                                const char *file, char **out) {
    /* hm_read_file would read a directory as an empty secret. */
    struct stat st;
    bool have_st = stat(file, &st) == 0;
    if (have_st && S_ISDIR(st.st_mode))
        return cfg_fail(err, o, line, kpath, "%s: is a directory", file);
    char *buf = NULL;
    size_t len = 0;
    hm_err e = {{0}};
    int rc = hm_read_file(file, CFG_MAX_SECRET_BYTES, &buf, &len, &e);
    if (rc != 0) {
        cfg_fail(err, o, line, kpath, "%s", e.msg);
        return rc;
    }
    if (strlen(buf) != len) {
        free(buf);
        return cfg_fail(err, o, line, kpath, "%s: contains a NUL byte", file);
    }
    /* Editors and `echo` end files with a newline that is not the secret. */
    if (len >= 1 && buf[len - 1] == '\n') buf[--len] = '\0';
    if (len >= 1 && buf[len - 1] == '\r') buf[--len] = '\0';
    /* Loaded all the same (a deploy may have its reasons, and refusing would stop a
     * running service at its next reload), but said: the name and mode, never the
     * content. A symlink is judged by its target, as stat follows it. */
    if (have_st && (st.st_mode & 077)) {
        char mode[8];
        snprintf(mode, sizeof(mode), "%04o", (unsigned)(st.st_mode & 07777));
        hm_log_warn("config_secret_file_mode", HM_LS("key", kpath), HM_LS("file", file),
                    HM_LS("mode", mode),
                    HM_LS("reason", "group or others may read this secret; chmod 0600 (or "
                                    "0400) it, owned by the service's user"));
    }
    *out = buf;
    return 0;
}

static int cfg_node_list(const cfg_origin *o, hm_err *err, const hm_cfg_key *k, void *f,
                         yaml_document_t *doc, yaml_node_t *n) {
    hm_str_list l = {0};
    size_t i = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++, i++) {
        yaml_node_t *item = yaml_document_get_node(doc, *it);
        if (!cfg_is_string_node(item)) {
            char ipath[CFG_MAX_PATH + 32];
            snprintf(ipath, sizeof(ipath), "%s[%zu]", k->path, i);
            hm_str_list_free(&l);
            return cfg_fail(err, o, item ? cfg_line(item) : cfg_line(n), ipath,
                            "expected a string, got %s", item ? cfg_node_kind(item) : "nothing");
        }
        cfg_list_push(&l, hm_xstrndup(cfg_scalar(item), item->data.scalar.length));
    }
    hm_str_list_free(f);
    *(hm_str_list *)f = l;
    return 0;
}

/* "ssl.key.password_file" in a map with secret values: the length of the inner
 * key it stands for ("ssl.key.password"), or 0 when it is not such a form. */
static size_t cfg_map_secret_file_base(const hm_cfg_key *k, const char *key) {
    static const char suffix[] = "_file";
    size_t len = strlen(key), slen = sizeof(suffix) - 1;
    if (!(k->flags & HM_CFG_SECRET_VALUES) || len <= slen || strcmp(key + len - slen, suffix) != 0)
        return 0;
    char *base = hm_xstrndup(key, len - slen);
    bool secret = hm_config_is_secret_name(base);
    free(base);
    return secret ? len - slen : 0;
}

/* A free-form mapping: its inner keys are the user's, not the schema's. In a
 * map with secret values, "<secret key>_file: path" stores the file's content
 * under "<secret key>". */
static int cfg_node_map(const cfg_origin *o, hm_err *err, const hm_cfg_key *k, void *f,
                        yaml_document_t *doc, yaml_node_t *n) {
    hm_str_map m = {0};
    bool *from_file = NULL; /* per entry of m: given as <key>_file */
    char echo[CFG_ECHO_MAX + 8];
    char kpath[CFG_MAX_PATH + CFG_ECHO_MAX + 16];
    int rc;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(doc, p->value);
        if (!cfg_is_string_node(kn)) {
            rc = cfg_fail(err, o, kn ? cfg_line(kn) : cfg_line(n), k->path,
                          "a key must be a string, got %s", kn ? cfg_node_kind(kn) : "nothing");
            goto err;
        }
        const char *key = cfg_scalar(kn);
        snprintf(kpath, sizeof(kpath), "%s.%s", k->path,
                 cfg_echo(key, kn->data.scalar.length, echo, sizeof(echo)));
        size_t base_len = cfg_map_secret_file_base(k, key);
        char *name = hm_xstrndup(key, base_len ? base_len : kn->data.scalar.length);
        for (size_t i = 0; i < m.n; i++) {
            if (strcmp(m.keys[i], name) != 0) continue;
            if (from_file[i] != (base_len > 0))
                rc = cfg_fail(err, o, cfg_line(kn), kpath,
                              "give either the value or %s_file, not both", name);
            else
                rc = cfg_fail(err, o, cfg_line(kn), kpath, "duplicate key");
            free(name);
            goto err;
        }
        if (!cfg_is_string_node(vn)) {
            rc =
                cfg_fail(err, o, vn ? cfg_line(vn) : cfg_line(kn), kpath, "expected %s, got %s",
                         base_len ? "a file path" : "a string", vn ? cfg_node_kind(vn) : "nothing");
            free(name);
            goto err;
        }
        char *val = NULL;
        if (base_len) {
            rc = cfg_read_secret_file(err, o, cfg_line(vn), kpath, cfg_scalar(vn), &val);
            if (rc != 0) {
                free(name);
                goto err;
            }
        } else {
            val = hm_xstrndup(cfg_scalar(vn), vn->data.scalar.length);
        }
        from_file = hm_xrealloc(from_file, (m.n + 1) * sizeof(*from_file));
        from_file[m.n] = base_len > 0;
        cfg_map_push(&m, name, val);
    }
    free(from_file);
    hm_str_map_free(f);
    *(hm_str_map *)f = m;
    return 0;
err:
    free(from_file);
    hm_str_map_free(&m);
    return rc;
}

/**
 * @brief Store the YAML node n as k's value in the field f.
 * *provided says whether the node gave a value (false for null).
 * On error f is unchanged and err names the origin, line and key.
 */
static int cfg_apply_node(const cfg_origin *o, hm_err *err, const hm_cfg_key *k, void *f,
                          yaml_document_t *doc, yaml_node_t *n, bool *provided) {
    char why[256];
    switch (n->type) {
        case YAML_SCALAR_NODE:
            if (cfg_is_null(n)) {
                if (k->type == HM_CFG_INT || k->type == HM_CFG_DOUBLE || k->type == HM_CFG_BOOL)
                    return cfg_fail(err, o, cfg_line(n), k->path, "expected %s, got null",
                                    cfg_type_want(k->type));
                /* Null unsets a string and empties a list or map. */
                cfg_field_free(k->type, f);
                *provided = false;
                return 0;
            }
            if (cfg_set_text(k, f, cfg_scalar(n), n->data.scalar.length, why, sizeof(why)) != 0)
                return cfg_fail(err, o, cfg_line(n), k->path, "%s", why);
            *provided = true;
            return 0;
        case YAML_SEQUENCE_NODE:
            if (k->type != HM_CFG_STR_LIST) break;
            *provided = true;
            return cfg_node_list(o, err, k, f, doc, n);
        case YAML_MAPPING_NODE:
            if (k->type != HM_CFG_STR_MAP) break;
            *provided = true;
            return cfg_node_map(o, err, k, f, doc, n);
        case YAML_NO_NODE:
            break;
    }
    return cfg_fail(err, o, cfg_line(n), k->path, "expected %s, got %s", cfg_type_want(k->type),
                    cfg_node_kind(n));
}

/* A default is a one-value YAML document; a bad one is the schema's bug. */
static void cfg_apply_default(const hm_cfg_key *k, void *f) {
    if (!k->def) return;
    yaml_parser_t p;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&p)) hm_panic("config: out of memory initializing libyaml");
    yaml_parser_set_input_string(&p, (const unsigned char *)k->def, strlen(k->def));
    if (!yaml_parser_load(&p, &doc))
        hm_panic("config: schema default of %s is not valid YAML: %s", k->path,
                 p.problem ? p.problem : "cannot parse");
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    cfg_origin o = {.source = CFG_FROM_DEFAULT};
    hm_err e = {{0}};
    bool provided = false;
    int rc = root ? cfg_apply_node(&o, &e, k, f, &doc, root, &provided) : 0;
    yaml_document_delete(&doc);
    yaml_parser_delete(&p);
    if (rc != 0) hm_panic("config: %s", e.msg);
}

/* An env list: "a, b,c" or "[a, b]"; items trimmed, empty items refused. */
static bool cfg_is_blank(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static void cfg_trim(const char **s, size_t *len) {
    while (*len > 0 && cfg_is_blank(**s))
        (*s)++, (*len)--;
    while (*len > 0 && cfg_is_blank((*s)[*len - 1]))
        (*len)--;
}

static int cfg_parse_env_list(const char *text, hm_str_list *out, char *why, size_t why_size) {
    const char *s = text;
    size_t len = strlen(text);
    cfg_trim(&s, &len);
    if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
        s++;
        len -= 2;
        cfg_trim(&s, &len);
    }
    hm_str_list l = {0};
    if (len == 0) {
        *out = l;
        return 0;
    }
    const char *end = s + len;
    for (const char *p = s;;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *item_end = comma ? comma : end;
        const char *item = p;
        size_t ilen = (size_t)(item_end - p);
        cfg_trim(&item, &ilen);
        if (ilen == 0) {
            snprintf(why, why_size, "item %zu of the comma-separated list is empty", l.n + 1);
            hm_str_list_free(&l);
            return -EINVAL;
        }
        cfg_list_push(&l, hm_xstrndup(item, ilen));
        if (!comma) break;
        p = comma + 1;
    }
    *out = l;
    return 0;
}

/* ---------------------------------------------------------------------------
 * Schema: the tables are code, so a broken one panics at the first load.
 */

typedef struct cfg_flat {
    const hm_cfg_key *key;
    size_t section;
} cfg_flat;

/* Every key of every section in table order; the caller frees the array. */
static cfg_flat *cfg_flatten(const hm_cfg_section *sections, size_t n_sections, size_t *n_out) {
    size_t n = 0;
    for (size_t i = 0; i < n_sections; i++)
        n += sections[i].n_keys;
    cfg_flat *flat = hm_xcalloc(n, sizeof(*flat));
    size_t j = 0;
    for (size_t i = 0; i < n_sections; i++) {
        for (size_t k = 0; k < sections[i].n_keys; k++) {
            flat[j].key = &sections[i].keys[k];
            flat[j].section = i;
            j++;
        }
    }
    *n_out = n;
    return flat;
}

/* Does path name a group of keys, i.e. is "path." a prefix of some key? */
static bool cfg_is_prefix_of(const char *prefix, const char *path) {
    size_t n = strlen(prefix);
    return strncmp(path, prefix, n) == 0 && path[n] == '.';
}

static void cfg_check_schema(const hm_cfg_section *sections, size_t n_sections) {
    for (size_t i = 0; i < n_sections; i++) {
        const hm_cfg_section *s = &sections[i];
        if (!s->dst) hm_panic("config: section %zu has no dst", i);
        if (s->n_keys && !s->keys) hm_panic("config: section %zu has no keys table", i);
        for (size_t j = 0; j < i; j++) {
            if (sections[j].dst == s->dst && sections[j].dst_size != s->dst_size)
                hm_panic("config: sections %zu and %zu share a dst but not its size", j, i);
        }
        for (size_t k = 0; k < s->n_keys; k++) {
            const hm_cfg_key *key = &s->keys[k];
            const char *p = key->path;
            if (!p || !*p) hm_panic("config: section %zu key %zu has no path", i, k);
            size_t len = strlen(p);
            if (len > CFG_MAX_PATH) hm_panic("config: key %s: path is too long", p);
            for (size_t c = 0; c < len; c++) {
                char ch = p[c];
                bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                          (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' ||
                          (ch == '.' && c > 0 && c + 1 < len && p[c + 1] != '.');
                if (!ok) hm_panic("config: key %s: bad character in path", p);
            }
            size_t fsize = cfg_field_size(key->type);
            if (fsize == 0) hm_panic("config: key %s: unknown type %d", p, (int)key->type);
            if (key->offset + fsize > s->dst_size)
                hm_panic("config: key %s: offset %zu is outside its struct", p, key->offset);
            if ((key->flags & HM_CFG_REQUIRED) && key->def)
                hm_panic("config: key %s: a required key has no default", p);
        }
    }
    size_t n = 0;
    cfg_flat *flat = cfg_flatten(sections, n_sections, &n);
    for (size_t a = 0; a < n; a++) {
        const hm_cfg_key *ka = flat[a].key;
        for (size_t b = 0; b < n; b++) {
            const hm_cfg_key *kb = flat[b].key;
            if (a != b && strcmp(ka->path, kb->path) == 0)
                hm_panic("config: key %s is declared twice", ka->path);
            if (cfg_is_prefix_of(ka->path, kb->path))
                hm_panic("config: key %s is also the group of %s", ka->path, kb->path);
            size_t la = strlen(ka->path);
            if (ka->type == HM_CFG_SECRET && strncmp(kb->path, ka->path, la) == 0 &&
                strcmp(kb->path + la, "_file") == 0)
                hm_panic("config: key %s clashes with the file form of secret %s", kb->path,
                         ka->path);
        }
    }
    free(flat);
}

/* ---------------------------------------------------------------------------
 * Loading.
 */

/** One key during a load. */
typedef struct cfg_slot {
    const hm_cfg_key *key;
    void *field;   /* the key's field in its section's scratch copy */
    int line;      /* line of the key in the file; 0: not in the file */
    bool provided; /* given a non-null value by the file or the environment */
    /* HM_CFG_SECRET only: the <key>_file form. */
    char *secret_path; /* owned; the file to read the value from */
    int secret_line;   /* its line in the file */
    bool secret_env;   /* secret_path came from HIMARI_<PATH>_FILE */
} cfg_slot;

typedef struct cfg_load {
    cfg_slot *slots;
    size_t n_slots;
    cfg_origin file; /* messages about the file (or its absence) */
    hm_err *err;
} cfg_load;

static cfg_slot *cfg_find(cfg_load *ld, const char *path) {
    for (size_t i = 0; i < ld->n_slots; i++) {
        if (strcmp(ld->slots[i].key->path, path) == 0) return &ld->slots[i];
    }
    return NULL;
}

/* "redis.password_file" -> the slot of secret "redis.password". */
static cfg_slot *cfg_find_secret_file(cfg_load *ld, const char *path) {
    static const char suffix[] = "_file";
    size_t len = strlen(path), slen = sizeof(suffix) - 1;
    if (len <= slen || strcmp(path + len - slen, suffix) != 0) return NULL;
    for (size_t i = 0; i < ld->n_slots; i++) {
        const hm_cfg_key *k = ld->slots[i].key;
        if (k->type == HM_CFG_SECRET && strlen(k->path) == len - slen &&
            strncmp(k->path, path, len - slen) == 0)
            return &ld->slots[i];
    }
    return NULL;
}

static bool cfg_is_group(cfg_load *ld, const char *path) {
    for (size_t i = 0; i < ld->n_slots; i++) {
        if (cfg_is_prefix_of(path, ld->slots[i].key->path)) return true;
    }
    return false;
}

/* Walk a mapping whose keys extend prefix ("" at the top). */
static int cfg_walk(cfg_load *ld, yaml_document_t *doc, yaml_node_t *map, const char *prefix,
                    int depth) {
    const cfg_origin *o = &ld->file;
    const char *where = *prefix ? prefix : "(top level)";
    char echo[CFG_ECHO_MAX + 8];
    assert(map->type == YAML_MAPPING_NODE);
    if (depth > CFG_MAX_DEPTH) return cfg_fail(ld->err, o, cfg_line(map), where, "nested too deep");
    yaml_node_pair_t *start = map->data.mapping.pairs.start;
    for (yaml_node_pair_t *pr = start; pr < map->data.mapping.pairs.top; pr++) {
        yaml_node_t *kn = yaml_document_get_node(doc, pr->key);
        yaml_node_t *vn = yaml_document_get_node(doc, pr->value);
        if (!kn || !vn) return cfg_fail(ld->err, o, cfg_line(map), where, "incomplete mapping");
        int kline = cfg_line(kn);
        if (!cfg_is_string_node(kn))
            return cfg_fail(ld->err, o, kline, where, "a key must be a string, got %s",
                            cfg_node_kind(kn));
        const char *name = cfg_scalar(kn);
        size_t plen = strlen(prefix), nlen = kn->data.scalar.length;
        if (plen + 1 + nlen > CFG_MAX_PATH)
            return cfg_fail(ld->err, o, kline, where, "key '%s' is too long",
                            cfg_echo(name, nlen, echo, sizeof(echo)));
        char path[CFG_MAX_PATH + 2];
        if (plen) {
            memcpy(path, prefix, plen);
            path[plen++] = '.';
        }
        memcpy(path + plen, name, nlen + 1);

        for (yaml_node_pair_t *q = start; q < pr; q++) {
            yaml_node_t *qk = yaml_document_get_node(doc, q->key);
            if (qk && qk->type == YAML_SCALAR_NODE && strcmp(cfg_scalar(qk), name) == 0)
                return cfg_fail(ld->err, o, kline, path, "duplicate key (first at line %d)",
                                cfg_line(qk));
        }

        cfg_slot *s = cfg_find(ld, path);
        if (s) {
            /* Also catches a key written both nested and as a dotted name. */
            if (s->line)
                return cfg_fail(ld->err, o, kline, path, "duplicate key (first at line %d)",
                                s->line);
            s->line = kline;
            int rc = cfg_apply_node(o, ld->err, s->key, s->field, doc, vn, &s->provided);
            if (rc != 0) return rc;
            continue;
        }
        s = cfg_find_secret_file(ld, path);
        if (s) {
            if (s->secret_line)
                return cfg_fail(ld->err, o, kline, path, "duplicate key (first at line %d)",
                                s->secret_line);
            if (!cfg_is_string_node(vn))
                return cfg_fail(ld->err, o, cfg_line(vn), path, "expected a file path, got %s",
                                cfg_node_kind(vn));
            s->secret_path = hm_xstrndup(cfg_scalar(vn), vn->data.scalar.length);
            s->secret_line = kline;
            continue;
        }
        if (cfg_is_group(ld, path)) {
            if (vn->type == YAML_MAPPING_NODE) {
                int rc = cfg_walk(ld, doc, vn, path, depth + 1);
                if (rc != 0) return rc;
                continue;
            }
            /* An empty group: the example file writes one when all its keys are
             * commented out (required keys, secrets). */
            if (cfg_is_null(vn)) continue;
            return cfg_fail(ld->err, o, cfg_line(vn), path, "expected a mapping of keys, got %s",
                            cfg_node_kind(vn));
        }
        return cfg_fail(ld->err, o, kline, path, "unknown key");
    }
    return 0;
}

static int cfg_yaml_error(hm_err *err, const char *file, const yaml_parser_t *p) {
    if (p->error == YAML_MEMORY_ERROR) return hm_err_set(err, -ENOMEM, "%s: out of memory", file);
    const char *problem = p->problem ? p->problem : "cannot parse";
    if (p->error == YAML_READER_ERROR)
        return hm_err_set(err, -EINVAL, "%s: invalid YAML: %s (at byte %zu)", file, problem,
                          p->problem_offset);
    int line = (int)p->problem_mark.line + 1;
    if (p->context)
        return hm_err_set(err, -EINVAL, "%s:%d: invalid YAML: %s (%s at line %d)", file, line,
                          problem, p->context, (int)p->context_mark.line + 1);
    return hm_err_set(err, -EINVAL, "%s:%d: invalid YAML: %s", file, line, problem);
}

static int cfg_read_file(cfg_load *ld, const char *path) {
    char *text = NULL;
    size_t len = 0;
    hm_err e = {{0}};
    int rc = hm_read_file(path, CFG_MAX_FILE_BYTES, &text, &len, &e);
    if (rc != 0) return hm_err_set(ld->err, rc, "%s", e.msg);

    yaml_parser_t p;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&p)) hm_panic("config: out of memory initializing libyaml");
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    if (!yaml_parser_load(&p, &doc)) {
        rc = cfg_yaml_error(ld->err, path, &p);
        goto out;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root && root->type == YAML_MAPPING_NODE) {
        rc = cfg_walk(ld, &doc, root, "", 0);
    } else if (root && !cfg_is_null(root)) {
        rc = cfg_fail(ld->err, &ld->file, cfg_line(root), "(top level)",
                      "expected a mapping of keys, got %s", cfg_node_kind(root));
    }
    if (rc == 0 && root) {
        /* A second document would be silently ignored by the walk above. */
        yaml_document_t next;
        if (!yaml_parser_load(&p, &next)) {
            rc = cfg_yaml_error(ld->err, path, &p);
        } else {
            yaml_node_t *r2 = yaml_document_get_root_node(&next);
            if (r2)
                rc = cfg_fail(ld->err, &ld->file, cfg_line(r2), "(top level)",
                              "only one YAML document is allowed");
            yaml_document_delete(&next);
        }
    }
    yaml_document_delete(&doc);
out:
    yaml_parser_delete(&p);
    free(text);
    return rc;
}

/* Within one layer (the file) a secret is either inline or a file, not both. */
static int cfg_check_secret_forms(cfg_load *ld) {
    for (size_t i = 0; i < ld->n_slots; i++) {
        cfg_slot *s = &ld->slots[i];
        if (s->key->type != HM_CFG_SECRET || !s->provided || !s->secret_path) continue;
        int line = s->line > s->secret_line ? s->line : s->secret_line;
        return cfg_fail(ld->err, &ld->file, line, s->key->path,
                        "give either the value or %s_file, not both",
                        cfg_last_component(s->key->path));
    }
    return 0;
}

static int cfg_apply_env(cfg_load *ld) {
    char name[CFG_ENV_MAX], fname[CFG_ENV_MAX + 8], why[256];
    for (size_t i = 0; i < ld->n_slots; i++) {
        cfg_slot *s = &ld->slots[i];
        const hm_cfg_key *k = s->key;
        /* Maps are file-only: free-form keys have no unambiguous env spelling. */
        if (k->type == HM_CFG_STR_MAP) continue;
        hm_config_env_name(k->path, name, sizeof(name));
        const char *v = getenv(name);
        cfg_origin o = {.source = CFG_FROM_ENV, .env = name};
        if (k->type == HM_CFG_SECRET) {
            snprintf(fname, sizeof(fname), "%s_FILE", name);
            const char *fv = getenv(fname);
            if (!v && !fv) continue;
            if (v && fv)
                return cfg_fail(ld->err, &o, 0, k->path, "give either the value or %s, not both",
                                fname);
            /* The environment replaces whichever form the file used. */
            free(s->secret_path);
            s->secret_path = NULL;
            s->secret_line = 0;
            cfg_field_free(k->type, s->field);
            if (v) {
                *(char **)s->field = hm_xstrdup(v);
            } else {
                s->secret_path = hm_xstrdup(fv);
                s->secret_env = true;
            }
            s->provided = true;
            continue;
        }
        if (!v) continue;
        if (k->type == HM_CFG_STR_LIST) {
            hm_str_list l = {0};
            if (cfg_parse_env_list(v, &l, why, sizeof(why)) != 0)
                return cfg_fail(ld->err, &o, 0, k->path, "%s", why);
            hm_str_list_free(s->field);
            *(hm_str_list *)s->field = l;
        } else if (k->type == HM_CFG_STR) {
            int rc = cfg_set_text(k, s->field, v, strlen(v), why, sizeof(why));
            assert(rc == 0);
            HM_UNUSED(rc);
        } else {
            /* Numbers and booleans: blanks around them are a shell artefact. */
            const char *t = v;
            size_t tlen = strlen(v);
            cfg_trim(&t, &tlen);
            char *copy = hm_xstrndup(t, tlen);
            int rc = cfg_set_text(k, s->field, copy, tlen, why, sizeof(why));
            free(copy);
            if (rc != 0) return cfg_fail(ld->err, &o, 0, k->path, "%s", why);
        }
        s->provided = true;
    }
    return 0;
}

static int cfg_read_secrets(cfg_load *ld) {
    char name[CFG_ENV_MAX], fname[CFG_ENV_MAX + 8], kpath[CFG_MAX_PATH + 8];
    for (size_t i = 0; i < ld->n_slots; i++) {
        cfg_slot *s = &ld->slots[i];
        if (s->key->type != HM_CFG_SECRET || !s->secret_path) continue;
        hm_config_env_name(s->key->path, name, sizeof(name));
        snprintf(fname, sizeof(fname), "%s_FILE", name);
        snprintf(kpath, sizeof(kpath), "%s_file", s->key->path);
        cfg_origin eo = {.source = CFG_FROM_ENV, .env = fname};
        const cfg_origin *o = s->secret_env ? &eo : &ld->file;
        char *buf = NULL;
        int rc = cfg_read_secret_file(ld->err, o, s->secret_line, kpath, s->secret_path, &buf);
        if (rc != 0) return rc;
        cfg_field_free(HM_CFG_SECRET, s->field);
        *(char **)s->field = buf;
        s->provided = true;
    }
    return 0;
}

static int cfg_check_required(cfg_load *ld) {
    char name[CFG_ENV_MAX];
    for (size_t i = 0; i < ld->n_slots; i++) {
        cfg_slot *s = &ld->slots[i];
        const hm_cfg_key *k = s->key;
        if (!(k->flags & HM_CFG_REQUIRED)) continue;
        bool is_str = k->type == HM_CFG_STR || k->type == HM_CFG_SECRET;
        if (s->provided && !(is_str && *(char **)s->field == NULL)) continue;
        hm_config_env_name(k->path, name, sizeof(name));
        if (k->type == HM_CFG_SECRET)
            return cfg_fail(ld->err, &ld->file, 0, k->path,
                            "required key is missing (set it or %s_file in the file, or %s or "
                            "%s_FILE)",
                            cfg_last_component(k->path), name, name);
        if (k->type == HM_CFG_STR_MAP)
            return cfg_fail(ld->err, &ld->file, 0, k->path,
                            "required key is missing (set it in the file)");
        return cfg_fail(ld->err, &ld->file, 0, k->path,
                        "required key is missing (set it in the file or %s)", name);
    }
    return 0;
}

/* Index of the first section sharing section i's dst (i itself when none). */
static size_t cfg_dst_owner(const hm_cfg_section *sections, size_t i) {
    for (size_t j = 0; j < i; j++) {
        if (sections[j].dst == sections[i].dst) return j;
    }
    return i;
}

int hm_config_load(const hm_cfg_section *sections, size_t n_sections, const char *path,
                   hm_err *err) {
    assert(sections || n_sections == 0);
    cfg_check_schema(sections, n_sections);

    /* Scratch copies: bytes no key covers keep their current value. */
    void **scratch = hm_xcalloc(n_sections, sizeof(*scratch));
    for (size_t i = 0; i < n_sections; i++) {
        size_t owner = cfg_dst_owner(sections, i);
        if (owner != i) {
            scratch[i] = scratch[owner];
            continue;
        }
        scratch[i] = hm_xmalloc(sections[i].dst_size);
        memcpy(scratch[i], sections[i].dst, sections[i].dst_size);
    }

    cfg_load ld = {.file = {.source = CFG_FROM_FILE, .file = path ? path : "(no config file)"},
                   .err = err};
    cfg_flat *flat = cfg_flatten(sections, n_sections, &ld.n_slots);
    ld.slots = hm_xcalloc(ld.n_slots, sizeof(*ld.slots));
    for (size_t i = 0; i < ld.n_slots; i++) {
        cfg_slot *s = &ld.slots[i];
        s->key = flat[i].key;
        s->field = cfg_field(scratch[flat[i].section], s->key);
        /* The copied pointers still belong to dst: forget them, do not free. */
        memset(s->field, 0, cfg_field_size(s->key->type));
    }
    free(flat);
    for (size_t i = 0; i < ld.n_slots; i++)
        cfg_apply_default(ld.slots[i].key, ld.slots[i].field);

    int rc = path ? cfg_read_file(&ld, path) : 0;
    if (rc == 0) rc = cfg_check_secret_forms(&ld);
    if (rc == 0) rc = cfg_apply_env(&ld);
    if (rc == 0) rc = cfg_read_secrets(&ld);
    if (rc == 0) rc = cfg_check_required(&ld);

    if (rc == 0) {
        hm_config_free(sections, n_sections);
        for (size_t i = 0; i < n_sections; i++) {
            if (cfg_dst_owner(sections, i) == i)
                memcpy(sections[i].dst, scratch[i], sections[i].dst_size);
        }
    } else {
        for (size_t i = 0; i < ld.n_slots; i++)
            cfg_field_free(ld.slots[i].key->type, ld.slots[i].field);
    }
    for (size_t i = 0; i < ld.n_slots; i++)
        free(ld.slots[i].secret_path);
    free(ld.slots);
    for (size_t i = 0; i < n_sections; i++) {
        if (cfg_dst_owner(sections, i) == i) free(scratch[i]);
    }
    free(scratch);
    return rc;
}

void hm_config_free(const hm_cfg_section *sections, size_t n_sections) {
    for (size_t i = 0; i < n_sections; i++) {
        assert(sections[i].dst);
        for (size_t k = 0; k < sections[i].n_keys; k++) {
            const hm_cfg_key *key = &sections[i].keys[k];
            cfg_field_free(key->type, cfg_field(sections[i].dst, key));
        }
    }
}

/* ---------------------------------------------------------------------------
 * Comparing and digesting loaded values.
 */

static bool cfg_str_eq(const char *a, const char *b) {
    if (!a || !b) return a == b;
    return strcmp(a, b) == 0;
}

static bool cfg_field_eq(hm_cfg_type t, const void *a, const void *b) {
    switch (t) {
        case HM_CFG_STR:
        case HM_CFG_SECRET:
            return cfg_str_eq(*(char *const *)a, *(char *const *)b);
        case HM_CFG_INT:
            return *(const int64_t *)a == *(const int64_t *)b;
        case HM_CFG_DOUBLE:
            return *(const double *)a == *(const double *)b;
        case HM_CFG_BOOL:
            return *(const bool *)a == *(const bool *)b;
        case HM_CFG_STR_LIST: {
            const hm_str_list *la = a, *lb = b;
            if (la->n != lb->n) return false;
            for (size_t i = 0; i < la->n; i++) {
                if (strcmp(la->items[i], lb->items[i]) != 0) return false;
            }
            return true;
        }
        case HM_CFG_STR_MAP: {
            /* Keys are unique, so same size and every pair found means equal,
             * whatever the order they were written in. */
            const hm_str_map *ma = a, *mb = b;
            if (ma->n != mb->n) return false;
            for (size_t i = 0; i < ma->n; i++) {
                if (!cfg_str_eq(ma->vals[i], cfg_map_get(mb, ma->keys[i]))) return false;
            }
            return true;
        }
    }
    return false;
}

const char *hm_config_non_reloadable_change(const hm_cfg_section *sections, size_t n_sections,
                                            void *const *old_dst, void *const *new_dst) {
    for (size_t i = 0; i < n_sections; i++) {
        for (size_t k = 0; k < sections[i].n_keys; k++) {
            const hm_cfg_key *key = &sections[i].keys[k];
            if (key->flags & HM_CFG_RELOADABLE) continue;
            if (!cfg_field_eq(key->type, cfg_field(old_dst[i], key), cfg_field(new_dst[i], key)))
                return key->path;
        }
    }
    return NULL;
}

size_t hm_config_changed_keys(const hm_cfg_section *sections, size_t n_sections,
                              void *const *old_dst, void *const *new_dst, const char **out,
                              size_t max_out) {
    size_t n = 0;
    for (size_t i = 0; i < n_sections; i++) {
        for (size_t k = 0; k < sections[i].n_keys; k++) {
            const hm_cfg_key *key = &sections[i].keys[k];
            if (cfg_field_eq(key->type, cfg_field(old_dst[i], key), cfg_field(new_dst[i], key)))
                continue;
            if (n < max_out) out[n] = key->path;
            n++;
        }
    }
    return n;
}

static uint64_t cfg_fnv(uint64_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static uint64_t cfg_fnv_str(uint64_t h, const char *s) {
    return cfg_fnv(h, s, strlen(s));
}

void hm_config_digest(const hm_cfg_section *sections, size_t n_sections, char out[17]) {
    uint64_t h = 0xcbf29ce484222325ull;
    char num[CFG_NUM_MAX + 32];
    for (size_t i = 0; i < n_sections; i++) {
        for (size_t k = 0; k < sections[i].n_keys; k++) {
            const hm_cfg_key *key = &sections[i].keys[k];
            const void *f = cfg_field(sections[i].dst, key);
            h = cfg_fnv_str(h, key->path);
            h = cfg_fnv_str(h, "=");
            switch (key->type) {
                case HM_CFG_STR: {
                    const char *s = *(char *const *)f;
                    h = cfg_fnv_str(h, s ? s : "<unset>");
                    break;
                }
                case HM_CFG_SECRET: {
                    /* The length only: a digest is logged and must not leak. */
                    const char *s = *(char *const *)f;
                    if (s) snprintf(num, sizeof(num), "<set:%zu bytes>", strlen(s));
                    h = cfg_fnv_str(h, s ? num : "<unset>");
                    break;
                }
                case HM_CFG_INT:
                    snprintf(num, sizeof(num), "%" PRId64, *(const int64_t *)f);
                    h = cfg_fnv_str(h, num);
                    break;
                case HM_CFG_DOUBLE:
                    cfg_fmt_double(*(const double *)f, num, sizeof(num));
                    h = cfg_fnv_str(h, num);
                    break;
                case HM_CFG_BOOL:
                    h = cfg_fnv_str(h, *(const bool *)f ? "true" : "false");
                    break;
                case HM_CFG_STR_LIST: {
                    const hm_str_list *l = f;
                    for (size_t j = 0; j < l->n; j++) {
                        if (j) h = cfg_fnv_str(h, ",");
                        h = cfg_fnv_str(h, l->items[j]);
                    }
                    break;
                }
                case HM_CFG_STR_MAP: {
                    const hm_str_map *m = f;
                    for (size_t j = 0; j < m->n; j++) {
                        if (j) h = cfg_fnv_str(h, ",");
                        h = cfg_fnv_str(h, m->keys[j]);
                        h = cfg_fnv_str(h, "=");
                        if ((key->flags & HM_CFG_SECRET_VALUES) &&
                            hm_config_is_secret_name(m->keys[j])) {
                            snprintf(num, sizeof(num), "<set:%zu bytes>", strlen(m->vals[j]));
                            h = cfg_fnv_str(h, num);
                        } else {
                            h = cfg_fnv_str(h, m->vals[j]);
                        }
                    }
                    break;
                }
            }
            h = cfg_fnv_str(h, "\n");
        }
    }
    snprintf(out, 17, "%016" PRIx64, h);
}

/* ---------------------------------------------------------------------------
 * The example file.
 */

static bool cfg_is_letter(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Can s be written unquoted in block context and be read as the same string by
 * any YAML tool? Conservative: a letter or '/' first, a small set of characters,
 * not ending in ':', and not a word YAML 1.1 reads as a boolean or null. */
static bool cfg_plain_safe(const char *s) {
    static const char *const words[] = {"y",   "n",    "yes",   "no",   "on",
                                        "off", "true", "false", "null", "~"};
    if (!cfg_is_letter(s[0]) && s[0] != '/') return false;
    size_t len = strlen(s);
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!cfg_is_letter(c) && !(c >= '0' && c <= '9') && !strchr("_./@+:-", c)) return false;
    }
    if (s[len - 1] == ':') return false;
    for (size_t i = 0; i < HM_ARRAY_LEN(words); i++) {
        if (strcasecmp(s, words[i]) == 0) return false;
    }
    return true;
}

static void cfg_write_str(FILE *out, const char *s, bool allow_plain) {
    if (allow_plain && cfg_plain_safe(s)) {
        fputs(s, out);
        return;
    }
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
            case '"':
                fputs("\\\"", out);
                break;
            case '\\':
                fputs("\\\\", out);
                break;
            case '\n':
                fputs("\\n", out);
                break;
            case '\t':
                fputs("\\t", out);
                break;
            case '\r':
                fputs("\\r", out);
                break;
            default:
                if (*p < 0x20 || *p == 0x7f)
                    fprintf(out, "\\x%02x", *p);
                else
                    fputc(*p, out);
        }
    }
    fputc('"', out);
}

static void cfg_write_value(FILE *out, const hm_cfg_key *k, const void *f) {
    char num[CFG_NUM_MAX];
    switch (k->type) {
        case HM_CFG_STR:
        case HM_CFG_SECRET: {
            const char *s = *(char *const *)f;
            if (s)
                cfg_write_str(out, s, true);
            else
                fputc('~', out);
            break;
        }
        case HM_CFG_INT:
            fprintf(out, "%" PRId64, *(const int64_t *)f);
            break;
        case HM_CFG_DOUBLE:
            cfg_fmt_double(*(const double *)f, num, sizeof(num));
            fputs(num, out);
            break;
        case HM_CFG_BOOL:
            fputs(*(const bool *)f ? "true" : "false", out);
            break;
        case HM_CFG_STR_LIST: {
            /* Flow items are always quoted: ',', ':' and brackets mean things there. */
            const hm_str_list *l = f;
            fputc('[', out);
            for (size_t i = 0; i < l->n; i++) {
                if (i) fputs(", ", out);
                cfg_write_str(out, l->items[i], false);
            }
            fputc(']', out);
            break;
        }
        case HM_CFG_STR_MAP: {
            const hm_str_map *m = f;
            fputc('{', out);
            for (size_t i = 0; i < m->n; i++) {
                if (i) fputs(", ", out);
                cfg_write_str(out, m->keys[i], false);
                fputs(": ", out);
                cfg_write_str(out, m->vals[i], false);
            }
            fputc('}', out);
            break;
        }
    }
}

/* Comment text stays on its comment line. */
static void cfg_write_oneline(FILE *out, const char *s) {
    for (; *s; s++)
        fputc(*s == '\n' || *s == '\r' ? ' ' : *s, out);
}

static void cfg_write_leaf(FILE *out, const hm_cfg_key *k, const void *f, int depth) {
    char env[CFG_ENV_MAX];
    const char *name = cfg_last_component(k->path);
    hm_config_env_name(k->path, env, sizeof(env));
    int ind = depth * 2;

    fprintf(out, "%*s# ", ind, "");
    if (k->doc && *k->doc) {
        cfg_write_oneline(out, k->doc);
        fputs("; ", out);
    }
    if (cfg_has_range(k) && (k->type == HM_CFG_INT || k->type == HM_CFG_DOUBLE)) {
        char lo[CFG_NUM_MAX], hi[CFG_NUM_MAX];
        cfg_fmt_double(k->min, lo, sizeof(lo));
        cfg_fmt_double(k->max, hi, sizeof(hi));
        fprintf(out, "range %s..%s; ", lo, hi);
    }
    if (k->flags & HM_CFG_RELOADABLE) fputs("(reloadable); ", out);
    if (k->type == HM_CFG_SECRET)
        fprintf(out, "secret; env %s or %s_FILE\n", env, env);
    else if (k->type == HM_CFG_STR_MAP)
        fputs("not settable from the environment\n", out);
    else
        fprintf(out, "env %s\n", env);

    bool required = (k->flags & HM_CFG_REQUIRED) && !k->def;
    if (k->type == HM_CFG_SECRET) {
        /* A secret's value never belongs in a file that is committed. */
        fprintf(out, "%*s# %s_file: /run/secrets/%s%s\n", ind, "", name, name,
                required ? "  # required" : "");
    } else if (required) {
        fprintf(out, "%*s# %s:  # required\n", ind, "", name);
    } else {
        fprintf(out, "%*s%s: ", ind, "", name);
        cfg_write_value(out, k, f);
        fputc('\n', out);
    }
}

/* Write the keys under prefix ("" at the top), each group where it first
 * appears in table order, so keys of one group never split into two mappings. */
static void cfg_write_group(FILE *out, const cfg_flat *flat, size_t n, void *const *defs,
                            const char *prefix, int depth) {
    size_t plen = strlen(prefix);
    for (size_t i = 0; i < n; i++) {
        const char *p = flat[i].key->path;
        if (plen && !cfg_is_prefix_of(prefix, p)) continue;
        const char *rest = plen ? p + plen + 1 : p;
        const char *dot = strchr(rest, '.');
        if (!dot) {
            if (depth == 0) fputc('\n', out);
            cfg_write_leaf(out, flat[i].key, cfg_field(defs[flat[i].section], flat[i].key), depth);
            continue;
        }
        size_t clen = (size_t)(dot - rest);
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++) {
            const char *q = flat[j].key->path;
            if (plen && !cfg_is_prefix_of(prefix, q)) continue;
            const char *qrest = plen ? q + plen + 1 : q;
            seen = strncmp(qrest, rest, clen + 1) == 0;
        }
        if (seen) continue;
        if (depth == 0) fputc('\n', out);
        fprintf(out, "%*s%.*s:\n", depth * 2, "", (int)clen, rest);
        char sub[CFG_MAX_PATH + 1];
        snprintf(sub, sizeof(sub), "%.*s", (int)(plen ? plen + 1 + clen : clen), p);
        cfg_write_group(out, flat, n, defs, sub, depth + 1);
    }
}

void hm_config_write_example(const hm_cfg_section *sections, size_t n_sections, const char *title,
                             FILE *out) {
    cfg_check_schema(sections, n_sections);
    size_t n = 0;
    cfg_flat *flat = cfg_flatten(sections, n_sections, &n);
    /* The defaults, parsed as hm_config_load parses them, into zeroed copies. */
    void **defs = hm_xcalloc(n_sections, sizeof(*defs));
    for (size_t i = 0; i < n_sections; i++) {
        size_t owner = cfg_dst_owner(sections, i);
        defs[i] = owner == i ? hm_xcalloc(1, sections[i].dst_size) : defs[owner];
    }
    for (size_t i = 0; i < n; i++)
        cfg_apply_default(flat[i].key, cfg_field(defs[flat[i].section], flat[i].key));

    fputs("# ", out);
    cfg_write_oneline(out, title && *title ? title : "configuration");
    fputs("\n#\n"
          "# Every key is optional and shows its default, unless marked \"# required\".\n"
          "# Each key can also be set by the environment variable named in its comment;\n"
          "# the environment wins over this file. A secret is best given as <key>_file\n"
          "# (or <VARIABLE>_FILE): the file's content, without a trailing newline.\n",
          out);
    cfg_write_group(out, flat, n, defs, "", 0);

    for (size_t i = 0; i < n; i++)
        cfg_field_free(flat[i].key->type, cfg_field(defs[flat[i].section], flat[i].key));
    for (size_t i = 0; i < n_sections; i++) {
        if (cfg_dst_owner(sections, i) == i) free(defs[i]);
    }
    free(defs);
    free(flat);
}
