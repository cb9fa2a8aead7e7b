/*
 * main.c: himari-sim, the market simulator that feeds `make run`, the tests and
 * the benchmarks: arguments, wiring and the output loop.
 *
 * It stands where the exchange connectors stand: records go to a JSONL file
 * (or stdout) as fast as they can be written, or to Kafka's raw_market_data at
 * a paced rate with live timestamps. The record logic lives in gen.c (market.c,
 * anomaly.c); this file only moves bytes and keeps time. In file mode nothing
 * here reads the wall clock into the data, so the same arguments give the same
 * bytes. It must never drop a record without saying so, nor busy-spin while
 * pacing.
 */
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#include "gen.h"
#include "himari/buf.h"
#include "himari/common.h"
#include "himari/log.h"
#include "himari/tick.h"
#include "out_kafka.h"

#define DEFAULT_SYMBOLS   "BTC/USDT,ETH/USDT,SOL/USDT"
#define DEFAULT_EXCHANGES "binance,kraken,bybit,coinbase,deribit"
#define DEFAULT_RATE      10000.0
#define DEFAULT_START_MS  INT64_C(1700000000000) /* 2023-11-14T22:13:20Z */
#define DEFAULT_TOPIC     "raw_market_data"
#define OUT_FLUSH_BYTES   (256 * 1024)
#define LABEL_FLUSH_BYTES (16 * 1024)
#define FLUSH_MS          30000
#define EXIT_USAGE        2

typedef struct sim_args {
    sim_gen_opts gen;
    char *symbols_buf; /* the split lists point into these */
    char *exchanges_buf;
    const char *symbols[SIM_MAX_SYMBOLS];
    const char *exchanges[SIM_MAX_EXCHANGES];
    bool have_count;
    uint64_t count;
    bool have_duration;
    double duration_s;
    bool have_start;
    const char *labels_path;
    const char *out_path;
    const char *kafka;
    const char *topic;
    const char *input_path;
    const char *sim_only_opt; /* first simulation option given, refused with --input */
    bool progress;
    bool have_liq_rate, have_transfer_rate; /* given: a scenario does not zero them */
} sim_args;

/** Everything one run owns; closed by app_close(). */
typedef struct sim_app {
    const sim_args *args;
    sim_gen *gen;
    FILE *input;
    char *in_line;
    size_t in_cap;
    sim_kafka *kafka;
    int out_fd; /* -1: no file output */
    int labels_fd;
    hm_buf out;
    hm_buf labels;
    hm_buf line; /* one record for Kafka */
    sigset_t stop_signals;
    uint64_t records;
    int64_t end_sim_ms; /* file-mode --duration: first simulated ms not written */
    uint64_t start_ns;
    uint64_t progress_ns;
    uint64_t progress_records;
    bool stop;
    int failed; /* the exit code so far: 1 after a write or produce failure */
} sim_app;

/* ---- arguments ----------------------------------------------------------- */

/* The --profile lines of --help. */
static const char *profile_help(void) {
    static char text[1024];
    size_t n = 0;
#define HELP_(id, name, help)                                                                      \
    n += (size_t)snprintf(text + n, sizeof(text) - n, "  %-14s  %s\n", name, help);
    SIM_PROFILES(HELP_)
#undef HELP_
    return text;
}

