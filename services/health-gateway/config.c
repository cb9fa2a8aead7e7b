/*
 * config.c: the health-gateway's configuration schema (config.h), validated across keys.
 */
#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#define HG_BASE   offsetof(hg_config, probe_interval_ms)
#define GC(field) (offsetof(hg_config, field) - HG_BASE)
#define PC(field) offsetof(hg_pg_config, field)
#define NC(field) offsetof(hg_neo4j_config, field)
#define SC(field) offsetof(hg_s3_config, field)

static const hm_cfg_key k_gateway_keys[] = {
    {"gateway.probe_interval_ms", HM_CFG_INT, GC(probe_interval_ms), "2000", 0, 100, 600000,
     "one probe round of every service and dependency every this many ms"},
    {"gateway.probe_timeout_ms", HM_CFG_INT, GC(probe_timeout_ms), "1000", 0, 10, 600000,
     "a probe not answered in this long is a failure (\"timed out after N ms\"); below "
     "probe_interval_ms"},
    {"gateway.history_seconds", HM_CFG_INT, GC(history_seconds), "600", 0, 10, 86400,
     "throughput and lag history kept for the status page, seconds"},
    {"gateway.max_errors", HM_CFG_INT, GC(max_errors), "50", 0, 1, 10000,
     "recent errors kept for the status page"},
    {"gateway.services", HM_CFG_STR_LIST, GC(services),
     "[ingest-validator=http://127.0.0.1:8081, feature-engine=http://127.0.0.1:8082, "
     "archiver=http://127.0.0.1:8083, graph-writer=http://127.0.0.1:8084]",
     0, 0, -1,
     "the services to probe, name=admin URL (GET /readyz, /status, /metrics); in env a "
     "comma list"},
    {"gateway.critical", HM_CFG_STR_LIST, GC(critical),
     "[ingest-validator, feature-engine, archiver, graph-writer, kafka]", 0, 0, -1,
     "parts (services, or kafka, redis, postgres, neo4j, s3) that /readyz and grpc.health "
     "need up"},
    {"gateway.kafka_groups", HM_CFG_STR_LIST, GC(kafka_groups),
     "[ingest-validator, feature-engine, archiver, graph-writer]", 0, 0, -1,
     "consumer groups whose lag (log end minus committed offset, summed) is reported"},
};

static const hm_cfg_key k_pg_keys[] = {
    {"postgres.host", HM_CFG_STR, PC(host), "127.0.0.1", 0, 0, -1,
     "PostgreSQL host (SELECT 1 on a new connection each probe); empty: not probed"},
    {"postgres.port", HM_CFG_INT, PC(port), "5432", 0, 1, 65535, "PostgreSQL port"},
    {"postgres.dbname", HM_CFG_STR, PC(dbname), "himari_analytics", 0, 0, -1, "database"},
    {"postgres.user", HM_CFG_STR, PC(user), "himari", 0, 0, -1, "user"},
    {"postgres.password", HM_CFG_SECRET, PC(password), NULL, 0, 0, -1,
     "password (prefer password_file); unset: none"},
    {"postgres.sslmode", HM_CFG_STR, PC(sslmode), "prefer", 0, 0, -1, "libpq sslmode"},
};

static const hm_cfg_key k_neo4j_keys[] = {
    {"neo4j.url", HM_CFG_STR, NC(url), "http://127.0.0.1:7474", 0, 0, -1,
     "Neo4j's HTTP endpoint (RETURN 1 through <url>/db/<database>/tx/commit); empty: not "
     "probed"},
    {"neo4j.database", HM_CFG_STR, NC(database), "neo4j", 0, 0, -1, "database name"},
    {"neo4j.user", HM_CFG_STR, NC(user), "neo4j", 0, 0, -1, "user (basic auth)"},
    {"neo4j.password", HM_CFG_SECRET, NC(password), NULL, 0, 0, -1,
     "password (prefer password_file)"},
};

static const hm_cfg_key k_s3_keys[] = {
    {"s3.endpoint", HM_CFG_STR, SC(endpoint), "", 0, 0, -1,
     "S3-compatible endpoint (HEAD of the bucket, SigV4); empty: not probed"},
    {"s3.region", HM_CFG_STR, SC(region), "us-east-1", 0, 0, -1, "SigV4 signing region"},
    {"s3.bucket", HM_CFG_STR, SC(bucket), "himari-archive", 0, 0, -1, "the archive's bucket"},
    {"s3.access_key", HM_CFG_SECRET, SC(access_key), NULL, 0, 0, -1,
     "access key id (prefer access_key_file)"},
    {"s3.secret_key", HM_CFG_SECRET, SC(secret_key), NULL, 0, 0, -1,
     "secret access key (prefer secret_key_file)"},
};

