/*
 * test_config.c: unit tests for common/src/config.c, the schema-driven YAML
 * loader every service's main.c and ReloadConfig go through.
 *
 * A small two-section schema covers every key type. Files come from
 * tests/unit/fixtures/config/ (found next to this source file) or from temp
 * files under /tmp; every test undoes its env changes so tests stay independent.
 * Messages are compared whole: they are what an operator reads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "himari/config.h"
#include "himari/kafka.h"
#include "himari/log.h"

/* ---- the test schema ------------------------------------------------------ */

typedef struct tcfg {
    char *name;
    char *note;
    char *bootstrap;
    hm_str_list topics;
    int64_t port;
    int64_t max_skew_ms;
    double ratio;
    bool verbose;
    hm_str_map labels;
    char *password;
    int64_t untouched; /* no key covers it: a load must keep it */
} tcfg;

typedef struct tcfg2 {
    int64_t linger_ms;
    int64_t workers;
    double scale;
} tcfg2;

static const hm_cfg_key tkeys[] = {
    {"service.name", HM_CFG_STR, offsetof(tcfg, name), "himari", 0, 1, 0, "service name"},
    {"service.note", HM_CFG_STR, offsetof(tcfg, note), NULL, 0, 1, 0, "free text, unset"},
    {"kafka.bootstrap_servers", HM_CFG_STR, offsetof(tcfg, bootstrap), NULL, HM_CFG_REQUIRED, 1, 0,
     "host:port list"},
    {"kafka.topics", HM_CFG_STR_LIST, offsetof(tcfg, topics), "[raw_market_data, quality_scores]",
     0, 1, 0, "topics to read"},
    {"admin.port", HM_CFG_INT, offsetof(tcfg, port), "8080", 0, 1, 65535, "admin HTTP port"},
    {"checks.max_skew_ms", HM_CFG_INT, offsetof(tcfg, max_skew_ms), "-5", HM_CFG_RELOADABLE, -1000,
     1000, "clock skew allowed, ms"},
    {"checks.ratio", HM_CFG_DOUBLE, offsetof(tcfg, ratio), "0.25", HM_CFG_RELOADABLE, 0, 1,
     "fraction of something"},
    {"log.verbose", HM_CFG_BOOL, offsetof(tcfg, verbose), "false", HM_CFG_RELOADABLE, 1, 0,
     "log every record"},
    {"labels", HM_CFG_STR_MAP, offsetof(tcfg, labels), "{}", 0, 1, 0, "extra metric labels"},
    {"redis.password", HM_CFG_SECRET, offsetof(tcfg, password), NULL, 0, 1, 0, "Redis AUTH"},
};

/* A second struct whose keys share the "kafka" group with the first. */
static const hm_cfg_key tkeys2[] = {
    {"kafka.linger_ms", HM_CFG_INT, offsetof(tcfg2, linger_ms), "5", 0, 0, 10000, "batching, ms"},
    {"engine.workers", HM_CFG_INT, offsetof(tcfg2, workers), "2", HM_CFG_RELOADABLE, 1, 64,
     "worker count"},
    {"engine.scale", HM_CFG_DOUBLE, offsetof(tcfg2, scale), "1e3", 0, 1, 0, "unbounded factor"},
};

typedef struct fix {
    tcfg a;
    tcfg2 b;
    hm_cfg_section sections[2];
    hm_err err;
    char tmp[64];    /* a temp file to unlink at teardown, or "" */
    char secret[64]; /* a second temp file (secrets), or "" */
} fix;

static void sections_for(hm_cfg_section out[2], tcfg *a, tcfg2 *b) {
    out[0] = (hm_cfg_section){tkeys, HM_ARRAY_LEN(tkeys), a, sizeof(*a)};
    out[1] = (hm_cfg_section){tkeys2, HM_ARRAY_LEN(tkeys2), b, sizeof(*b)};
}

/* Every env variable the schema reads, so a test can never leak one. */
static void unset_schema_env(void) {
    char name[256], fname[300];
    for (size_t i = 0; i < HM_ARRAY_LEN(tkeys); i++) {
        hm_config_env_name(tkeys[i].path, name, sizeof(name));
        snprintf(fname, sizeof(fname), "%s_FILE", name);
        unsetenv(name);
        unsetenv(fname);
    }
    for (size_t i = 0; i < HM_ARRAY_LEN(tkeys2); i++) {
        hm_config_env_name(tkeys2[i].path, name, sizeof(name));
        unsetenv(name);
    }
}

static int setup(void **state) {
    fix *f = calloc(1, sizeof(*f));
    if (!f) return -1;
    sections_for(f->sections, &f->a, &f->b);
    unset_schema_env();
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fix *f = *state;
    hm_config_free(f->sections, 2);
    if (f->tmp[0]) unlink(f->tmp);
    if (f->secret[0]) unlink(f->secret);
    unset_schema_env();
    free(f);
    return 0;
}

/* ---- helpers -------------------------------------------------------------- */

/* tests/unit/fixtures/config/<name>, found from this file's own path so the
 * runner works from any directory. */
static const char *fixture(const char *name) {
    static char path[1024];
    const char *src = __FILE__;
    const char *slash = strrchr(src, '/');
    int dirlen = slash ? (int)(slash - src) : 1;
    snprintf(path, sizeof(path), "%.*s/fixtures/config/%s", dirlen, slash ? src : ".", name);
    return path;
}

