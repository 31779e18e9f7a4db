/*
 * initech: a job pipeline that fans out to child workflows and fans back in.
 *
 * Workflow "pipeline", params {chunks: int (3)}: plans the job, starts one
 * "process_chunk" instance per chunk, then collects one "chunk_done" event per
 * chunk (in whatever order they arrive) and publishes the total.
 * Output: {chunks, total}.
 *
 * Workflow "process_chunk", params {parent_id: str, index: int}: computes
 * (index+1)^2 * 100 and reports it to the parent as a "chunk_done" event
 * {index, value}. Output: {index, value}.
 */
#include "dwf.h"

#define MAX_CHUNKS 1000            /* keeps a bad param from spawning without end */
#define COLLECT_TIMEOUT_MS 3600000 /* 1 h per chunk */

static int fail_with(dwf_result r) { return dwf_fail(r.error.name, r.error.message); }

/* "<prefix><i>": step names must be unique per position, so they carry the index. */
static const char *indexed(const char *prefix, int64_t i) {
    char num[DWF_ITOA_SIZE];
    return dwf_cat(prefix, dwf_itoa(i, num), NULL);
}

/* ---- pipeline ------------------------------------------------------------ */

static bool plan(dwf_step *step, void *ctx) {
    int64_t chunks = *(const int64_t *)ctx;
    if (chunks < 0 || chunks > MAX_CHUNKS)
        return dwf_step_fatal(step, "InvalidParams", "`chunks` must be between 0 and 1000");
    dwf_write_map(&step->result, 1);
    dwf_write_str(&step->result, "chunks");
    dwf_write_int(&step->result, chunks);
    return true;
}

static bool publish(dwf_step *step, void *ctx) {
    int64_t total = *(const int64_t *)ctx;
    char num[DWF_ITOA_SIZE];
    dwf_log(DWF_LOG_INFO, dwf_cat("pipeline: publishing total ", dwf_itoa(total, num), NULL));
    dwf_write_map(&step->result, 1);
    dwf_write_str(&step->result, "total");
    dwf_write_int(&step->result, total);
    return true;
}

static int pipeline(const dwf_input *in) {
    int64_t requested = dwf_get_int(&in->payload, "chunks", 3);
    dwf_result r = dwf_step_do("plan", NULL, plan, &requested);
    if (!r.ok) return fail_with(r);
    /* From here on use the journaled plan, not the raw param. */
    int64_t chunks = dwf_get_int(&r.value, "chunks", 0);

    for (int64_t i = 0; i < chunks; i++) {
        dwf_writer params = {0};
        dwf_write_map(&params, 2);
        dwf_write_str(&params, "parent_id");
        dwf_write_str(&params, in->instance_id);
        dwf_write_str(&params, "index");
        dwf_write_int(&params, i);
        const char *child;
        r = dwf_create_instance(indexed("spawn-chunk-", i), "process_chunk",
                                dwf_writer_bytes(&params), NULL, &child);
        dwf_writer_release(&params);
        if (!r.ok) return fail_with(r);
        dwf_log(DWF_LOG_INFO, dwf_cat("pipeline: started chunk ", indexed("", i), " as ", child, NULL));
    }

    int64_t total = 0;
    for (int64_t i = 0; i < chunks; i++) {
        dwf_event done;
        r = dwf_wait_for_event(indexed("collect-", i), "chunk_done", COLLECT_TIMEOUT_MS, &done);
        if (!r.ok) return fail_with(r);
        total += dwf_get_int(&done.payload, "value", 0);
    }

    r = dwf_step_do("publish", NULL, publish, &total);
    if (!r.ok) return fail_with(r);

    dwf_writer w = {0};
    dwf_write_map(&w, 2);
    dwf_write_str(&w, "chunks");
    dwf_write_int(&w, chunks);
    dwf_write_str(&w, "total");
    dwf_write_int(&w, total);
    return dwf_output(dwf_writer_bytes(&w));
}

/* ---- process_chunk ------------------------------------------------------- */

static bool compute(dwf_step *step, void *ctx) {
    int64_t index = *(const int64_t *)ctx;
    /* Stand-in for real work: add 100 once per cell of an (index+1)^2 grid. */
    int64_t value = 0;
    for (int64_t row = 0; row <= index; row++)
        for (int64_t col = 0; col <= index; col++) value += 100;
    dwf_write_map(&step->result, 1);
    dwf_write_str(&step->result, "value");
    dwf_write_int(&step->result, value);
    return true;
}

static int process_chunk(const dwf_input *in) {
    const char *parent_id = dwf_get_str(&in->payload, "parent_id", NULL);
    int64_t index = dwf_get_int(&in->payload, "index", -1);
    if (!parent_id || index < 0 || index >= MAX_CHUNKS)
        return dwf_fail("InvalidParams", "needs `parent_id` (str) and `index` (0..999)");

    dwf_result r = dwf_step_do("compute", NULL, compute, &index);
    if (!r.ok) return fail_with(r);
    int64_t value = dwf_get_int(&r.value, "value", 0);

    dwf_writer report = {0};
    dwf_write_map(&report, 2);
    dwf_write_str(&report, "index");
    dwf_write_int(&report, index);
    dwf_write_str(&report, "value");
    dwf_write_int(&report, value);
    r = dwf_send_event("report", parent_id, "chunk_done", dwf_writer_bytes(&report));
    if (!r.ok) return fail_with(r);
    /* The event payload is exactly the output. */
    return dwf_output(dwf_writer_bytes(&report));
}

DWF_WORKFLOWS(
    DWF_WORKFLOW("pipeline", pipeline),
    DWF_WORKFLOW("process_chunk", process_chunk),
)
