/*
 * gen.c: draft -> scenario -> inject -> format -> damage -> commit -> label, one record
 * at a time (see gen.h).
 *
 * Pure logic; the order of the steps is what keeps anomalies from poisoning
 * the market: the injector sees the draft before the market commits it, and
 * the commit applies what the injector left in rec->commit_*.
 */
#include "gen.h"

#include <assert.h>
#include <stdlib.h>

int sim_gen_new(const sim_gen_opts *o, sim_gen **out, hm_err *err) {
    *out = NULL;
    sim_gen *g = hm_xcalloc(1, sizeof(*g));
    int rc = sim_market_new(&o->market, &g->market, err);
    if (rc < 0) goto err;
    sim_anomaly_opts ao = o->anomaly;
    ao.seed = o->market.seed;
    rc = sim_anomaly_init(&g->anomaly, &ao, g->market->n_feeds, err);
    if (rc < 0) goto err;
    rc = sim_scenario_init(&g->scenario, o->scenario, g->market, err);
    if (rc < 0) goto err;
    *out = g;
    return 0;
err:
    sim_market_free(g->market);
    free(g);
    return rc;
}

void sim_gen_free(sim_gen *g) {
    if (!g) return;
    sim_anomaly_free(&g->anomaly);
    sim_market_free(g->market);
    free(g);
}

void sim_gen_next(sim_gen *g, int64_t live_now_ms, hm_buf *out, hm_buf *labels, sim_line *line) {
    sim_record *rec = &g->rec;
    sim_market *m = g->market;
    sim_market_draft(m, live_now_ms, rec);
    /* A story's own record is never perturbed. */
    bool scripted = sim_scenario_apply(&g->scenario, m, rec);
    sim_anomaly_kind label = scripted ? SIM_AN_NONE : sim_anomaly_apply(&g->anomaly, m, rec);
    size_t start = out->len;
    sim_record_format(m, rec, out);
    if (rec->garble) {
        size_t n = out->len - start - 1; /* without '\n' */
        sim_anomaly_garble(rec, out->data + start, &n);
        out->len = start + n;
        hm_buf_putc(out, '\n');
    }
    sim_market_commit(m, rec);
    if (label != SIM_AN_NONE && labels) sim_anomaly_label(m, rec, label, g->seq, labels);

    bool symbol_ok =
        rec->kind != SIM_R_TRANSFER && !rec->garble && !(rec->ov_mask & (1u << SIM_RF_SYMBOL));
    line->key = symbol_ok ? m->sym[rec->sym].name : NULL;
    line->key_len = symbol_ok ? m->sym[rec->sym].name_len : 0;
    line->sim_ms = rec->sim_ms;
    line->label = label;
    g->seq++;
}