static void write_temp(char path[64], const char *content) {
    snprintf(path, 64, "/tmp/himari-test-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(content);
    assert_int_equal(write(fd, content, len), (ssize_t)len);
    close(fd);
}

static int load(fix *f, const char *path) {
    return hm_config_load(f->sections, 2, path, &f->err);
}

/* Load YAML text from a temp file (kept in f->tmp for the message). */
static int load_text(fix *f, const char *yaml) {
    if (f->tmp[0]) unlink(f->tmp);
    write_temp(f->tmp, yaml);
    return load(f, f->tmp);
}

static const char *fmt(const char *format, ...) HM_PRINTF(1, 2);
static const char *fmt(const char *format, ...) {
    static char buf[1024];
    va_list ap;
    va_start(ap, format);
    vsnprintf(buf, sizeof(buf), format, ap);
    va_end(ap);
    return buf;
}

static void assert_defaults(const tcfg *a, const tcfg2 *b) {
    assert_string_equal(a->name, "himari");
    assert_null(a->note);
    assert_int_equal(a->topics.n, 2);
    assert_string_equal(a->topics.items[0], "raw_market_data");
    assert_string_equal(a->topics.items[1], "quality_scores");
    assert_int_equal(a->port, 8080);
    assert_int_equal(a->max_skew_ms, -5);
    assert_true(a->ratio == 0.25);
    assert_false(a->verbose);
    assert_int_equal(a->labels.n, 0);
    assert_null(a->password);
    assert_int_equal(b->linger_ms, 5);
    assert_int_equal(b->workers, 2);
    assert_true(b->scale == 1000.0);
}

/* ---- loading -------------------------------------------------------------- */

static void test_valid_file_loads_every_type(void **state) {
    fix *f = *state;
    assert_int_equal(load(f, fixture("valid.yaml")), 0);
    assert_string_equal(f->a.name, "ingest-validator");
    assert_non_null(f->a.note);
    assert_string_equal(f->a.note, "");
    assert_string_equal(f->a.bootstrap, "broker-1:9092,broker-2:9092");
    assert_int_equal(f->a.topics.n, 2);
    assert_string_equal(f->a.topics.items[0], "raw_market_data");
    assert_string_equal(f->a.topics.items[1], "quality scores");
    assert_int_equal(f->a.port, 9100);
    assert_int_equal(f->a.max_skew_ms, -250);
    assert_true(f->a.ratio == 0.75);
    assert_true(f->a.verbose);
    assert_int_equal(f->a.labels.n, 2);
    assert_string_equal(f->a.labels.keys[0], "region");
    assert_string_equal(f->a.labels.vals[0], "fsn1");
    assert_string_equal(f->a.labels.keys[1], "tier");
    assert_string_equal(f->a.labels.vals[1], "hot");
    assert_string_equal(f->a.password, "s3cret-inline");
    assert_int_equal(f->b.linger_ms, 20);
    assert_int_equal(f->b.workers, 8);
    assert_true(f->b.scale == 2.5e-3);
}

static void test_defaults_apply_when_file_omits_keys(void **state) {
    fix *f = *state;
    assert_int_equal(load(f, fixture("minimal.yaml")), 0);
    assert_string_equal(f->a.bootstrap, "localhost:9092");
    assert_defaults(&f->a, &f->b);
}

static void test_null_path_loads_defaults_and_env(void **state) {
    fix *f = *state;
    setenv("HIMARI_KAFKA_BOOTSTRAP_SERVERS", "env-broker:9092", 1);
    setenv("HIMARI_ENGINE_WORKERS", "7", 1);
    assert_int_equal(load(f, NULL), 0);
    assert_string_equal(f->a.bootstrap, "env-broker:9092");
    assert_int_equal(f->b.workers, 7);
    f->b.workers = 2; /* the only non-default: the rest must be the defaults */
    assert_defaults(&f->a, &f->b);
}

static void test_null_path_without_required_env_names_key_and_env_variable(void **state) {
    fix *f = *state;
    assert_int_equal(load(f, NULL), -EINVAL);
    assert_string_equal(f->err.msg,
                        "(no config file): kafka.bootstrap_servers: required key is missing "
                        "(set it in the file or HIMARI_KAFKA_BOOTSTRAP_SERVERS)");
}

static void test_file_of_only_comments_loads_defaults(void **state) {
    fix *f = *state;
    setenv("HIMARI_KAFKA_BOOTSTRAP_SERVERS", "b:1", 1);
    assert_int_equal(load_text(f, "# nothing here\n\n# at all\n"), 0);
    assert_defaults(&f->a, &f->b);
}

static void test_unknown_key_names_file_line_and_key(void **state) {
    fix *f = *state;
    const char *path = fixture("unknown_key.yaml");
    assert_int_equal(load(f, path), -EINVAL);
    assert_string_equal(f->err.msg, fmt("%s:7: kafka.comit_interval_ms: unknown key", path));
}

static void test_unknown_top_level_group_names_the_key(void **state) {
    fix *f = *state;
    assert_int_equal(load_text(f, "kafka:\n  bootstrap_servers: b\nredsi:\n  password: x\n"),
                     -EINVAL);
    assert_string_equal(f->err.msg, fmt("%s:3: redsi: unknown key", f->tmp));
}

typedef struct bad_case {
    const char *yaml; /* after a valid "kafka.bootstrap_servers" line */
    const char *msg;  /* expected message after "<file>:" */
} bad_case;

static void check_bad_cases(fix *f, const bad_case *cases, size_t n) {
    char yaml[1024];
    for (size_t i = 0; i < n; i++) {
        snprintf(yaml, sizeof(yaml), "kafka:\n  bootstrap_servers: b:1\n%s", cases[i].yaml);
        int rc = load_text(f, yaml);
        if (rc != -EINVAL) print_error("case %zu: rc %d for:\n%s\n", i, rc, yaml);
        assert_int_equal(rc, -EINVAL);
        assert_string_equal(f->err.msg, fmt("%s:%s", f->tmp, cases[i].msg));
    }
}

static void test_wrong_type_names_file_line_key_and_reason(void **state) {
    static const bad_case cases[] = {
        {"admin:\n  port: abc\n", "4: admin.port: expected an integer, got 'abc'"},
        {"admin:\n  port: 80.5\n", "4: admin.port: expected an integer, got '80.5'"},
        {"admin:\n  port: 0x50\n", "4: admin.port: expected an integer, got '0x50'"},
        {"admin:\n  port: 080\n", "4: admin.port: expected an integer, got '080'"},
        {"admin:\n  port: 1_000\n", "4: admin.port: expected an integer, got '1_000'"},
        {"admin:\n  port: ~\n", "4: admin.port: expected an integer, got null"},
        {"admin:\n  port: [1]\n", "4: admin.port: expected an integer, got a sequence"},
        {"admin:\n  port:\n    a: 1\n", "5: admin.port: expected an integer, got a mapping"},
        {"checks:\n  ratio: fast\n", "4: checks.ratio: expected a number, got 'fast'"},
        {"checks:\n  ratio: .nan\n", "4: checks.ratio: expected a number, got '.nan'"},
        {"checks:\n  ratio: nan\n", "4: checks.ratio: expected a number, got 'nan'"},
        {"checks:\n  ratio: inf\n", "4: checks.ratio: expected a number, got 'inf'"},
        {"checks:\n  ratio: 1e\n", "4: checks.ratio: expected a number, got '1e'"},
        {"log:\n  verbose: yes\n",
         "4: log.verbose: expected a boolean, got 'yes' (write true or false)"},
        {"log:\n  verbose: on\n",
         "4: log.verbose: expected a boolean, got 'on' (write true or false)"},
        {"log:\n  verbose: True\n",
         "4: log.verbose: expected a boolean, got 'True' (write true or false)"},
        {"log:\n  verbose: 1\n",
         "4: log.verbose: expected a boolean, got '1' (write true or false)"},
        {"kafka.topics: raw\n", "3: kafka.topics: expected a list (a YAML sequence), got a scalar"},
        {"kafka.topics:\n  a: b\n",
         "4: kafka.topics: expected a list (a YAML sequence), got a mapping"},
        {"kafka.topics:\n  - a\n  - {x: 1}\n",
         "5: kafka.topics[1]: expected a string, got a mapping"},
        {"kafka.topics: [a, [b]]\n", "3: kafka.topics[1]: expected a string, got a sequence"},
        {"kafka.topics: [a, ~]\n", "3: kafka.topics[1]: expected a string, got null"},
        {"labels: [a, b]\n", "3: labels: expected a mapping of strings, got a sequence"},
        {"labels: x\n", "3: labels: expected a mapping of strings, got a scalar"},
        {"labels:\n  a:\n    b: c\n", "5: labels.a: expected a string, got a mapping"},
        {"labels:\n  a: [1]\n", "4: labels.a: expected a string, got a sequence"},
        {"labels:\n  a: 1\n  a: 2\n", "5: labels.a: duplicate key"},
        {"service:\n  name: [a]\n", "4: service.name: expected a string, got a sequence"},
        {"service:\n  name:\n    x: y\n", "5: service.name: expected a string, got a mapping"},
        {"redis:\n  password: [a]\n", "4: redis.password: expected a string, got a sequence"},
        {"redis:\n  password_file: [a]\n",
         "4: redis.password_file: expected a file path, got a sequence"},
        {"admin: 5\n", "3: admin: expected a mapping of keys, got a scalar"},
        {"[1, 2]: x\n", "3: (top level): a key must be a string, got a sequence"},
    };
    check_bad_cases(*state, cases, HM_ARRAY_LEN(cases));
}

static void test_top_level_that_is_not_a_mapping_is_an_error(void **state) {
    fix *f = *state;
    assert_int_equal(load_text(f, "# a list, not a config\n- a\n- b\n"), -EINVAL);
    assert_string_equal(
        f->err.msg, fmt("%s:2: (top level): expected a mapping of keys, got a sequence", f->tmp));
}

static void test_out_of_range_int_and_double_name_the_bounds(void **state) {
    static const bad_case cases[] = {
        {"admin:\n  port: 70000\n", "4: admin.port: 70000 is out of range [1, 65535]"},
        {"admin:\n  port: 0\n", "4: admin.port: 0 is out of range [1, 65535]"},
        {"checks:\n  max_skew_ms: -1001\n",
         "4: checks.max_skew_ms: -1001 is out of range [-1000, 1000]"},
        {"admin:\n  port: 9223372036854775808\n",
         "4: admin.port: '9223372036854775808' does not fit in a 64-bit integer"},
        {"checks:\n  ratio: 1.5\n", "4: checks.ratio: 1.5 is out of range [0, 1]"},
        {"checks:\n  ratio: -1e-3\n", "4: checks.ratio: -0.001 is out of range [0, 1]"},
        {"engine:\n  scale: 1e999\n", "4: engine.scale: '1e999' is too large for a double"},
    };
    check_bad_cases(*state, cases, HM_ARRAY_LEN(cases));
}

static void test_int_and_double_edges_are_accepted(void **state) {
    fix *f = *state;
    assert_int_equal(load_text(f, "kafka:\n  bootstrap_servers: b\nadmin:\n  port: +65535\n"
                                  "checks:\n  max_skew_ms: -1000\n  ratio: 1\n"
                                  "engine:\n  scale: -12.5E+2\n"),
                     0);
    assert_int_equal(f->a.port, 65535);
    assert_int_equal(f->a.max_skew_ms, -1000);
    assert_true(f->a.ratio == 1.0);
    assert_true(f->b.scale == -1250.0);
}

static void test_missing_required_key_names_key_and_env_variable(void **state) {
    fix *f = *state;
    const char *path = fixture("missing_required.yaml");
    assert_int_equal(load(f, path), -EINVAL);
    assert_string_equal(f->err.msg, fmt("%s: kafka.bootstrap_servers: required key is missing "
                                        "(set it in the file or HIMARI_KAFKA_BOOTSTRAP_SERVERS)",
                                        path));
}

static void test_required_key_set_to_null_is_missing(void **state) {
    fix *f = *state;
    assert_int_equal(load_text(f, "kafka:\n  bootstrap_servers: ~\n"), -EINVAL);
    assert_non_null(strstr(f->err.msg, "kafka.bootstrap_servers: required key is missing"));
}

static void test_yaml_syntax_error_names_the_line(void **state) {
    fix *f = *state;
    const char *path = fixture("syntax_error.yaml");
    assert_int_equal(load(f, path), -EINVAL);
    assert_string_equal(
        f->err.msg,
        fmt("%s:5: invalid YAML: mapping values are not allowed in this context", path));
}

static void test_unclosed_flow_sequence_names_libyaml_problem_and_context(void **state) {
    fix *f = *state;
    assert_int_equal(load_text(f, "kafka:\n  topics: [a, b\n  bootstrap_servers: x\n"), -EINVAL);
    const char *prefix = fmt("%s:3: invalid YAML: ", f->tmp);
    assert_memory_equal(f->err.msg, prefix, strlen(prefix));
    assert_non_null(strstr(f->err.msg, "(while parsing a flow sequence at line 2)"));
}

static void test_duplicate_key_is_an_error(void **state) {
    fix *f = *state;
    const char *path = fixture("duplicate_key.yaml");
    assert_int_equal(load(f, path), -EINVAL);
    assert_string_equal(f->err.msg, fmt("%s:5: admin.port: duplicate key (first at line 4)", path));
}

static void test_key_given_nested_and_dotted_is_a_duplicate(void **state) {
    fix *f = *state;
    const char *path = fixture("duplicate_dotted_key.yaml");
    assert_int_equal(load(f, path), -EINVAL);
    assert_string_equal(f->err.msg, fmt("%s:6: admin.port: duplicate key (first at line 5)", path));
}

static void test_duplicate_group_is_an_error(void **state) {
    fix *f = *state;
    assert_int_equal(
        load_text(f, "kafka:\n  bootstrap_servers: b\nadmin:\n  port: 1\nadmin:\n  port: 2\n"),
        -EINVAL);
    assert_string_equal(f->err.msg, fmt("%s:5: admin: duplicate key (first at line 3)", f->tmp));
}

static void test_second_yaml_document_is_refused(void **state) {
    fix *f = *state;
    const char *path = fixture("two_documents.yaml");
    assert_int_equal(load(f, path), -EINVAL);
    assert_string_equal(f->err.msg,
                        fmt("%s:4: (top level): only one YAML document is allowed", path));
}

static void test_aliases_are_resolved(void **state) {
    fix *f = *state;
    assert_int_equal(load(f, fixture("aliases.yaml")), 0);
    assert_string_equal(f->a.name, "shared-name");
    assert_string_equal(f->a.note, "shared-name");
    assert_int_equal(f->a.topics.n, 2);
    assert_string_equal(f->a.topics.items[0], "shared-name");
    assert_string_equal(f->a.topics.items[1], "b");
}

static void test_self_referencing_alias_is_refused_not_followed_forever(void **state) {
    fix *f = *state;
    int rc = load_text(f, "kafka:\n  bootstrap_servers: b\nlabels: &x\n  a: *x\n");
    assert_int_equal(rc, -EINVAL);
    assert_non_null(strstr(f->err.msg, f->tmp));
}

static void test_explicit_empty_string_and_null_differ(void **state) {
    fix *f = *state;
    assert_int_equal(load_text(f, "kafka:\n  bootstrap_servers: b\n  topics: []\n"
                                  "service:\n  name: \"\"\n  note: \"null\"\n"),
                     0);
    assert_string_equal(f->a.name, "");
    assert_string_equal(f->a.note, "null");
    assert_int_equal(f->a.topics.n, 0);
    hm_config_free(f->sections, 2);
    assert_int_equal(load_text(f, "kafka:\n  bootstrap_servers: b\n  topics: ~\n"
                                  "service:\n  name: ~\n  note:\n"),
                     0);
    assert_null(f->a.name);
    assert_null(f->a.note);
    assert_int_equal(f->a.topics.n, 0);
}

static void test_unreadable_config_file_names_the_path(void **state) {
    fix *f = *state;
    assert_int_equal(load(f, "/nonexistent/himari.yaml"), -ENOENT);
    assert_string_equal(f->err.msg,
                        "/nonexistent/himari.yaml: cannot open: No such file or directory");
}

/* ---- environment ---------------------------------------------------------- */

static void test_env_overrides_int_str_and_list(void **state) {
    fix *f = *state;
    setenv("HIMARI_ADMIN_PORT", " 9200 ", 1);
    setenv("HIMARI_SERVICE_NAME", "from-env", 1);
    setenv("HIMARI_KAFKA_TOPICS", " a , b,c ", 1);
    setenv("HIMARI_CHECKS_RATIO", "0.5", 1);
    setenv("HIMARI_LOG_VERBOSE", "false", 1);
    assert_int_equal(load(f, fixture("valid.yaml")), 0);
    assert_int_equal(f->a.port, 9200);
    assert_string_equal(f->a.name, "from-env");
    assert_int_equal(f->a.topics.n, 3);
    assert_string_equal(f->a.topics.items[0], "a");
    assert_string_equal(f->a.topics.items[1], "b");
    assert_string_equal(f->a.topics.items[2], "c");
    assert_true(f->a.ratio == 0.5);
    assert_false(f->a.verbose);        /* the file says true */
    assert_int_equal(f->b.workers, 8); /* from the file: no env for it */
}

static void test_env_list_accepts_brackets_and_empty(void **state) {
    fix *f = *state;
    setenv("HIMARI_KAFKA_TOPICS", "[x, y]", 1);
    assert_int_equal(load(f, fixture("minimal.yaml")), 0);
    assert_int_equal(f->a.topics.n, 2);
    assert_string_equal(f->a.topics.items[0], "x");
    assert_string_equal(f->a.topics.items[1], "y");
    setenv("HIMARI_KAFKA_TOPICS", "", 1);
    assert_int_equal(load(f, fixture("minimal.yaml")), 0);
    assert_int_equal(f->a.topics.n, 0);
}

static void test_bad_env_value_names_the_env_variable(void **state) {
    fix *f = *state;
    setenv("HIMARI_ADMIN_PORT", "x", 1);
    assert_int_equal(load(f, fixture("minimal.yaml")), -EINVAL);
    assert_string_equal(f->err.msg,
                        "env HIMARI_ADMIN_PORT: admin.port: expected an integer, got 'x'");
    unsetenv("HIMARI_ADMIN_PORT");

    setenv("HIMARI_LOG_VERBOSE", "yes", 1);
    assert_int_equal(load(f, fixture("minimal.yaml")), -EINVAL);
    assert_string_equal(f->err.msg, "env HIMARI_LOG_VERBOSE: log.verbose: expected a boolean, got "
                                    "'yes' (write true or false)");
    unsetenv("HIMARI_LOG_VERBOSE");

    setenv("HIMARI_ENGINE_WORKERS", "65", 1);
    assert_int_equal(load(f, fixture("minimal.yaml")), -EINVAL);
    assert_string_equal(f->err.msg,
                        "env HIMARI_ENGINE_WORKERS: engine.workers: 65 is out of range [1, 64]");
    unsetenv("HIMARI_ENGINE_WORKERS");

    setenv("HIMARI_KAFKA_TOPICS", "a,,b", 1);
    assert_int_equal(load(f, fixture("minimal.yaml")), -EINVAL);
    assert_string_equal(f->err.msg, "env HIMARI_KAFKA_TOPICS: kafka.topics: item 2 of the "
                                    "comma-separated list is empty");
}

static void test_map_is_not_overridable_from_env(void **state) {
    fix *f = *state;
    setenv("HIMARI_LABELS", "a=b", 1);
    assert_int_equal(load(f, fixture("minimal.yaml")), 0);
    unsetenv("HIMARI_LABELS");
    assert_int_equal(f->a.labels.n, 0);
}

static void test_env_name_upper_cases_and_replaces_separators(void **state) {
    (void)state;
    char out[64];
    hm_config_env_name("kafka.bootstrap_servers", out, sizeof(out));
    assert_string_equal(out, "HIMARI_KAFKA_BOOTSTRAP_SERVERS");
    hm_config_env_name("s3.end-point.v2", out, sizeof(out));
    assert_string_equal(out, "HIMARI_S3_END_POINT_V2");
    hm_config_env_name("kafka.bootstrap_servers", out, 10);
    assert_string_equal(out, "HIMARI_KA");
}

/* ---- secrets -------------------------------------------------------------- */

static void test_secret_inline_value_is_loaded(void **state) {
    fix *f = *state;
    assert_int_equal(load_text(f, "kafka:\n  bootstrap_servers: b\nredis:\n  password: p@ss\n"), 0);
    assert_string_equal(f->a.password, "p@ss");
}

static void test_secret_from_file_strips_one_trailing_newline(void **state) {
    fix *f = *state;
    char yaml[256];
    write_temp(f->secret, "hunter2\n\n");
    snprintf(yaml, sizeof(yaml), "kafka:\n  bootstrap_servers: b\nredis:\n  password_file: %s\n",
             f->secret);
    assert_int_equal(load_text(f, yaml), 0);
    assert_string_equal(f->a.password, "hunter2\n");

    unlink(f->secret);
    write_temp(f->secret, "hunter3\r\n");
    snprintf(yaml, sizeof(yaml), "kafka:\n  bootstrap_servers: b\nredis:\n  password_file: %s\n",
             f->secret);
    assert_int_equal(load_text(f, yaml), 0);
    assert_string_equal(f->a.password, "hunter3");
}

static void test_secret_from_env_file_variable(void **state) {
    fix *f = *state;
    write_temp(f->secret, "from-env-file\n");
    setenv("HIMARI_REDIS_PASSWORD_FILE", f->secret, 1);
    /* The env form replaces the file's inline value. */
    assert_int_equal(load(f, fixture("valid.yaml")), 0);
    assert_string_equal(f->a.password, "from-env-file");
    unsetenv("HIMARI_REDIS_PASSWORD_FILE");

    setenv("HIMARI_REDIS_PASSWORD", "from-env", 1);
    assert_int_equal(load(f, fixture("valid.yaml")), 0);
    assert_string_equal(f->a.password, "from-env");
}

static void test_secret_value_and_file_both_given_is_an_error(void **state) {
    fix *f = *state;
    const char *path = fixture("secret_both.yaml");
    assert_int_equal(load(f, path), -EINVAL);
    assert_string_equal(
        f->err.msg,
        fmt("%s:5: redis.password: give either the value or password_file, not both", path));
    assert_null(strstr(f->err.msg, "do-not-print-me"));

    setenv("HIMARI_REDIS_PASSWORD", "do-not-print-me", 1);
    setenv("HIMARI_REDIS_PASSWORD_FILE", "/run/secrets/x", 1);
    assert_int_equal(load(f, fixture("minimal.yaml")), -EINVAL);
    assert_string_equal(f->err.msg, "env HIMARI_REDIS_PASSWORD: redis.password: give either the "
                                    "value or HIMARI_REDIS_PASSWORD_FILE, not both");
}

static void test_missing_secret_file_names_file_line_and_path(void **state) {
    fix *f = *state;
    const char *path = fixture("secret_missing_file.yaml");
    assert_int_equal(load(f, path), -ENOENT);
    assert_string_equal(f->err.msg, fmt("%s:4: redis.password_file: /nonexistent/himari-test-secret"
                                        ": cannot open: No such file or directory",
                                        path));

    setenv("HIMARI_REDIS_PASSWORD_FILE", "/nonexistent/env-secret", 1);
    assert_int_equal(load(f, fixture("minimal.yaml")), -ENOENT);
    assert_string_equal(f->err.msg, "env HIMARI_REDIS_PASSWORD_FILE: redis.password_file: "
                                    "/nonexistent/env-secret: cannot open: No such file or "
                                    "directory");
}

static void test_secret_file_over_64_kib_or_a_directory_is_refused(void **state) {
    fix *f = *state;
    char *big = malloc(65 * 1024 + 1);
    assert_non_null(big);
    memset(big, 'x', 65 * 1024);
    big[65 * 1024] = '\0';
    write_temp(f->secret, big);
    free(big);
    setenv("HIMARI_REDIS_PASSWORD_FILE", f->secret, 1);
    assert_int_equal(load(f, fixture("minimal.yaml")), -EFBIG);
    assert_string_equal(f->err.msg, fmt("env HIMARI_REDIS_PASSWORD_FILE: redis.password_file: %s: "
                                        "66560 bytes exceeds the limit of 65536",
                                        f->secret));
    setenv("HIMARI_REDIS_PASSWORD_FILE", "/tmp", 1);
    assert_int_equal(load(f, fixture("minimal.yaml")), -EINVAL);
    assert_string_equal(
        f->err.msg, "env HIMARI_REDIS_PASSWORD_FILE: redis.password_file: /tmp: is a directory");
}

/* ---- atomicity ------------------------------------------------------------ */

static void test_error_leaves_dst_unchanged(void **state) {
    fix *f = *state;
    assert_int_equal(load(f, fixture("valid.yaml")), 0);
    /* memcpy, not assignment: padding bytes are compared too. */
    tcfg before_a;
    tcfg2 before_b;
    memcpy(&before_a, &f->a, sizeof(before_a));
    memcpy(&before_b, &f->b, sizeof(before_b));
    char digest_before[17], digest_after[17];
    hm_config_digest(f->sections, 2, digest_before);

    /* Fails late (after defaults, file and env were applied to the scratch copy). */
    setenv("HIMARI_REDIS_PASSWORD_FILE", "/nonexistent/secret", 1);
    assert_int_equal(load(f, fixture("minimal.yaml")), -ENOENT);
    assert_memory_equal(&f->a, &before_a, sizeof(before_a)); /* same pointers, same numbers */
    assert_memory_equal(&f->b, &before_b, sizeof(before_b));
    hm_config_digest(f->sections, 2, digest_after);
    assert_string_equal(digest_before, digest_after);
    assert_string_equal(f->a.name, "ingest-validator");
    assert_string_equal(f->a.topics.items[1], "quality scores");

    assert_int_equal(load(f, fixture("unknown_key.yaml")), -EINVAL);
    assert_memory_equal(&f->a, &before_a, sizeof(before_a));
    assert_memory_equal(&f->b, &before_b, sizeof(before_b));
}

static void test_load_keeps_bytes_no_key_covers(void **state) {
    fix *f = *state;
    f->a.untouched = 424242;
    assert_int_equal(load(f, fixture("valid.yaml")), 0);
    assert_int_equal(f->a.untouched, 424242);
    assert_int_equal(load(f, fixture("minimal.yaml")), 0); /* a reload frees the old values */
    assert_int_equal(f->a.untouched, 424242);
    assert_defaults(&f->a, &f->b);
}

static void test_free_on_zeroed_and_loaded_structs_is_clean(void **state) {
    fix *f = *state;
    hm_config_free(f->sections, 2); /* zeroed */
    assert_int_equal(load(f, fixture("valid.yaml")), 0);
    hm_config_free(f->sections, 2);
    assert_null(f->a.name);
    assert_null(f->a.password);
    assert_null(f->a.topics.items);
    assert_int_equal(f->a.topics.n, 0);
    assert_int_equal(f->a.labels.n, 0);
    hm_config_free(f->sections, 2); /* again: harmless */
}

/* ---- reload support ------------------------------------------------------- */

static void test_non_reloadable_change_finds_changed_key_and_ignores_reloadable_ones(void **state) {
    fix *f = *state;
    tcfg a2 = {0};
    tcfg2 b2 = {0};
    hm_cfg_section s2[2];
    sections_for(s2, &a2, &b2);
    assert_int_equal(load(f, fixture("valid.yaml")), 0);
    assert_int_equal(hm_config_load(s2, 2, fixture("valid.yaml"), &f->err), 0);
    void *old_dst[2] = {&f->a, &f->b}, *new_dst[2] = {&a2, &b2};
    assert_null(hm_config_non_reloadable_change(f->sections, 2, old_dst, new_dst));

    /* Reloadable keys may change. */
    setenv("HIMARI_CHECKS_RATIO", "0.1", 1);
    setenv("HIMARI_LOG_VERBOSE", "false", 1);
    setenv("HIMARI_ENGINE_WORKERS", "3", 1);
    assert_int_equal(hm_config_load(s2, 2, fixture("valid.yaml"), &f->err), 0);
    assert_null(hm_config_non_reloadable_change(f->sections, 2, old_dst, new_dst));

    /* A list's content (not its pointer) is what counts. */
    setenv("HIMARI_KAFKA_TOPICS", "raw_market_data,quality scores", 1);
    assert_int_equal(hm_config_load(s2, 2, fixture("valid.yaml"), &f->err), 0);
    assert_null(hm_config_non_reloadable_change(f->sections, 2, old_dst, new_dst));
    setenv("HIMARI_KAFKA_TOPICS", "raw_market_data", 1);
    assert_int_equal(hm_config_load(s2, 2, fixture("valid.yaml"), &f->err), 0);
    assert_string_equal(hm_config_non_reloadable_change(f->sections, 2, old_dst, new_dst),
                        "kafka.topics");
    unsetenv("HIMARI_KAFKA_TOPICS");

    setenv("HIMARI_ADMIN_PORT", "9101", 1);
    assert_int_equal(hm_config_load(s2, 2, fixture("valid.yaml"), &f->err), 0);
    assert_string_equal(hm_config_non_reloadable_change(f->sections, 2, old_dst, new_dst),
                        "admin.port");
    unsetenv("HIMARI_ADMIN_PORT");

    setenv("HIMARI_REDIS_PASSWORD", "rotated", 1);
    assert_int_equal(hm_config_load(s2, 2, fixture("valid.yaml"), &f->err), 0);
    assert_string_equal(hm_config_non_reloadable_change(f->sections, 2, old_dst, new_dst),
                        "redis.password");
    unsetenv("HIMARI_REDIS_PASSWORD");

    /* A key of the second section. */
    setenv("HIMARI_KAFKA_LINGER_MS", "21", 1);
    assert_int_equal(hm_config_load(s2, 2, fixture("valid.yaml"), &f->err), 0);
    assert_string_equal(hm_config_non_reloadable_change(f->sections, 2, old_dst, new_dst),
                        "kafka.linger_ms");
    unsetenv("HIMARI_KAFKA_LINGER_MS");

    /* Several differences: the first in table order is named. */
    assert_int_equal(hm_config_load(s2, 2, fixture("minimal.yaml"), &f->err), 0);
    assert_string_equal(hm_config_non_reloadable_change(f->sections, 2, old_dst, new_dst),
                        "service.name");
    hm_config_free(s2, 2);
}

static void test_changed_keys_lists_every_difference_in_table_order(void **state) {
    fix *f = *state;
    tcfg a2 = {0};
    tcfg2 b2 = {0};
    hm_cfg_section s2[2];
    sections_for(s2, &a2, &b2);
    assert_int_equal(load(f, fixture("valid.yaml")), 0);
    void *old_dst[2] = {&f->a, &f->b}, *new_dst[2] = {&a2, &b2};
    const char *out[4];
    assert_int_equal(hm_config_load(s2, 2, fixture("valid.yaml"), &f->err), 0);
    assert_int_equal(hm_config_changed_keys(f->sections, 2, old_dst, new_dst, out, 4), 0);

    /* Reloadable or not, every differing key is named, in table order. */
    setenv("HIMARI_KAFKA_LINGER_MS", "21", 1);
    setenv("HIMARI_ADMIN_PORT", "9101", 1);
    setenv("HIMARI_CHECKS_RATIO", "0.1", 1);
    assert_int_equal(hm_config_load(s2, 2, fixture("valid.yaml"), &f->err), 0);
    size_t n = hm_config_changed_keys(f->sections, 2, old_dst, new_dst, out, 4);
    assert_int_equal(n, 3);
    assert_string_equal(out[0], "admin.port");
    assert_string_equal(out[1], "checks.ratio");
    assert_string_equal(out[2], "kafka.linger_ms");
    /* The count is the true count even when out is too small. */
    assert_int_equal(hm_config_changed_keys(f->sections, 2, old_dst, new_dst, out, 1), 3);
    assert_string_equal(out[0], "admin.port");
    unsetenv("HIMARI_KAFKA_LINGER_MS");
    unsetenv("HIMARI_ADMIN_PORT");
    unsetenv("HIMARI_CHECKS_RATIO");
    hm_config_free(s2, 2);
}

static void test_map_comparison_ignores_order(void **state) {
    fix *f = *state;
    tcfg a2 = {0};
    tcfg2 b2 = {0};
    hm_cfg_section s2[2];
    sections_for(s2, &a2, &b2);
    assert_int_equal(load_text(f, "kafka:\n  bootstrap_servers: b\nlabels: {x: 1, y: 2}\n"), 0);
    assert_int_equal(hm_config_load(s2, 2, f->tmp, &f->err), 0);
    void *old_dst[2] = {&f->a, &f->b}, *new_dst[2] = {&a2, &b2};
    assert_int_equal(load_text(f, "kafka:\n  bootstrap_servers: b\nlabels: {y: 2, x: 1}\n"), 0);
    assert_null(hm_config_non_reloadable_change(s2, 2, old_dst, new_dst));
    assert_int_equal(load_text(f, "kafka:\n  bootstrap_servers: b\nlabels: {y: 2, x: 3}\n"), 0);
    assert_string_equal(hm_config_non_reloadable_change(s2, 2, old_dst, new_dst), "labels");
    hm_config_free(s2, 2);
}

static void test_digest_changes_when_a_value_changes_and_is_stable_otherwise(void **state) {
    fix *f = *state;
    char d1[17], d2[17], d3[17];
    assert_int_equal(load(f, fixture("valid.yaml")), 0);
    hm_config_digest(f->sections, 2, d1);
    assert_int_equal(strlen(d1), 16);
    assert_int_equal(strspn(d1, "0123456789abcdef"), 16);
    assert_int_equal(load(f, fixture("valid.yaml")), 0);
    hm_config_digest(f->sections, 2, d2);
    assert_string_equal(d1, d2);

    setenv("HIMARI_CHECKS_RATIO", "0.76", 1);
    assert_int_equal(load(f, fixture("valid.yaml")), 0);
    hm_config_digest(f->sections, 2, d3);
    assert_string_not_equal(d1, d3);
    unsetenv("HIMARI_CHECKS_RATIO");

    /* A secret counts by its length only: the digest is logged. */
    setenv("HIMARI_REDIS_PASSWORD", "aaaaaaaaaaaaa", 1); /* as long as "s3cret-inline" */
    assert_int_equal(load(f, fixture("valid.yaml")), 0);
    hm_config_digest(f->sections, 2, d3);
    assert_string_equal(d1, d3);
    setenv("HIMARI_REDIS_PASSWORD", "aaaa", 1);
    assert_int_equal(load(f, fixture("valid.yaml")), 0);
    hm_config_digest(f->sections, 2, d3);
    assert_string_not_equal(d1, d3);
}

static void test_digest_is_fnv1a_of_path_value_lines(void **state) {
    (void)state;
    /* One INT key: FNV-1a 64 of "n=7\n", computed independently here. */
    static const hm_cfg_key k[] = {{"n", HM_CFG_INT, 0, "7", 0, 1, 0, "n"}};
    int64_t v = 0;
    hm_cfg_section s = {k, 1, &v, sizeof(v)};
    hm_err err;
    assert_int_equal(hm_config_load(&s, 1, NULL, &err), 0);
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *p = "n=7\n"; *p; p++) {
        h ^= (unsigned char)*p;
        h *= 0x100000001b3ull;
    }
    char want[17], got[17];
    snprintf(want, sizeof(want), "%016llx", (unsigned long long)h);
    hm_config_digest(&s, 1, got);
    assert_string_equal(got, want);
}

