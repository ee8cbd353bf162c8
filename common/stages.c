#include "stages.h"

#include <regex.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char NAME_CHARS[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";

bool stages_name_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    return n > 0 && n <= max && strspn(s, NAME_CHARS) == n && s[0] != '.' && s[0] != '_' &&
           s[0] != '-';
}

void stages_init_defaults(struct stage_policy *p)
{
    memset(p, 0, sizeof(*p));
    static const char *const def[] = {"dev", "test", "prod"};
    for (size_t i = 0; i < 3; i++)
        snprintf(p->stages[i].name, STAGE_NAME_MAX, "%s", def[i]);
    p->n = 3;
}

bool stages_section(const char *section)
{
    return strcmp(section, "stages") == 0 || strncmp(section, "gate.", 5) == 0;
}

int stages_rank(const struct stage_policy *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->stages[i].name, name) == 0)
            return (int)i;
    return -1;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

static int set_order(struct stage_policy *p, const char *value, char *err, size_t errlen)
{
    char buf[STAGES_MAX * (STAGE_NAME_MAX + 2) + 1];
    if (strlen(value) >= sizeof(buf)) {
        snprintf(err, errlen, "stages.order: too long (at most %d stages)", STAGES_MAX);
        return -1;
    }
    strcpy(buf, value);
    size_t n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *name = trim(tok);
        if (!stages_name_ok(name, STAGE_NAME_MAX - 1)) {
            snprintf(err, errlen, "stages.order: '%.40s' is not a stage name (1-%d of A-Z a-z "
                     "0-9 . _ -)", name, STAGE_NAME_MAX - 1);
            return -1;
        }
        if (n == STAGES_MAX) {
            snprintf(err, errlen, "stages.order: at most %d stages", STAGES_MAX);
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            if (strcmp(p->stages[i].name, name) == 0) {
                snprintf(err, errlen, "stages.order: '%s' is listed twice", name);
                return -1;
            }
        }
        memset(&p->stages[n], 0, sizeof(p->stages[n]));
        snprintf(p->stages[n].name, STAGE_NAME_MAX, "%s", name);
        n++;
    }
    if (n < 2) {
        snprintf(err, errlen, "stages.order: list at least two stages, comma-separated");
        return -1;
    }
    p->n = n;
    return 0;
}

/* "key == value" or "key ~ pattern" into r. */
static int parse_property_rule(const char *value, struct gate_rule *r, char *err, size_t errlen)
{
    char buf[GATE_KEY_MAX + GATE_VALUE_MAX + 8];
    if (strlen(value) >= sizeof(buf)) {
        snprintf(err, errlen, "require_property: too long");
        return -1;
    }
    strcpy(buf, value);
    char *eq = strstr(buf, "==");
    char *tilde = strchr(buf, '~');
    char *op = eq && (!tilde || eq < tilde) ? eq : tilde;
    if (!op) {
        snprintf(err, errlen, "require_property: expected 'KEY == VALUE' or 'KEY ~ PATTERN', "
                 "got '%.80s'", value);
        return -1;
    }
    r->kind = op == eq ? GATE_PROPERTY_EQ : GATE_PROPERTY_MATCH;
    *op = '\0';
    char *key = trim(buf);
    char *val = trim(op + (op == eq ? 2 : 1));
    if (!stages_name_ok(key, GATE_KEY_MAX - 1)) {
        snprintf(err, errlen, "require_property: '%.80s' is not a property key (1-%d of A-Z a-z "
                 "0-9 . _ -)", key, GATE_KEY_MAX - 1);
        return -1;
    }
    if (strlen(val) >= GATE_VALUE_MAX || (r->kind == GATE_PROPERTY_MATCH && !*val)) {
        snprintf(err, errlen, "require_property: the value or pattern must be %s%d bytes",
                 r->kind == GATE_PROPERTY_MATCH ? "1-" : "at most ", GATE_VALUE_MAX - 1);
        return -1;
    }
    if (r->kind == GATE_PROPERTY_MATCH) {
        regex_t re;
        char anchored[GATE_VALUE_MAX + 8];
        snprintf(anchored, sizeof(anchored), "^(%s)$", val);
        int rc = regcomp(&re, anchored, REG_EXTENDED | REG_NOSUB);
        if (rc != 0) {
            char msg[128];
            regerror(rc, &re, msg, sizeof(msg));
            snprintf(err, errlen, "require_property: bad pattern '%.80s': %s", val, msg);
            return -1;
        }
        regfree(&re);
    }
    snprintf(r->key, sizeof(r->key), "%s", key);
    snprintf(r->value, sizeof(r->value), "%s", val);
    return 0;
}