static void print_help(FILE *f) {
    fprintf(f,
            "usage: himari-sim [options]\n"
            "\n"
            "Simulated exchange trades (JSONL, one record a line) for HIMARI's raw_market_data.\n"
            "\n"
            "  --seed N               random seed (default 1); same arguments, same bytes in "
            "file mode\n"
            "  --count N              write N records, then stop\n"
            "  --duration SEC         run SEC seconds (file mode: simulated, Kafka: wall clock)\n"
            "                         neither: run until SIGINT/SIGTERM (or stdout closes)\n"
            "  --rate R               records/s over all feeds (default 10000); file mode: the\n"
            "                         simulated arrival rate, nothing sleeps; Kafka: the pace\n"
            "                         (0: as fast as possible)\n"
            "  --symbols LIST         default " DEFAULT_SYMBOLS "\n"
            "  --exchanges LIST       default " DEFAULT_EXCHANGES "\n"
            "  --liquidation-rate P   fraction of records that are liquidations (default 0.002)\n"
            "  --transfer-rate P      fraction that are on-chain whale transfers (default 0.001)\n"
            "  --anomaly-rate P       fraction of records carrying an injected anomaly (default "
            "0)\n"
            "  --anomaly-kinds LIST   only these kinds (default: all, weighted as below)\n"
            "  --labels FILE          one JSON line per anomaly: "
            "{\"seq\":N,\"kind\":K,\"exchange\":E,\"symbol\":S}\n"
            "                         seq = 0-based line index in the output\n"
            "  --timestamps ms|iso|mixed  integer ms, ISO-8601 with ms, or per exchange "
            "(default ms)\n"
            "  --start-ms T           file mode: the simulated clock's start (default "
            "1700000000000)\n"
            "  --out FILE|-           write JSONL here (default stdout without --kafka)\n"
            "  --kafka BOOTSTRAP      produce to Kafka (idempotent, snappy), key = symbol; the\n"
            "                         clock is the wall's, and trade ids count from it (a\n"
            "                         restarted feed goes on above the ids it sent before)\n"
            "  --topic T              default " DEFAULT_TOPIC "\n"
            "  --input FILE|-         produce these JSONL lines verbatim instead of simulating\n"
            "  --progress             a progress line on stderr each second\n"
            "  --scenario NAME        a scripted market story on top of the simulation (file\n"
            "                         mode or Kafka; random liquidations and transfers off\n"
            "                         unless their rates are given):\n"
            "%s"
            "  --profile LIST         what real markets do that the model above does not, all\n"
            "                         clean data (comma-separated; file mode or Kafka):\n"
            "%s"
            "  --help\n"
            "\n"
            "Model: per symbol a true price by geometric Brownian motion (drift 0); each exchange\n"
            "quotes it with a fixed offset (+-0.02%%) and a bid-ask bounce (+-0.01%%), rounded to\n"
            "the tick; volumes lognormal (sigma 0.9); Poisson arrivals per exchange+symbol;\n"
            "same-ms bursts of 2..6 trades with consecutive ids (clean); per-exchange clock skew\n"
            "(-300..+300 ms, +0..20 ms jitter) and trade-id sequences. kraken writes prices and\n"
            "volumes as strings. Per asset (others: the '*' row):\n"
            "  asset  start price  tick    vol/yr  median volume  whale transfer  rate share\n",
            sim_scenario_help(), profile_help());
    for (const sim_asset_defaults *d = sim_asset_table;; d++) {
        fprintf(f, "  %-5s  %11.10g  1e-%d   %4.0f%%   %13g  %6g..%-7g  %g\n",
                d->base ? d->base : "*", d->price, d->decimals, d->vol * 100, d->median_volume,
                d->whale_min, d->whale_max, d->weight);
        if (!d->base) break;
    }
    fprintf(f, "\nAnomaly kinds (weight, what the labelled line shows):\n");
    for (int k = 1; k < SIM_AN_COUNT_; k++)
        fprintf(f, "  %-20s %-4g %s\n", sim_anomaly_name((sim_anomaly_kind)k),
                sim_anomaly_default_weight((sim_anomaly_kind)k),
                sim_anomaly_help((sim_anomaly_kind)k));
    fprintf(f, "\nExit: 0 done, 1 a write or delivery failed, 2 bad arguments.\n");
}

HM_PRINTF(2, 3) static int bad_arg(const char *opt, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "himari-sim: %s: ", opt);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (try --help)\n");
    return -EINVAL;
}

