/*
 * `arcad audit verify [--checkpoint FILE] --data DIR`: re-derives the audit
 * log from the stored events (storage/audit.h: audit_verify) and says OK or
 * names the first event that was altered, removed or reordered.  Every
 * origin's tree is re-derived too and checked against the latest checkpoint
 * this centre accepted from that origin; a mismatch names the origin and,
 * where the events show it, the origin_seq.  It opens the
 * index read-only, like `arcad verify`, so it runs beside a live server (it
 * then sees the log as of its start).
 *
 * Output: the report as one JSON line on stdout, a one-line summary on
 * stderr.  Exit 0 when everything held, 1 when a problem was found, 2 when
 * the check could not run (bad arguments, unreadable index or checkpoint).
 */
#include "arca_err.h"
#include "audit.h"
#include "config.h"
#include "repo.h"
#include "server_int.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECKPOINT_FILE_MAX (64u * 1024)

/* Reads and parses a saved checkpoint (the JSON GET /api/v1/audit/checkpoint answers). */
static int load_checkpoint(const char *file, struct audit_checkpoint *cp)
{
    char *text = NULL;
    size_t len = 0;
    const char *why = NULL;
    int rc = fs_read_small(file, CHECKPOINT_FILE_MAX, &text, &len);
    if (rc != 0) {
        fprintf(stderr, "arcad audit verify: cannot read the checkpoint %s: %s\n", file,
                arca_strerror(rc));
        return rc;
    }
    rc = audit_checkpoint_parse(text, len, cp, &why);
    if (rc != 0) {
        fprintf(stderr, "arcad audit verify: %s is not a checkpoint: %s\n", file, why);
    } else if (cp->tree != AUDIT_TREE_LOCAL) {
        /* Origin checkpoints are accepted from peers and checked on every verify. */
        fprintf(stderr, "arcad audit verify: %s is a checkpoint of origin %s's tree, not of this "
                        "log (GET /api/v1/audit/checkpoint gives those)\n", file, cp->origin);
        rc = ARCA_E_INVALID;
    }
    free(text);
    return rc;
}

int cli_audit(const struct arca_config *cfg, const char *sub, const char *checkpoint_file)
{
    char path[PATH_MAX], root[65];
    struct audit_checkpoint cp;
    struct audit_report *rep = NULL;
    audit_signer *signer = NULL;
    repo_db *db = NULL;
    uint8_t key[32], *trusted = NULL;
    char key_id[17];
    int created = 0, status = 2, rc;

    if (strcmp(sub, "verify") != 0) {
        fprintf(stderr, "arcad audit: unknown subcommand '%s' (verify)\n", sub);
        return 2;
    }
    if (checkpoint_file) {
        if (load_checkpoint(checkpoint_file, &cp) != 0)
            return 2;
        /* The server's own key, when readable, is the one its checkpoints must carry. */
        if (audit_signer_open(cfg->data_dir, false, &signer, &created) == 0) {
            audit_signer_public(signer, key, key_id);
            trusted = key;
        } else {
            fprintf(stderr, "arcad audit verify: cannot read %s/%s: the checkpoint's key %s is "
                            "checked against itself only\n",
                    cfg->data_dir, AUDIT_KEY_FILE, cp.key_id);
        }
    }
    snprintf(path, sizeof(path), "%s/index", cfg->data_dir);
    if ((rc = repo_db_open_readonly(path, &db)) != 0) {
        fprintf(stderr, "arcad audit verify: cannot open the index %s: %s (a data directory "
                        "from before the audit log needs one start of arcad to build its tree)\n",
                path, arca_strerror(rc));
        goto out;
    }
    rep = malloc(sizeof(*rep));
    if (!rep) {
        fprintf(stderr, "arcad audit verify: out of memory\n");
        goto out;
    }
    if ((rc = audit_verify(db, checkpoint_file ? &cp : NULL, trusted, rep)) != 0) {
        fprintf(stderr, "arcad audit verify: reading the index failed: %s\n", arca_strerror(rc));
        goto out;
    }
    json_t *j = audit_report_json(rep, checkpoint_file ? &cp : NULL);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text) {
        fprintf(stderr, "arcad audit verify: out of memory\n");
        goto out;
    }
    printf("%s\n", text);
    fflush(stdout);
    free(text);
    if (rep->ok) {
        size_t checked = 0;
        for (size_t i = 0; i < rep->norigins; i++)
            checked += rep->origins[i].verified == 1;
        hex_encode(rep->root, AUDIT_HASH_LEN, root);
        fprintf(stderr, "arcad audit verify: OK: %llu events, root %s%s; %llu origin%s, %zu "
                        "matching %s signed checkpoint%s\n",
                (unsigned long long)rep->size, root,
                checkpoint_file ? ", extends the checkpoint" : "",
                (unsigned long long)rep->origin_count, rep->origin_count == 1 ? "" : "s", checked,
                checked == 1 ? "its" : "their", checked == 1 ? "" : "s");
        status = 0;
    } else {
        const struct audit_problem *p = &rep->problems[0];
        fprintf(stderr, "arcad audit verify: FAILED (%llu problem%s); first: %s",
                (unsigned long long)rep->problem_count, rep->problem_count == 1 ? "" : "s",
                p->kind);
        if (p->seq)
            fprintf(stderr, " at event %llu", (unsigned long long)p->seq);
        if (p->origin[0] && p->origin_seq)
            fprintf(stderr, " (origin %s #%llu)", p->origin, (unsigned long long)p->origin_seq);
        else if (p->origin[0])
            fprintf(stderr, " (origin %s)", p->origin);
        fprintf(stderr, ": %s\n", p->message);
        status = 1;
    }
out:
    free(rep);
    repo_db_free(db);
    audit_signer_free(signer);
    return status;
}