/* ---- the example file ----------------------------------------------------- */

/* The example into *text (free it). The stream writes through text itself: a local
 * buffer pointer returned from here reads to gcc -O3 as a dangling pointer. */
static void example_text(fix *f, char **text) {
    size_t len = 0;
    *text = NULL;
    FILE *out = open_memstream(text, &len);
    assert_non_null(out);
    hm_config_write_example(f->sections, 2, "test service", out);
    fclose(out);
}

static void test_example_loads_back_to_the_defaults(void **state) {
    fix *f = *state;
    char *text;
    example_text(f, &text);
    /* The required key is commented out; supply it the way a deploy would. */
    setenv("HIMARI_KAFKA_BOOTSTRAP_SERVERS", "b:1", 1);
    int rc = load_text(f, text);
    if (rc != 0) print_error("%s\n---\n%s\n", f->err.msg, text);
    assert_int_equal(rc, 0);
    assert_defaults(&f->a, &f->b);

    /* And to exactly what path NULL gives. */
    tcfg a2 = {0};
    tcfg2 b2 = {0};
    hm_cfg_section s2[2];
    sections_for(s2, &a2, &b2);
    assert_int_equal(hm_config_load(s2, 2, NULL, &f->err), 0);
    char d1[17], d2[17];
    hm_config_digest(f->sections, 2, d1);
    hm_config_digest(s2, 2, d2);
    assert_string_equal(d1, d2);
    hm_config_free(s2, 2);
    free(text);
}