/* --profile a,b: the bits of the named profiles; -EINVAL names the unknown one. */
static int parse_profiles(const char *list, unsigned *out) {
    *out = 0;
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, ",");
        unsigned bit = sim_profile_parse(p, n);
        if (!bit) return bad_arg("--profile", "unknown profile '%.*s'", (int)n, p);
        *out |= bit;
        p += n + (p[n] == ',');
    }
    return 0;
}

static int parse_u64(const char *opt, const char *v, uint64_t *out) {
    char *end;
    errno = 0;
    if (v[0] == '-' || v[0] == '\0') return bad_arg(opt, "'%s' is not a non-negative integer", v);
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || *end) return bad_arg(opt, "'%s' is not a non-negative integer", v);
    *out = x;
    return 0;
}

static int parse_double(const char *opt, const char *v, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || *end || end == v || !isfinite(x)) return bad_arg(opt, "'%s' is not a number", v);
    if (x < lo || x > hi) return bad_arg(opt, "'%s' is outside [%g, %g]", v, lo, hi);
    *out = x;
    return 0;
}

/* Split a comma list in place (buf is the caller's copy). */
static int split_list(const char *opt, char *buf, const char **items, size_t max, size_t *n) {
    *n = 0;
    for (char *p = buf;;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = '\0';
        if (*p == '\0') return bad_arg(opt, "empty item in the list");
        if (*n == max) return bad_arg(opt, "more than %zu items", max);
        items[(*n)++] = p;
        if (!comma) return 0;
        p = comma + 1;
    }
}

static int parse_kinds(const char *v, double *weights) {
    for (const char *p = v;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        sim_anomaly_kind k;
        if (sim_anomaly_parse(p, n, &k) < 0)
            return bad_arg("--anomaly-kinds", "unknown kind '%.*s'", (int)n, p);
        weights[k] = sim_anomaly_default_weight(k);
        if (!comma) return 0;
        p = comma + 1;
    }
}

enum {
    OPT_SEED = 256,
    OPT_COUNT,
    OPT_DURATION,
    OPT_RATE,
    OPT_SYMBOLS,
    OPT_EXCHANGES,
    OPT_ANOMALY_RATE,
    OPT_ANOMALY_KINDS,
    OPT_LABELS,
    OPT_LIQ_RATE,
    OPT_TRANSFER_RATE,
    OPT_TIMESTAMPS,
    OPT_START_MS,
    OPT_OUT,
    OPT_KAFKA,
    OPT_TOPIC,
    OPT_INPUT,
    OPT_PROGRESS,
    OPT_SCENARIO,
    OPT_PROFILE,
    OPT_HELP,
};

static const struct option long_opts[] = {
    {"seed", required_argument, NULL, OPT_SEED},
    {"count", required_argument, NULL, OPT_COUNT},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"rate", required_argument, NULL, OPT_RATE},
    {"symbols", required_argument, NULL, OPT_SYMBOLS},
    {"exchanges", required_argument, NULL, OPT_EXCHANGES},
    {"anomaly-rate", required_argument, NULL, OPT_ANOMALY_RATE},
    {"anomaly-kinds", required_argument, NULL, OPT_ANOMALY_KINDS},
    {"labels", required_argument, NULL, OPT_LABELS},
    {"liquidation-rate", required_argument, NULL, OPT_LIQ_RATE},
    {"transfer-rate", required_argument, NULL, OPT_TRANSFER_RATE},
    {"timestamps", required_argument, NULL, OPT_TIMESTAMPS},
    {"start-ms", required_argument, NULL, OPT_START_MS},
    {"out", required_argument, NULL, OPT_OUT},
    {"kafka", required_argument, NULL, OPT_KAFKA},
    {"topic", required_argument, NULL, OPT_TOPIC},
    {"input", required_argument, NULL, OPT_INPUT},
    {"progress", no_argument, NULL, OPT_PROGRESS},
    {"scenario", required_argument, NULL, OPT_SCENARIO},
    {"profile", required_argument, NULL, OPT_PROFILE},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* Returns 0, 1 for --help (exit 0), or -EINVAL (message printed). */
