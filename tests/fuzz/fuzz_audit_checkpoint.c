/*
 * Fuzz target for audit_checkpoint_parse (storage/audit_sign.c), which reads
 * checkpoint files a user hands to `arcad audit verify --checkpoint`: untrusted
 * JSON from anywhere.
 *
 * Properties: it never crashes or leaks; it accepts or refuses with a reason;
 * an accepted checkpoint's fields are exactly in their documented shapes (a
 * one-line printable origin and time, so the canonical signed text keeps its
 * five lines), its canonical text fits, and its JSON form parses back to the
 * same checkpoint.  A refused input leaves the struct zeroed.
 */
#include "arca_err.h"
#include "audit.h"
#include "fuzz_util.h"

static bool one_line(const char *s)
{
    if (!s[0])
        return false;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct audit_checkpoint cp, again;
    const char *why = NULL;
    char *text = dup_exact(data, size);
    int rc = audit_checkpoint_parse(text, size, &cp, &why);
    FUZZ_ASSERT(rc == 0 || rc == ARCA_E_INVALID);
    if (rc != 0) {
        static const struct audit_checkpoint zero;
        FUZZ_ASSERT(why != NULL && why[0] != '\0');
        FUZZ_ASSERT(memcmp(&cp, &zero, sizeof(cp)) == 0);
        free(text);
        return 0;
    }
    FUZZ_ASSERT(why == NULL);
    FUZZ_ASSERT(one_line(cp.origin) && one_line(cp.time));
    FUZZ_ASSERT(strlen(cp.key_id) == 16);
    FUZZ_ASSERT(cp.size <= AUDIT_SIZE_MAX);

    char signed_text[512];
    size_t tl = audit_checkpoint_text(&cp, signed_text, sizeof(signed_text));
    FUZZ_ASSERT(tl > 0 && tl == strlen(signed_text));
    int lines = 0;
    for (size_t i = 0; i < tl; i++)
        lines += signed_text[i] == '\n';
    FUZZ_ASSERT(lines == 5 && signed_text[tl - 1] == '\n');
    (void)audit_checkpoint_signature_ok(&cp);

    json_t *j = audit_checkpoint_json(&cp);
    FUZZ_ASSERT(j != NULL);
    char *dumped = json_dumps(j, JSON_COMPACT);
    FUZZ_ASSERT(dumped != NULL);
    FUZZ_ASSERT(audit_checkpoint_parse(dumped, strlen(dumped), &again, &why) == 0);
    FUZZ_ASSERT(memcmp(&cp, &again, sizeof(cp)) == 0);
    free(dumped);
    json_decref(j);
    free(text);
    return 0;
}