static void test_example_with_awkward_defaults_loads_back(void **state) {
    (void)state;
    typedef struct odd {
        char *s1, *s2, *s3, *s4, *s5;
        hm_str_list l;
        hm_str_map m;
        double d;
        bool b;
    } odd;
    static const hm_cfg_key k[] = {
        {"a.s1", HM_CFG_STR, offsetof(odd, s1), "\"yes\"", 0, 1, 0,
         "a word YAML 1.1 reads as bool"},
        {"a.s2", HM_CFG_STR, offsetof(odd, s2), "\"with \\\"quotes\\\" and \\\\ # x\"", 0, 1, 0,
         "quotes"},
        {"a.s3", HM_CFG_STR, offsetof(odd, s3), "\"0644\"", 0, 1, 0, "digits"},
        {"b.s4", HM_CFG_STR, offsetof(odd, s4), "''", 0, 1, 0, "empty"},
        {"b.s5", HM_CFG_STR, offsetof(odd, s5), "http://h:80/x", 0, 1, 0, "url"},
        {"a.l", HM_CFG_STR_LIST, offsetof(odd, l), "[\"a, b\", 'c:d', \"[e]\"]", 0, 1, 0, "list"},
        {"a.m", HM_CFG_STR_MAP, offsetof(odd, m), "{k: v, \"x y\": \"1\"}", 0, 1, 0,
         "multi\nline doc"},
        {"d", HM_CFG_DOUBLE, offsetof(odd, d), "0.1", 0, 1, 0, "tenth"},
        {"b.b", HM_CFG_BOOL, offsetof(odd, b), "true", 0, 1, 0, "flag"},
    };
    odd o1 = {0}, o2 = {0};
    hm_cfg_section s1 = {k, HM_ARRAY_LEN(k), &o1, sizeof(o1)};
    hm_cfg_section s2 = {k, HM_ARRAY_LEN(k), &o2, sizeof(o2)};
    hm_err err;
    assert_int_equal(hm_config_load(&s1, 1, NULL, &err), 0);
    assert_string_equal(o1.s1, "yes");
    assert_string_equal(o1.s2, "with \"quotes\" and \\ # x");
    assert_string_equal(o1.s4, "");
    assert_int_equal(o1.l.n, 3);
    assert_string_equal(o1.l.items[0], "a, b");
    assert_int_equal(o1.m.n, 2);

    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    assert_non_null(out);
    hm_config_write_example(&s1, 1, "odd", out);
    fclose(out);
    char path[64];
    write_temp(path, buf);
    int rc = hm_config_load(&s2, 1, path, &err);
    unlink(path);
    if (rc != 0) print_error("%s\n---\n%s\n", err.msg, buf);
    assert_int_equal(rc, 0);
    char d1[17], d2[17];
    hm_config_digest(&s1, 1, d1);
    hm_config_digest(&s2, 1, d2);
    assert_string_equal(d1, d2);
    assert_string_equal(o2.s2, o1.s2);
    assert_string_equal(o2.s3, "0644");
    assert_string_equal(o2.s5, "http://h:80/x");
    assert_true(o2.b);
    assert_true(o2.d == 0.1);
    /* Each group is written once even though its keys are not adjacent. */
    assert_non_null(strstr(buf, "\na:\n"));
    assert_null(strstr(strstr(buf, "\na:\n") + 1, "\na:\n"));
    hm_config_free(&s1, 1);
    hm_config_free(&s2, 1);
    free(buf);
}