static int parse_args(int argc, char **argv, sim_args *a) {
    sim_market_opts *mo = &a->gen.market;
    mo->seed = 1;
    mo->rate = DEFAULT_RATE;
    mo->liquidation_rate = 0.002;
    mo->transfer_rate = 0.001;
    mo->ts_format = SIM_TS_MS;
    mo->start_ms = DEFAULT_START_MS;
    a->topic = DEFAULT_TOPIC;
    a->symbols_buf = hm_xstrdup(DEFAULT_SYMBOLS);
    a->exchanges_buf = hm_xstrdup(DEFAULT_EXCHANGES);
    double start_ms = 0;
    int opt, rc = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", long_opts, NULL)) != -1) {
        const char *name = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
        switch (opt) {
            case OPT_SEED:
                rc = parse_u64("--seed", optarg, &mo->seed);
                break;
            case OPT_COUNT:
                rc = parse_u64("--count", optarg, &a->count);
                a->have_count = true;
                break;
            case OPT_DURATION:
                rc = parse_double("--duration", optarg, 0, 1e9, &a->duration_s);
                if (rc == 0 && !(a->duration_s > 0))
                    rc = bad_arg("--duration", "'%s' must be above 0", optarg);
                a->have_duration = true;
                break;
            case OPT_RATE:
                rc = parse_double("--rate", optarg, 0, 1e9, &mo->rate);
                break;
            case OPT_SYMBOLS:
                free(a->symbols_buf);
                a->symbols_buf = hm_xstrdup(optarg);
                a->sim_only_opt = a->sim_only_opt ? a->sim_only_opt : "--symbols";
                break;
            case OPT_EXCHANGES:
                free(a->exchanges_buf);
                a->exchanges_buf = hm_xstrdup(optarg);
                a->sim_only_opt = a->sim_only_opt ? a->sim_only_opt : "--exchanges";
                break;
            case OPT_ANOMALY_RATE:
                rc = parse_double("--anomaly-rate", optarg, 0, 1, &a->gen.anomaly.rate);
                a->sim_only_opt = a->sim_only_opt ? a->sim_only_opt : "--anomaly-rate";
                break;
            case OPT_ANOMALY_KINDS:
                memset(a->gen.anomaly.weights, 0, sizeof(a->gen.anomaly.weights));
                rc = parse_kinds(optarg, a->gen.anomaly.weights);
                a->sim_only_opt = a->sim_only_opt ? a->sim_only_opt : "--anomaly-kinds";
                break;
            case OPT_LABELS:
                a->labels_path = optarg;
                a->sim_only_opt = a->sim_only_opt ? a->sim_only_opt : "--labels";
                break;
            case OPT_LIQ_RATE:
                rc = parse_double("--liquidation-rate", optarg, 0, 0.5, &mo->liquidation_rate);
                a->have_liq_rate = true;
                a->sim_only_opt = a->sim_only_opt ? a->sim_only_opt : "--liquidation-rate";
                break;
            case OPT_TRANSFER_RATE:
                rc = parse_double("--transfer-rate", optarg, 0, 0.5, &mo->transfer_rate);
                a->have_transfer_rate = true;
                a->sim_only_opt = a->sim_only_opt ? a->sim_only_opt : "--transfer-rate";
                break;
            case OPT_TIMESTAMPS:
                if (strcmp(optarg, "ms") == 0)
                    mo->ts_format = SIM_TS_MS;
                else if (strcmp(optarg, "iso") == 0)
                    mo->ts_format = SIM_TS_ISO;
                else if (strcmp(optarg, "mixed") == 0)
                    mo->ts_format = SIM_TS_MIXED;
                else
                    rc = bad_arg("--timestamps", "'%s' is not ms, iso or mixed", optarg);
                a->sim_only_opt = a->sim_only_opt ? a->sim_only_opt : "--timestamps";
                break;
            case OPT_START_MS:
                /* Up to year 9999 so ISO-8601 stays four-digit. */
                rc = parse_double("--start-ms", optarg, 0, 253402300799000.0, &start_ms);
                if (rc == 0 && start_ms != floor(start_ms))
                    rc = bad_arg("--start-ms", "'%s' is not a whole number of ms", optarg);
                mo->start_ms = (int64_t)start_ms;
                a->have_start = true;
                a->sim_only_opt = a->sim_only_opt ? a->sim_only_opt : "--start-ms";
                break;
            case OPT_OUT:
                a->out_path = optarg;
                break;
            case OPT_KAFKA:
                if (optarg[0] == '\0') rc = bad_arg("--kafka", "empty bootstrap address");
                a->kafka = optarg;
                break;
            case OPT_TOPIC:
                if (optarg[0] == '\0') rc = bad_arg("--topic", "empty topic name");
                a->topic = optarg;
                break;
            case OPT_INPUT:
                a->input_path = optarg;
                break;
            case OPT_PROGRESS:
                a->progress = true;
                break;
            case OPT_PROFILE:
                rc = parse_profiles(optarg, &mo->profiles);
                a->sim_only_opt = a->sim_only_opt ? a->sim_only_opt : "--profile";
                break;
            case OPT_SCENARIO:
                if (sim_scenario_parse(optarg, &a->gen.scenario) != 0)
                    return bad_arg("--scenario", "unknown scenario (see --help)");
                a->sim_only_opt = a->sim_only_opt ? a->sim_only_opt : "--scenario";
                break;
            case 'h':
            case OPT_HELP:
                return 1;
            case ':':
                return bad_arg(name, "needs a value");
            default:
                return bad_arg(name, "unknown option");
        }
        if (rc < 0) return rc;
    }
    if (optind < argc) return bad_arg(argv[optind], "unexpected argument");
    /* A story is told on a quiet background: no random liquidations or transfers unless
     * asked for. */
    if (a->gen.scenario != SIM_SCENARIO_NONE) {
        if (!a->have_liq_rate) mo->liquidation_rate = 0;
        if (!a->have_transfer_rate) mo->transfer_rate = 0;
    }
    if (a->have_count && a->have_duration)
        return bad_arg("--count", "give --count or --duration, not both");
    if (a->input_path && a->sim_only_opt)
        return bad_arg(a->sim_only_opt, "has no effect with --input (lines are sent as they are)");
    if (a->have_start && a->kafka)
        return bad_arg("--start-ms", "only in file mode: with --kafka timestamps follow the "
                                     "wall clock");
    if (!a->kafka && !a->input_path && !(mo->rate > 0))
        return bad_arg("--rate", "must be above 0 in file mode (it sets the simulated pace)");
    if (!a->kafka && !a->out_path) a->out_path = "-";
    if (a->labels_path && a->out_path && strcmp(a->labels_path, a->out_path) == 0)
        return bad_arg("--labels", "'%s' is also the --out file", a->labels_path);

    size_t n;
    if ((rc = split_list("--symbols", a->symbols_buf, a->symbols, SIM_MAX_SYMBOLS, &n)) < 0)
        return rc;
    mo->symbols = a->symbols;
    mo->n_symbols = n;
    if ((rc = split_list("--exchanges", a->exchanges_buf, a->exchanges, SIM_MAX_EXCHANGES, &n)) < 0)
        return rc;
    mo->exchanges = a->exchanges;
    mo->n_exchanges = n;
    if (mo->liquidation_rate + mo->transfer_rate >= 1.0)
        return bad_arg("--liquidation-rate", "with --transfer-rate must stay below 1");
    return 0;
}