static void sections_of(void *cfg, hm_cfg_section *out) {
    hg_config *c = cfg;
    hm_service_config_sections(&c->base, HM_SVC_HEALTH_GATEWAY, out);
    size_t i = HM_SERVICE_SECTIONS;
    out[i++] = (hm_cfg_section){k_gateway_keys, HM_ARRAY_LEN(k_gateway_keys), (char *)c + HG_BASE,
                                offsetof(hg_config, redis) - HG_BASE};
    out[i++] =
        (hm_cfg_section){hm_redis_config_keys, hm_redis_config_keys_n, &c->redis, sizeof(c->redis)};
    out[i++] =
        (hm_cfg_section){k_pg_keys, HM_ARRAY_LEN(k_pg_keys), &c->postgres, sizeof(c->postgres)};
    out[i++] =
        (hm_cfg_section){k_neo4j_keys, HM_ARRAY_LEN(k_neo4j_keys), &c->neo4j, sizeof(c->neo4j)};
    out[i++] = (hm_cfg_section){k_s3_keys, HM_ARRAY_LEN(k_s3_keys), &c->s3, sizeof(c->s3)};
}

int hg_service_entry(const char *item, char *name, size_t name_size, const char **url) {
    const char *eq = strchr(item, '=');
    if (!eq || eq == item || (size_t)(eq - item) >= name_size) return -EINVAL;
    const char *u = eq + 1;
    if (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0) return -EINVAL;
    size_t n = strlen(u);
    if (n < 9 || u[n - 1] == '/') return -EINVAL;
    memcpy(name, item, (size_t)(eq - item));
    name[eq - item] = '\0';
    *url = u;
    return 0;
}

static bool is_dependency(const char *name) {
    static const char *const deps[] = {"kafka", "redis", "postgres", "neo4j", "s3"};
    for (size_t i = 0; i < HM_ARRAY_LEN(deps); i++)
        if (strcmp(name, deps[i]) == 0) return true;
    return false;
}

static int validate(void *cfg, const char *path, hm_err *err) {
    hg_config *c = cfg;
    const char *file = path ? path : "(no config file)";
    if (c->probe_timeout_ms >= c->probe_interval_ms)
        return hm_err_set(err, -EINVAL,
                          "%s: gateway.probe_timeout_ms (%lld) must be below "
                          "gateway.probe_interval_ms (%lld)",
                          file, (long long)c->probe_timeout_ms, (long long)c->probe_interval_ms);
    for (size_t i = 0; i < c->services.n; i++) {
        char name[64];
        const char *url;
        const char *item = c->services.items[i];
        if (hg_service_entry(item, name, sizeof(name), &url) != 0)
            return hm_err_set(err, -EINVAL,
                              "%s: gateway.services: '%s' is not name=http://host:port (no "
                              "trailing '/')",
                              file, item);
        if (is_dependency(name))
            return hm_err_set(err, -EINVAL,
                              "%s: gateway.services: '%s' is the name of a dependency", file, name);
        for (size_t j = 0; j < i; j++)
            if (strncmp(c->services.items[j], item, strlen(name) + 1) == 0)
                return hm_err_set(err, -EINVAL, "%s: gateway.services: '%s' is listed twice", file,
                                  name);
    }
    for (size_t i = 0; i < c->critical.n; i++) {
        const char *name = c->critical.items[i];
        /* A service of ours that gateway.services leaves out is simply not probed (a
         * deployment without the graph-writer); any other name is a typo. */
        bool known = is_dependency(name);
        for (int id = 0; id < HM_SVC_COUNT_ && !known; id++)
            known = strcmp(name, hm_service_name((hm_service_id)id)) == 0;
        for (size_t j = 0; j < c->services.n && !known; j++) {
            size_t n = strlen(name);
            known = strncmp(c->services.items[j], name, n) == 0 && c->services.items[j][n] == '=';
        }
        if (!known)
            return hm_err_set(err, -EINVAL,
                              "%s: gateway.critical: '%s' is neither a service of "
                              "gateway.services nor kafka, redis, postgres, neo4j or s3",
                              file, name);
    }
    const char *urls[][2] = {{"neo4j.url", c->neo4j.url}, {"s3.endpoint", c->s3.endpoint}};
    for (size_t i = 0; i < HM_ARRAY_LEN(urls); i++) {
        const char *u = urls[i][1];
        if (!u || !*u) continue;
        if ((strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0) ||
            u[strlen(u) - 1] == '/')
            return hm_err_set(err, -EINVAL,
                              "%s: %s: '%s' must start with http:// or https:// and not end "
                              "with '/'",
                              file, urls[i][0], u);
    }
    return 0;
}

const hm_service_schema hg_config_schema = {
    .size = sizeof(hg_config),
    .n_sections = HG_CONFIG_SECTIONS,
    .sections = sections_of,
    .validate = validate,
};