static void test_example_documents_every_key(void **state) {
    fix *f = *state;
    char *text;
    example_text(f, &text);
    assert_memory_equal(text, "# test service\n", 15);
    assert_non_null(strstr(text, "unless marked \"# required\""));
    assert_non_null(strstr(text, "  # host:port list; env HIMARI_KAFKA_BOOTSTRAP_SERVERS\n"
                                 "  # bootstrap_servers:  # required\n"));
    assert_non_null(strstr(text, "  # admin HTTP port; range 1..65535; env HIMARI_ADMIN_PORT\n"
                                 "  port: 8080\n"));
    assert_non_null(strstr(text, "  # fraction of something; range 0..1; (reloadable); "
                                 "env HIMARI_CHECKS_RATIO\n  ratio: 0.25\n"));
    assert_non_null(strstr(text, "  topics: [\"raw_market_data\", \"quality_scores\"]\n"));
    assert_non_null(strstr(text, "labels: {}\n"));
    assert_non_null(strstr(text, "  # Redis AUTH; secret; env HIMARI_REDIS_PASSWORD or "
                                 "HIMARI_REDIS_PASSWORD_FILE\n"
                                 "  # password_file: /run/secrets/password\n"));
    assert_non_null(strstr(text, "  linger_ms: 5\n"));
    assert_non_null(strstr(text, "  scale: 1000\n"));
    assert_non_null(strstr(text, "  note: ~\n"));
    /* kafka keys from both sections sit in one mapping. */
    const char *kafka = strstr(text, "\nkafka:\n");
    assert_non_null(kafka);
    assert_null(strstr(kafka + 1, "\nkafka:\n"));
    free(text);
}