/* ---- output ---------------------------------------------------------------- */

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void flush_buf(sim_app *app, int fd, hm_buf *b, const char *what) {
    if (fd < 0 || b->len == 0) return;
    int rc = write_all(fd, b->data, b->len);
    hm_buf_reset(b);
    if (rc == -EPIPE) {
        app->stop = true; /* the reader went away (`| head`): a normal end */
    } else if (rc < 0) {
        fprintf(stderr, "himari-sim: writing %s: %s\n", what, strerror(-rc));
        app->failed = 1;
        app->stop = true;
    }
}

static void flush_outputs(sim_app *app) {
    flush_buf(app, app->out_fd, &app->out, "--out");
    flush_buf(app, app->labels_fd, &app->labels, "--labels");
}

static int open_out(const char *opt, const char *path, int *fd) {
    if (strcmp(path, "-") == 0) {
        *fd = STDOUT_FILENO;
        return 0;
    }
    *fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (*fd < 0) {
        fprintf(stderr, "himari-sim: %s: cannot open '%s' for writing: %s\n", opt, path,
                strerror(errno));
        return -errno;
    }
    return 0;
}

/* ---- the loop --------------------------------------------------------------- */

static void check_signals(sim_app *app) {
    static const struct timespec zero = {0, 0};
    int sig = sigtimedwait(&app->stop_signals, NULL, &zero);
    if (sig > 0) {
        hm_log_info("stopping", HM_LS("signal", sig == SIGINT ? "SIGINT" : "SIGTERM"));
        app->stop = true;
    }
}

