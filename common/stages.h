/*
 * Stages and quality gates: the promotion policy from the config file.
 *
 *   [stages]
 *   order      = dev, test, prod      ; first stage: where every version starts
 *   allow_skip = false                ; promote more than one step at a time?
 *
 *   [gate.prod]                       ; what a version needs to enter stage prod
 *   require_property = tests.passed == true            ; exact value
 *   require_property = change.ticket ~ CHG-[0-9]+      ; POSIX ERE, whole value
 *   require_file     = reports/junit.xml               ; a file path in the version
 *   require_build    = true                            ; a build record attached
 *
 * Parsed and checked while the file loads (every error names its line); the
 * storage layer compiles the patterns again when it is handed the policy.
 */
#ifndef ARCA_STAGES_H
#define ARCA_STAGES_H

#include <stdbool.h>
#include <stddef.h>

#define STAGES_MAX 8
#define STAGE_NAME_MAX 32
#define GATE_RULES_MAX 16
#define GATE_KEY_MAX 128
#define GATE_VALUE_MAX 256

enum gate_kind { GATE_PROPERTY_EQ, GATE_PROPERTY_MATCH, GATE_FILE, GATE_BUILD };

struct gate_rule {
    enum gate_kind kind;
    char key[GATE_KEY_MAX];      /* property key or file path; "" for GATE_BUILD */
    char value[GATE_VALUE_MAX];  /* exact value or pattern */
    int line;                    /* where it was defined (0: built in) */
};

struct stage_def {
    char name[STAGE_NAME_MAX];
    struct gate_rule rules[GATE_RULES_MAX];
    size_t nrules;
};

struct stage_policy {
    struct stage_def stages[STAGES_MAX];  /* in order; rules filled by stages_finish */
    size_t n;
    bool allow_skip;
    /* Gate sections as read (they may precede [stages]); resolved by stages_finish. */
    struct stage_def gates[STAGES_MAX];
    int gate_line[STAGES_MAX];
    size_t ngates;
};

/* The embedded default: dev, test, prod, no gates, no skipping. */
void stages_init_defaults(struct stage_policy *p);

/* True for sections this module owns ("stages", "gate.*"). */
bool stages_section(const char *section);

/* One "key = value" line of such a section.  0 or -1 with err set. */
int stages_set(struct stage_policy *p, const char *section, const char *key, const char *value,
               int line, char *err, size_t errlen);

/* After the whole file: every gate names a known stage, the first stage has none. */
int stages_finish(struct stage_policy *p, char *err, size_t errlen);

/* The stage's rank (0 = first), or -1 when unknown. */
int stages_rank(const struct stage_policy *p, const char *name);

/* A stage or property name: 1..n of [A-Za-z0-9._-], starting with a letter or digit. */
bool stages_name_ok(const char *s, size_t max);

#endif