/* ---- schema errors are programming errors --------------------------------- */

static void expect_abort(const hm_cfg_section *s) {
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stderr)) _exit(3);
        hm_err err;
        int rc = hm_config_load(s, 1, NULL, &err);
        _exit(rc == 0 ? 0 : 2);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
}

static void test_bad_default_or_schema_aborts(void **state) {
    (void)state;
    int64_t v = 0;
    static const hm_cfg_key bad_int[] = {{"n", HM_CFG_INT, 0, "abc", 0, 1, 0, "n"}};
    static const hm_cfg_key out_of_range[] = {{"n", HM_CFG_INT, 0, "99", 0, 1, 10, "n"}};
    static const hm_cfg_key required_with_default[] = {
        {"n", HM_CFG_INT, 0, "1", HM_CFG_REQUIRED, 1, 0, "n"}};
    static const hm_cfg_key group_clash[] = {{"n", HM_CFG_INT, 0, "1", 0, 1, 0, "n"},
                                             {"n.m", HM_CFG_INT, 0, "1", 0, 1, 0, "n"}};
    static const hm_cfg_key outside[] = {{"n", HM_CFG_INT, 4, "1", 0, 1, 0, "n"}};
    expect_abort(&(hm_cfg_section){bad_int, 1, &v, sizeof(v)});
    expect_abort(&(hm_cfg_section){out_of_range, 1, &v, sizeof(v)});
    expect_abort(&(hm_cfg_section){required_with_default, 1, &v, sizeof(v)});
    expect_abort(&(hm_cfg_section){group_clash, 2, &v, sizeof(v)});
    expect_abort(&(hm_cfg_section){outside, 1, &v, sizeof(v)});
}