static uint64_t anomalies(const sim_app *app) {
    return app->gen ? app->gen->anomaly.labelled : 0;
}

static void report_progress(sim_app *app, uint64_t now_ns) {
    double dt = (double)(now_ns - app->progress_ns) / 1e9;
    double rate = dt > 0 ? (double)(app->records - app->progress_records) / dt : 0;
    if (app->kafka) {
        sim_kafka_stats st = sim_kafka_get_stats(app->kafka);
        hm_log_info("progress", HM_LI("records", app->records), HM_LD("rate", round(rate)),
                    HM_LI("anomalies", anomalies(app)), HM_LI("delivered", st.delivered),
                    HM_LI("failed", st.failed));
    } else {
        hm_log_info("progress", HM_LI("records", app->records), HM_LD("rate", round(rate)),
                    HM_LI("anomalies", anomalies(app)));
    }
    app->progress_ns = now_ns;
    app->progress_records = app->records;
}

/* Housekeeping between batches: signals, wall-clock duration, progress. */
static void tick(sim_app *app) {
    check_signals(app);
    uint64_t now = hm_mono_ns();
    if (app->kafka && app->args->have_duration &&
        (double)(now - app->start_ns) >= app->args->duration_s * 1e9)
        app->stop = true;
    if (app->args->progress && now - app->progress_ns >= 1000000000u) report_progress(app, now);
    if (app->kafka) sim_kafka_poll(app->kafka);
}

static void send_line(sim_app *app, const char *p, size_t n, const char *key, size_t key_len) {
    hm_err err;
    if (sim_kafka_produce(app->kafka, p, n, key, key_len, &err) < 0) {
        fprintf(stderr, "himari-sim: %s\n", err.msg);
        app->failed = 1;
        app->stop = true;
    }
}

/* One simulated record to wherever it goes. */
static void one_generated(sim_app *app) {
    sim_line info;
    hm_buf *labels = app->labels_fd >= 0 ? &app->labels : NULL;
    if (!app->kafka) {
        size_t out_len = app->out.len, labels_len = app->labels.len;
        sim_gen_next(app->gen, -1, &app->out, labels, &info);
        if (app->end_sim_ms && info.sim_ms >= app->end_sim_ms) {
            /* Past --duration of simulated time: not part of this run. */
            app->out.len = out_len;
            app->labels.len = labels_len;
            app->stop = true;
            return;
        }
        app->records++;
        return;
    }
    hm_buf_reset(&app->line);
    sim_gen_next(app->gen, hm_now_ms(), &app->line, labels, &info);
    if (app->out_fd >= 0) hm_buf_append(&app->out, app->line.data, app->line.len);
    send_line(app, app->line.data, app->line.len - 1, info.key, info.key_len);
    app->records++;
}