static int set_gate(struct stage_policy *p, const char *stage, const char *key, const char *value,
                    int line, char *err, size_t errlen)
{
    struct stage_def *g = NULL;
    if (!stages_name_ok(stage, STAGE_NAME_MAX - 1)) {
        snprintf(err, errlen, "[gate.%.40s]: not a stage name", stage);
        return -1;
    }
    for (size_t i = 0; i < p->ngates; i++)
        if (strcmp(p->gates[i].name, stage) == 0)
            g = &p->gates[i];
    if (!g) {
        if (p->ngates == STAGES_MAX) {
            snprintf(err, errlen, "at most %d gate sections", STAGES_MAX);
            return -1;
        }
        g = &p->gates[p->ngates];
        memset(g, 0, sizeof(*g));
        snprintf(g->name, sizeof(g->name), "%s", stage);
        p->gate_line[p->ngates++] = line;
    }
    if (g->nrules == GATE_RULES_MAX) {
        snprintf(err, errlen, "[gate.%s]: at most %d rules", stage, GATE_RULES_MAX);
        return -1;
    }
    struct gate_rule r = {.line = line};
    if (strcmp(key, "require_property") == 0) {
        if (parse_property_rule(value, &r, err, errlen) != 0)
            return -1;
    } else if (strcmp(key, "require_file") == 0) {
        /* A file path as stored in a version; the full check is coord_path_check's, done
         * by storage when the policy is installed.  Here: the obvious mistakes. */
        if (!*value || strlen(value) >= GATE_KEY_MAX || value[0] == '/' ||
            strstr(value, "..") || strchr(value, '\\')) {
            snprintf(err, errlen, "require_file: '%.80s' is not a relative file path", value);
            return -1;
        }
        r.kind = GATE_FILE;
        snprintf(r.key, sizeof(r.key), "%s", value);
    } else if (strcmp(key, "require_build") == 0) {
        if (strcasecmp(value, "true") == 0) {
            r.kind = GATE_BUILD;
        } else if (strcasecmp(value, "false") == 0) {
            return 0;
        } else {
            snprintf(err, errlen, "require_build: expected true or false, got '%.40s'", value);
            return -1;
        }
    } else {
        snprintf(err, errlen, "unknown key '%.40s' in [gate.%s] (require_property, "
                 "require_file, require_build)", key, stage);
        return -1;
    }
    g->rules[g->nrules++] = r;
    return 0;
}

int stages_set(struct stage_policy *p, const char *section, const char *key, const char *value,
               int line, char *err, size_t errlen)
{
    if (strcmp(section, "stages") == 0) {
        if (strcmp(key, "order") == 0)
            return set_order(p, value, err, errlen);
        if (strcmp(key, "allow_skip") == 0) {
            if (strcasecmp(value, "true") == 0 || strcasecmp(value, "false") == 0) {
                p->allow_skip = strcasecmp(value, "true") == 0;
                return 0;
            }
            snprintf(err, errlen, "stages.allow_skip: expected true or false, got '%.40s'", value);
            return -1;
        }
        snprintf(err, errlen, "unknown key '%.40s' in section [stages] (order, allow_skip)", key);
        return -1;
    }
    return set_gate(p, section + 5, key, value, line, err, errlen);
}

int stages_finish(struct stage_policy *p, char *err, size_t errlen)
{
    for (size_t i = 0; i < p->n; i++)
        p->stages[i].nrules = 0;
    for (size_t g = 0; g < p->ngates; g++) {
        int rank = stages_rank(p, p->gates[g].name);
        if (rank < 0) {
            snprintf(err, errlen, "line %d: [gate.%s] names no stage in stages.order",
                     p->gate_line[g], p->gates[g].name);
            return -1;
        }
        if (rank == 0 && p->gates[g].nrules > 0) {
            snprintf(err, errlen, "line %d: [gate.%s]: '%s' is the first stage; versions start "
                     "there, so it cannot have a gate", p->gates[g].rules[0].line,
                     p->gates[g].name, p->gates[g].name);
            return -1;
        }
        struct stage_def *s = &p->stages[rank];
        memcpy(s->rules, p->gates[g].rules, sizeof(s->rules));
        s->nrules = p->gates[g].nrules;
    }
    return 0;
}