/* ---- secret-looking kafka.properties ------------------------------------------ */

/* kafka.* as every service has it (common/src/kafka_conf.c), from YAML text. */
typedef struct kfix {
    hm_kafka_config kc;
    hm_cfg_section s;
    hm_err err;
    char path[64];
} kfix;

static int kload(kfix *k, const char *yaml) {
    k->s = (hm_cfg_section){hm_kafka_config_keys, hm_kafka_config_keys_n, &k->kc, sizeof(k->kc)};
    write_temp(k->path, yaml);
    int rc = hm_config_load(&k->s, 1, k->path, &k->err);
    unlink(k->path);
    return rc;
}

static void kdigest(const char *yaml, char out[17]) {
    kfix k = {0};
    hm_err *err = &k.err;
    if (kload(&k, yaml) != 0) fail_msg("%s", err->msg);
    hm_config_digest(&k.s, 1, out);
    hm_config_free(&k.s, 1);
}

static const char *kprop(const hm_kafka_config *kc, const char *name) {
    for (size_t i = 0; i < kc->properties.n; i++)
        if (strcmp(kc->properties.keys[i], name) == 0) return kc->properties.vals[i];
    return NULL;
}

static void test_secret_names_are_told_from_the_other_properties(void **state) {
    (void)state;
    static const char *const secret[] = {"sasl.password",
                                         "ssl.key.password",
                                         "ssl.keystore.password",
                                         "sasl.oauthbearer.client.secret",
                                         "ssl.key.pem",
                                         "SSL.KEY.PEM",
                                         "sasl.oauthbearer.config",
                                         "sasl.oauthbearer.assertion.private.key.passphrase",
                                         "my.Password.x"};
    static const char *const plain[] = {"socket.keepalive.enable",
                                        "ssl.key.location",
                                        "ssl.certificate.pem",
                                        "sasl.username",
                                        "sasl.oauthbearer.token.endpoint.url",
                                        "linger.ms"};
    for (size_t i = 0; i < HM_ARRAY_LEN(secret); i++)
        if (!hm_config_is_secret_name(secret[i])) fail_msg("%s is a secret", secret[i]);
    for (size_t i = 0; i < HM_ARRAY_LEN(plain); i++)
        if (hm_config_is_secret_name(plain[i])) fail_msg("%s is no secret", plain[i]);
}

static void test_secret_properties_count_in_the_digest_by_length_only(void **state) {
    (void)state;
    char d1[17], d2[17], d3[17], d4[17];
    kdigest("kafka:\n  properties:\n    sasl.oauthbearer.client.secret: s3cr3t-one\n"
            "    socket.keepalive.enable: 'true'\n",
            d1);
    kdigest("kafka:\n  properties:\n    sasl.oauthbearer.client.secret: s3cr3t-two\n"
            "    socket.keepalive.enable: 'true'\n",
            d2);
    assert_string_equal(d1, d2); /* same length, another value: nothing to learn */
    kdigest("kafka:\n  properties:\n    sasl.oauthbearer.client.secret: s3cr3t-one\n"
            "    socket.keepalive.enable: 'false'\n",
            d3);
    assert_string_not_equal(d1, d3); /* a plain property still counts by its value */
    kdigest("kafka:\n  properties:\n    sasl.oauthbearer.client.secret: longer-s3cr3t\n"
            "    socket.keepalive.enable: 'true'\n",
            d4);
    assert_string_not_equal(d1, d4); /* like every secret: its length counts */
}

static void test_secret_property_may_be_read_from_a_file_and_not_both(void **state) {
    fix *f = *state; /* for its temp file names and teardown */
    write_temp(f->secret, "pem-pass-phrase\n");
    char yaml[512];
    snprintf(yaml, sizeof(yaml),
             "kafka:\n  properties:\n    ssl.key.password_file: %s\n    linger.ms: '5'\n",
             f->secret);
    kfix k = {0};
    if (kload(&k, yaml) != 0) fail_msg("%s", k.err.msg);
    assert_int_equal(k.kc.properties.n, 2);
    assert_null(kprop(&k.kc, "ssl.key.password_file"));
    const char *pw = kprop(&k.kc, "ssl.key.password");
    assert_non_null(pw);
    assert_string_equal(pw, "pem-pass-phrase");
    assert_string_equal(kprop(&k.kc, "linger.ms"), "5");
    hm_config_free(&k.s, 1);

    /* Both forms: an error naming the key, without the value. */
    snprintf(yaml, sizeof(yaml),
             "kafka:\n  properties:\n    ssl.key.password: do-not-print-me\n"
             "    ssl.key.password_file: %s\n",
             f->secret);
    kfix k2 = {0};
    assert_int_equal(kload(&k2, yaml), -EINVAL);
    assert_non_null(strstr(k2.err.msg, ":4: kafka.properties.ssl.key.password_file: give either "
                                       "the value or ssl.key.password_file, not both"));
    assert_null(strstr(k2.err.msg, "do-not-print-me"));
    assert_null(strstr(k2.err.msg, "pem-pass-phrase"));

    /* A missing file names the key and the file. */
    kfix k3 = {0};
    assert_int_equal(
        kload(&k3, "kafka:\n  properties:\n    sasl.password_file: /nonexistent/himari-pw\n"),
        -ENOENT);
    assert_non_null(strstr(k3.err.msg, ":3: kafka.properties.sasl.password_file: "
                                       "/nonexistent/himari-pw: cannot open"));
    /* A property that is no secret keeps its _file name (librdkafka will refuse it). */
    kfix k4 = {0};
    assert_int_equal(kload(&k4, "kafka:\n  properties:\n    ssl.ca.location_file: /x\n"), 0);
    assert_non_null(kprop(&k4.kc, "ssl.ca.location_file"));
    assert_string_equal(kprop(&k4.kc, "ssl.ca.location_file"), "/x");
    hm_config_free(&k4.s, 1);
}

static void test_consumers_fetch_again_after_10_ms_unless_properties_say(void **state) {
    (void)state;
    char v[32];
    size_t n = sizeof(v);
    hm_err err = {{0}};
    kfix k = {0};
    assert_int_equal(kload(&k, "kafka:\n  properties: {}\n"), 0);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    assert_int_equal(hm_kafka_conf_consumer_defaults(conf, &k.kc, &err), 0);
    assert_int_equal(rd_kafka_conf_get(conf, "fetch.queue.backoff.ms", v, &n), RD_KAFKA_CONF_OK);
    assert_string_equal(v, "10");
    rd_kafka_conf_destroy(conf);
    hm_config_free(&k.s, 1);

    /* kafka.properties wins: applied before the defaults (hm_kafka_conf_new), kept by them. */
    kfix k2 = {0};
    assert_int_equal(kload(&k2, "kafka:\n  properties:\n    fetch.queue.backoff.ms: 250\n"), 0);
    conf = rd_kafka_conf_new();
    assert_int_equal(hm_kafka_conf_apply(conf, &k2.kc, &err), 0);
    assert_int_equal(hm_kafka_conf_consumer_defaults(conf, &k2.kc, &err), 0);
    n = sizeof(v);
    assert_int_equal(rd_kafka_conf_get(conf, "fetch.queue.backoff.ms", v, &n), RD_KAFKA_CONF_OK);
    assert_string_equal(v, "250");
    rd_kafka_conf_destroy(conf);
    hm_config_free(&k2.s, 1);
}