/* One input line to wherever it goes; false at the end of the input. */
static bool one_input(sim_app *app) {
    for (;;) {
        ssize_t n = getline(&app->in_line, &app->in_cap, app->input);
        if (n < 0) {
            if (ferror(app->input)) {
                fprintf(stderr, "himari-sim: reading %s: %s\n", app->args->input_path,
                        strerror(errno));
                app->failed = 1;
            }
            return false;
        }
        size_t len = (size_t)n;
        if (len > 0 && app->in_line[len - 1] == '\n') len--;
        if (len == 0) continue; /* blank lines carry no record */
        if (app->out_fd >= 0) {
            hm_buf_append(&app->out, app->in_line, len);
            hm_buf_putc(&app->out, '\n');
        }
        if (app->kafka) {
            hm_tick t;
            hm_decode_err derr;
            bool keyed = hm_tick_decode(app->in_line, len, 0, &t, &derr) == 0 &&
                         t.st[HM_FIELD_SYMBOL] == HM_F_OK;
            send_line(app, app->in_line, len, keyed ? t.symbol.p : NULL, keyed ? t.symbol.len : 0);
        }
        app->records++;
        return true;
    }
}

static void run(sim_app *app) {
    const sim_args *a = app->args;
    const double rate = a->gen.market.rate;
    const bool paced = app->kafka && rate > 0;
    /* The bucket holds 10 ms of tokens: smooth, yet few wake-ups. A wake-up waits for
     * 5 ms of them (at 2,000/s: 10 records, 200 wake-ups a second instead of 2,000),
     * which halved the feed's CPU at the make run rate (14 % of a core to 7 %). */
    const double bucket = fmax(1.0, rate * 0.01);
    const double wake_at = fmax(1.0, rate * 0.005);
    double tokens = 1.0;
    uint64_t refilled = hm_mono_ns();
    app->start_ns = app->progress_ns = refilled;
    if (!app->kafka && a->have_duration)
        app->end_sim_ms = a->gen.market.start_ms + (int64_t)llround(a->duration_s * 1000.0);

    while (!app->stop) {
        uint64_t left = a->have_count ? a->count - app->records : UINT64_MAX;
        if (left == 0) break;
        uint64_t batch = 4096;
        if (paced) {
            uint64_t now = hm_mono_ns();
            tokens = fmin(bucket, tokens + (double)(now - refilled) * rate / 1e9);
            refilled = now;
            if (tokens < wake_at) {
                /* Sleep until the wake-up's tokens are there, 0.5..10 ms at a time,
                 * serving delivery reports in between. */
                double wait_ns = fmin((wake_at - tokens) / rate * 1e9, 1e7);
                struct timespec ts = {0, (long)fmax(wait_ns, 5e5)};
                nanosleep(&ts, NULL);
                tick(app);
                continue;
            }
            batch = (uint64_t)tokens;
        }
        if (batch > left) batch = left;
        for (uint64_t i = 0; i < batch && !app->stop; i++) {
            if (app->input) {
                if (!one_input(app)) {
                    app->stop = true;
                    break;
                }
            } else {
                one_generated(app);
            }
            if (app->out.len >= OUT_FLUSH_BYTES) flush_buf(app, app->out_fd, &app->out, "--out");
            if (app->labels.len >= LABEL_FLUSH_BYTES)
                flush_buf(app, app->labels_fd, &app->labels, "--labels");
        }
        if (paced) tokens -= (double)batch;
        tick(app);
    }
    flush_outputs(app);
}

