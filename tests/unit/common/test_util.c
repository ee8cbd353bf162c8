/* Unit tests for common/util.c and common/hlc.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "arca_err.h"
#include "hlc.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_hex_roundtrip(void **state)
{
    uint8_t in[4] = {0x00, 0xab, 0x7f, 0xff}, out[4];
    char hex[9];
    hex_encode(in, 4, hex);
    assert_string_equal(hex, "00ab7fff");
    assert_int_equal(hex_decode("00AB7fff", 8, out, 4), 0);
    assert_memory_equal(in, out, 4);
}

static void test_hex_rejects(void **state)
{
    uint8_t out[2];
    assert_int_equal(hex_decode("abc", 3, out, 2), ARCA_E_INVALID);   /* odd length */
    assert_int_equal(hex_decode("abcg", 4, out, 2), ARCA_E_INVALID);  /* not hex */
    assert_int_equal(hex_decode("abcdef", 6, out, 2), ARCA_E_INVALID); /* too long */
}

static void test_parse_size(void **state)
{
    uint64_t v;
    assert_int_equal(parse_size("512", &v), 0);
    assert_int_equal(v, 512);
    assert_int_equal(parse_size("16K", &v), 0);
    assert_int_equal(v, 16384);
    assert_int_equal(parse_size("4G", &v), 0);
    assert_int_equal(v, 4ull << 30);
    assert_int_equal(parse_size("2MiB", &v), 0);
    assert_int_equal(v, 2u << 20);
    assert_int_equal(parse_size("", &v), ARCA_E_INVALID);
    assert_int_equal(parse_size("-1", &v), ARCA_E_INVALID);
    assert_int_equal(parse_size("12Q", &v), ARCA_E_INVALID);
    assert_int_equal(parse_size("99999999999T", &v), ARCA_E_INVALID); /* overflows */
}

static void test_http_date_roundtrip(void **state)
{
    char buf[40];
    int64_t secs;
    time_format_http(784111777, buf);
    assert_string_equal(buf, "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_int_equal(time_parse_http(buf, &secs), 0);
    assert_int_equal(secs, 784111777);
    assert_int_equal(time_parse_http("yesterday", &secs), ARCA_E_INVALID);
    /* the two obsolete forms a recipient must accept (RFC 9110 5.6.7) */
    secs = 0;
    assert_int_equal(time_parse_http("Sunday, 06-Nov-94 08:49:37 GMT", &secs), 0);
    assert_int_equal(secs, 784111777);
    secs = 0;
    assert_int_equal(time_parse_http("Sun Nov  6 08:49:37 1994", &secs), 0);
    assert_int_equal(secs, 784111777);
    /* a two-digit year is never more than 50 years ahead */
    assert_int_equal(time_parse_http("Thursday, 01-Jan-70 00:00:00 GMT", &secs), 0);
    assert_true(secs == 0 || secs == 3155760000); /* 1970, or 2070 from 2020 on */
    assert_int_equal(time_parse_http("Monday, 01-Jan-00 00:00:00 GMT", &secs), 0);
    assert_int_equal(secs, 946684800); /* 2000, until 2050 */
    /* trailing junk, a missing zone, a wrong zone */
    assert_int_equal(time_parse_http("Sun, 06 Nov 1994 08:49:37 GMT x", &secs), ARCA_E_INVALID);
    assert_int_equal(time_parse_http("Sun, 06 Nov 1994 08:49:37", &secs), ARCA_E_INVALID);
    assert_int_equal(time_parse_http("Sun, 06 Nov 1994 08:49:37 PST", &secs), ARCA_E_INVALID);
    assert_int_equal(time_parse_http("Sun Nov  6 08:49:37 1994 GMT", &secs), ARCA_E_INVALID);
}

static void test_iso_time(void **state)
{
    char buf[32];
    time_format_iso(784111777123ull, buf);
    assert_string_equal(buf, "1994-11-06T08:49:37.123Z");
}

static void test_write_atomic_and_read(void **state)
{
    char dir[] = "/tmp/arca-test-util-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/sub/dir", dir);
    assert_int_equal(fs_mkdirs(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/sub/dir/f", dir);
    assert_int_equal(fs_write_atomic(path, "secret\n", 7, 0600), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(fs_read_small(path, 100, &text, &len), 0);
    assert_int_equal(len, 7);
    assert_string_equal(text, "secret\n");
    free(text);
    assert_int_equal(fs_read_small(path, 4, &text, &len), ARCA_E_TOOBIG);
    unlink(path);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_hlc_monotonic(void **state)
{
    uint64_t a = hlc_now(), b = hlc_now();
    assert_true(b > a);
    hlc_observe(b + (1000ull << 16)); /* a clock one second ahead of ours */
    uint64_t c = hlc_now();
    assert_true(c > b + (1000ull << 16));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hex_roundtrip),     cmocka_unit_test(test_hex_rejects),
        cmocka_unit_test(test_parse_size),        cmocka_unit_test(test_http_date_roundtrip),
        cmocka_unit_test(test_iso_time),          cmocka_unit_test(test_write_atomic_and_read),
        cmocka_unit_test(test_hlc_monotonic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