static void test_kafka_conf_error_names_a_secret_property_without_its_value(void **state) {
    (void)state;
    kfix k = {0};
    assert_int_equal(kload(&k, "kafka:\n  properties:\n    no.such.password: hunter2-value\n"), 0);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    hm_err err = {{0}};
    assert_int_equal(hm_kafka_conf_apply(conf, &k.kc, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "no.such.password"));
    assert_null(strstr(err.msg, "hunter2-value"));
    rd_kafka_conf_destroy(conf);
    hm_config_free(&k.s, 1);

    /* A property that is no secret is still quoted, value and all. */
    kfix k2 = {0};
    assert_int_equal(kload(&k2, "kafka:\n  properties:\n    no.such.thing: visible\n"), 0);
    conf = rd_kafka_conf_new();
    assert_int_equal(hm_kafka_conf_apply(conf, &k2.kc, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "no.such.thing=visible"));
    rd_kafka_conf_destroy(conf);
    hm_config_free(&k2.s, 1);
}

/* ---- secret files others may read ----------------------------------------------- */

/* Load with the log going to a temp file; returns what was logged (caller frees). */
static char *load_logged(fix *f, const char *yaml, int *rc) {
    char path[] = "/tmp/himari_test_config_log_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    hm_log_set_fd(fd);
    *rc = load_text(f, yaml);
    hm_log_set_fd(2);
    off_t end = lseek(fd, 0, SEEK_END);
    char *text = calloc(1, (size_t)end + 1);
    assert_non_null(text);
    assert_int_equal(pread(fd, text, (size_t)end, 0), end);
    close(fd);
    return text;
}

static size_t count_of(const char *text, const char *what) {
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, what)); p += strlen(what))
        n++;
    return n;
}

static void test_secret_file_others_may_read_is_loaded_with_one_warning(void **state) {
    fix *f = *state;
    char yaml[512];
    write_temp(f->secret, "world-readable-secret\n");
    assert_int_equal(chmod(f->secret, 0644), 0);
    snprintf(yaml, sizeof(yaml), "kafka:\n  bootstrap_servers: b\nredis:\n  password_file: %s\n",
             f->secret);
    int rc;
    char *text = load_logged(f, yaml, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(f->a.password, "world-readable-secret");
    assert_int_equal(count_of(text, "\"event\":\"config_secret_file_mode\""), 1);
    assert_non_null(strstr(text, "\"level\":\"warn\""));
    assert_non_null(strstr(text, "\"key\":\"redis.password_file\""));
    char want[128];
    snprintf(want, sizeof(want), "\"file\":\"%s\"", f->secret);
    assert_non_null(strstr(text, want));
    assert_non_null(strstr(text, "\"mode\":\"0644\""));
    assert_null(strstr(text, "world-readable-secret"));
    free(text);

    /* Readable by the group only counts too. */
    assert_int_equal(chmod(f->secret, 0640), 0);
    snprintf(yaml, sizeof(yaml), "kafka:\n  bootstrap_servers: b\nredis:\n  password_file: %s\n",
             f->secret);
    text = load_logged(f, yaml, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(count_of(text, "\"event\":\"config_secret_file_mode\""), 1);
    assert_non_null(strstr(text, "\"mode\":\"0640\""));
    free(text);

    /* Owner only: nothing to say. */
    assert_int_equal(chmod(f->secret, 0600), 0);
    text = load_logged(f, yaml, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(count_of(text, "config_secret_file_mode"), 0);
    free(text);
}

static void test_secret_property_file_others_may_read_is_warned_about(void **state) {
    fix *f = *state;
    write_temp(f->secret, "pem-pass-phrase\n");
    assert_int_equal(chmod(f->secret, 0604), 0);
    char yaml[512];
    snprintf(yaml, sizeof(yaml), "kafka:\n  properties:\n    ssl.key.password_file: %s\n",
             f->secret);
    char path[] = "/tmp/himari_test_config_log_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    hm_log_set_fd(fd);
    kfix k = {0};
    int rc = kload(&k, yaml);
    hm_log_set_fd(2);
    if (rc != 0) fail_msg("%s", k.err.msg);
    off_t end = lseek(fd, 0, SEEK_END);
    char *text = calloc(1, (size_t)end + 1);
    assert_non_null(text);
    assert_int_equal(pread(fd, text, (size_t)end, 0), end);
    close(fd);
    assert_int_equal(count_of(text, "\"event\":\"config_secret_file_mode\""), 1);
    assert_non_null(strstr(text, "\"key\":\"kafka.properties.ssl.key.password_file\""));
    assert_non_null(strstr(text, "\"mode\":\"0604\""));
    assert_null(strstr(text, "pem-pass-phrase"));
    free(text);
    hm_config_free(&k.s, 1);
}

/* ---- lists ---------------------------------------------------------------- */

static void test_str_list_contains_matches_exact_items(void **state) {
    (void)state;
    char *items[] = {"BTC/USDT", "ETH/USDT"};
    hm_str_list l = {items, 2};
    assert_true(hm_str_list_contains(&l, "ETH/USDT", 8));
    assert_true(hm_str_list_contains(&l, "BTC/USDTxyz", 8)); /* n bounds the probe */
    assert_false(hm_str_list_contains(&l, "BTC/USD", 7));
    assert_false(hm_str_list_contains(&l, "", 0));
    hm_str_list empty = {0};
    assert_false(hm_str_list_contains(&empty, "a", 1));
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_valid_file_loads_every_type),
        T(test_defaults_apply_when_file_omits_keys),
        T(test_null_path_loads_defaults_and_env),
        T(test_null_path_without_required_env_names_key_and_env_variable),
        T(test_file_of_only_comments_loads_defaults),
        T(test_unknown_key_names_file_line_and_key),
        T(test_unknown_top_level_group_names_the_key),
        T(test_wrong_type_names_file_line_key_and_reason),
        T(test_top_level_that_is_not_a_mapping_is_an_error),
        T(test_out_of_range_int_and_double_name_the_bounds),
        T(test_int_and_double_edges_are_accepted),
        T(test_missing_required_key_names_key_and_env_variable),
        T(test_required_key_set_to_null_is_missing),
        T(test_yaml_syntax_error_names_the_line),
        T(test_unclosed_flow_sequence_names_libyaml_problem_and_context),
        T(test_duplicate_key_is_an_error),
        T(test_key_given_nested_and_dotted_is_a_duplicate),
        T(test_duplicate_group_is_an_error),
        T(test_second_yaml_document_is_refused),
        T(test_aliases_are_resolved),
        T(test_self_referencing_alias_is_refused_not_followed_forever),
        T(test_explicit_empty_string_and_null_differ),
        T(test_unreadable_config_file_names_the_path),
        T(test_env_overrides_int_str_and_list),
        T(test_env_list_accepts_brackets_and_empty),
        T(test_bad_env_value_names_the_env_variable),
        T(test_map_is_not_overridable_from_env),
        T(test_env_name_upper_cases_and_replaces_separators),
        T(test_secret_inline_value_is_loaded),
        T(test_secret_from_file_strips_one_trailing_newline),
        T(test_secret_from_env_file_variable),
        T(test_secret_value_and_file_both_given_is_an_error),
        T(test_missing_secret_file_names_file_line_and_path),
        T(test_secret_file_over_64_kib_or_a_directory_is_refused),
        T(test_error_leaves_dst_unchanged),
        T(test_load_keeps_bytes_no_key_covers),
        T(test_free_on_zeroed_and_loaded_structs_is_clean),
        T(test_non_reloadable_change_finds_changed_key_and_ignores_reloadable_ones),
        T(test_changed_keys_lists_every_difference_in_table_order),
        T(test_map_comparison_ignores_order),
        T(test_digest_changes_when_a_value_changes_and_is_stable_otherwise),
        T(test_digest_is_fnv1a_of_path_value_lines),
        T(test_example_loads_back_to_the_defaults),
        T(test_example_with_awkward_defaults_loads_back),
        T(test_example_documents_every_key),
        T(test_bad_default_or_schema_aborts),
        T(test_str_list_contains_matches_exact_items),
        T(test_secret_names_are_told_from_the_other_properties),
        T(test_secret_properties_count_in_the_digest_by_length_only),
        T(test_secret_property_may_be_read_from_a_file_and_not_both),
        T(test_consumers_fetch_again_after_10_ms_unless_properties_say),
        T(test_kafka_conf_error_names_a_secret_property_without_its_value),
        T(test_secret_file_others_may_read_is_loaded_with_one_warning),
        T(test_secret_property_file_others_may_read_is_warned_about),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