static int app_open(sim_app *app, const sim_args *a) {
    hm_err err;
    int rc;
    app->args = a;
    app->out_fd = -1;
    app->labels_fd = -1;
    if (a->out_path && (rc = open_out("--out", a->out_path, &app->out_fd)) < 0) return rc;
    if (a->labels_path) {
        if (strcmp(a->labels_path, "-") == 0)
            return bad_arg("--labels", "needs a file (stdout carries the records)");
        if ((rc = open_out("--labels", a->labels_path, &app->labels_fd)) < 0) return rc;
    }
    if (a->input_path) {
        app->input = strcmp(a->input_path, "-") == 0 ? stdin : fopen(a->input_path, "re");
        if (!app->input) {
            fprintf(stderr, "himari-sim: --input: cannot open '%s': %s\n", a->input_path,
                    strerror(errno));
            return -errno;
        }
    } else {
        sim_gen_opts go = a->gen;
        if (a->kafka) {
            go.market.start_ms = hm_now_ms();
            /* Trade ids from the clock (microseconds since 2020-09-13): a feed restarted
             * later goes on above the ids it sent before, as an exchange's do, so the
             * validator's restored state does not see every new trade as out of order. */
            go.market.first_id = (uint64_t)(hm_now_ms() - 1600000000000) * 1000;
        }
        /* In Kafka mode without pacing the clock still follows the wall. */
        if (!(go.market.rate > 0)) go.market.rate = DEFAULT_RATE;
        if ((rc = sim_gen_new(&go, &app->gen, &err)) < 0) {
            fprintf(stderr, "himari-sim: %s\n", err.msg);
            return rc;
        }
    }
    if (a->kafka && (rc = sim_kafka_new(a->kafka, a->topic, &app->kafka, &err)) < 0) {
        fprintf(stderr, "himari-sim: %s\n", err.msg);
        return rc;
    }
    return 0;
}

/* Closes everything; returns the exit code. */
static int app_close(sim_app *app) {
    int code = app->failed;
    if (app->kafka) {
        sim_kafka_stats st;
        sim_kafka_close(app->kafka, FLUSH_MS, &st);
        hm_log_info("summary", HM_LI("produced", st.produced), HM_LI("delivered", st.delivered),
                    HM_LI("failed", st.failed), HM_LI("anomalies", anomalies(app)));
        if (st.failed > 0) code = 1;
    } else if (app->args->progress) {
        hm_log_info("summary", HM_LI("records", app->records), HM_LI("anomalies", anomalies(app)));
    }
    if (app->out_fd > STDERR_FILENO && close(app->out_fd) != 0) {
        fprintf(stderr, "himari-sim: closing %s: %s\n", app->args->out_path, strerror(errno));
        code = 1;
    }
    if (app->labels_fd > STDERR_FILENO && close(app->labels_fd) != 0) {
        fprintf(stderr, "himari-sim: closing %s: %s\n", app->args->labels_path, strerror(errno));
        code = 1;
    }
    if (app->input && app->input != stdin) fclose(app->input);
    free(app->in_line);
    sim_gen_free(app->gen);
    hm_buf_free(&app->out);
    hm_buf_free(&app->labels);
    hm_buf_free(&app->line);
    return code;
}

int main(int argc, char **argv) {
    hm_log_init("himari-sim", HM_LOG_INFO);
    sim_args args = {0};
    int rc = parse_args(argc, argv, &args);
    if (rc != 0) {
        if (rc > 0) print_help(stdout);
        free(args.symbols_buf);
        free(args.exchanges_buf);
        return rc > 0 ? 0 : EXIT_USAGE;
    }

    /* SIGINT/SIGTERM are taken synchronously (sigtimedwait between batches),
     * so a stop always ends between records and no global flag is needed.
     * A closed stdout shows up as EPIPE from write(). */
    sim_app app = {0};
    sigemptyset(&app.stop_signals);
    sigaddset(&app.stop_signals, SIGINT);
    sigaddset(&app.stop_signals, SIGTERM);
    sigprocmask(SIG_BLOCK, &app.stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    int code;
    if (app_open(&app, &args) < 0) {
        app.failed = EXIT_USAGE;
        code = app_close(&app);
    } else {
        run(&app);
        code = app_close(&app);
    }
    free(args.symbols_buf);
    free(args.exchanges_buf);
    return code;
}
