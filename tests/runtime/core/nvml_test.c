/* nvml_test.c — apr_nvml_* without NVML (the error says why), with a driver
 * whose nvmlInit fails, and through tests/fixtures/nvml/fake_nvml.c (built
 * beside this binary as fake-nvml/libnvidia-ml.so.1) with its set figures. */
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apr.h"

/* The fake library beside the test binary (make builds both in $(BUILD)). */
static int fake_path(char *out, size_t n)
{
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) return 0;
    exe[len] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash) return 0;
    *slash = '\0';
    snprintf(out, n, "%s/fake-nvml/libnvidia-ml.so.1", exe);
    return access(out, R_OK) == 0;
}

TEST(nvml_says_why_it_is_unavailable_then_reads_a_driver_library)
{
    /* No library: every query fails, nothing crashes. */
    setenv("APR_NVML_LIBRARY", "/nonexistent/libnvidia-ml.so.1", 1);
    CHECK(apr_nvml_init() == APR_ERR_DEVICE);
    CHECK(strstr(apr_last_error(), "NVML unavailable") != NULL);
    CHECK_EQ_INT(apr_nvml_device_count(), 0);
    apr_gpu_sample s;
    CHECK(apr_nvml_sample(0, &s) == APR_ERR_DEVICE);
    CHECK_EQ_INT(s.utilization_pct, -1);

    char path[4200];
    REQUIRE(fake_path(path, sizeof path));
    setenv("APR_NVML_LIBRARY", path, 1);

    /* A library whose driver is not loaded: NVML's own reason. */
    setenv("FAKE_NVML_FAIL", "1", 1);
    CHECK(apr_nvml_init() == APR_ERR_DEVICE);
    CHECK(strstr(apr_last_error(), "Driver Not Loaded") != NULL);
    unsetenv("FAKE_NVML_FAIL");

    /* A working one: the failure was not remembered. */
    REQUIRE(apr_nvml_init() == APR_OK);
    CHECK(apr_nvml_init() == APR_OK);
    CHECK_EQ_INT(apr_nvml_device_count(), 1);
    apr_gpu_info info;
    REQUIRE(apr_nvml_device_info(0, &info) == APR_OK);
    CHECK_EQ_STR(info.name, "Fake GPU (apr tests)");
    CHECK_EQ_STR(info.driver_version, "999.99");
    CHECK_EQ_INT(info.cuda_driver_version, 12040);
    CHECK_EQ_INT(info.sm_clock_max_mhz, 1980);
    CHECK_EQ_INT((long long)info.memory_total_bytes, 80LL << 30);
    CHECK(apr_nvml_device_info(1, &info) == APR_ERR_RANGE);

    char procs[] = "/tmp/apr-nvml-test-XXXXXX";
    int fd = mkstemp(procs);
    REQUIRE(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "4242 1073741824\n77 5\n");
    fclose(f);
    setenv("FAKE_NVML_PROCESSES", procs, 1);
    REQUIRE(apr_nvml_sample(0, &s) == APR_OK);
    CHECK_EQ_INT(s.utilization_pct, 87);
    CHECK_EQ_INT(s.memory_utilization_pct, 40);
    CHECK_EQ_INT(s.sm_clock_mhz, 1755);
    CHECK_EQ_INT(s.memory_clock_mhz, 2619);
    CHECK_EQ_INT(s.temperature_c, 61);
    CHECK_EQ_INT(s.power_mw, 350000);
    CHECK_EQ_INT((long long)s.memory_used_bytes, (2LL << 30) + 5);
    CHECK_EQ_INT((long long)s.throttle_reasons, 0);

    uint32_t pids[1];
    int64_t bytes[1];
    int n = -1;
    REQUIRE(apr_nvml_processes(0, pids, bytes, 1, &n) == APR_OK);
    CHECK_EQ_INT(n, 2);  /* more than the room given: the count says so */
    CHECK_EQ_INT(pids[0], 4242);
    CHECK_EQ_INT(bytes[0], 1073741824LL);
    CHECK(apr_nvml_processes(0, NULL, NULL, 0, &n) == APR_OK);
    CHECK_EQ_INT(n, 2);
    CHECK(apr_nvml_processes(0, NULL, NULL, 3, &n) == APR_ERR_INVALID);
    unlink(procs);
    unsetenv("FAKE_NVML_PROCESSES");
    unsetenv("APR_NVML_LIBRARY");
}
