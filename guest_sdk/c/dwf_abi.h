/*
 * dwf_abi.h - the dwf guest ABI, version 1, as C declarations.
 *
 * This is the ONE place on the guest side where host imports are declared
 * (module "dwf"). It mirrors host/sandbox/abi.py and guest_sdk/ABI.md; if those change,
 * change this file and nothing else needs to know the import names.
 *
 * Tenant code should use dwf.h instead. Only the SDK runtime (dwf.c) and the
 * deliberately hostile test modules (tests/guests/) include this directly.
 *
 * Every pointer is a wasm32 offset (i32) and every length a u32; `ptr == 0`
 * is NULL and only valid with `len == 0`.
 */
#ifndef DWF_ABI_H
#define DWF_ABI_H

#include <stdint.h>

#define DWF_ABI_VERSION 1

/* Return codes of the step calls (host/sandbox/abi.py StepCode). */
#define DWF_CODE_RUN 0   /* step_do only: run the body now; out slot = {"attempt": int} */
#define DWF_CODE_OK 1    /* out slot = result (step result, event, created instance...) */
#define DWF_CODE_ERROR 2 /* out slot = error map {"name", "message"} */

/* Return codes of dwf_run (host/sandbox/abi.py RunCode). */
#define DWF_RUN_COMPLETE 0
#define DWF_RUN_FAILED 1

/*
 * An out slot: the host writes a slice it allocated with dwf_alloc here.
 * The guest owns that memory afterwards.
 */
typedef struct {
    uint32_t ptr;
    uint32_t len;
} dwf_out_slot;

_Static_assert(sizeof(dwf_out_slot) == 8, "out slots are 8 bytes (OUT_SLOT_SIZE)");

/*
 * A step batch (guest_sdk/proposals/0002-step-batches.md): the guest keeps it
 * in its memory and names it in step_batch; the host reads it there when the
 * guest calls step_batch or any journaled import, and when dwf_run returns or
 * traps.
 *   records:  msgpack values back to back, each step's name (str) then its
 *             result; the host sets records_len to 0 once it has taken them.
 *   running:  the name of the batched step whose body runs now (len 0: none).
 *   replayed: how many of the journal's first steps the guest answered itself
 *             from the event's "replay" entries.
 */
typedef struct {
    uint32_t records_ptr;
    uint32_t records_len;
    uint32_t running_ptr;
    uint32_t running_len;
    uint32_t replayed;
} dwf_step_batch;

_Static_assert(sizeof(dwf_step_batch) == 20, "batch descriptors are 20 bytes (BATCH_DESCRIPTOR_SIZE)");

/* dwf_run event keys (host/sandbox/abi.py JOURNAL_LENGTH_KEY, REPLAY_KEY). */
#define DWF_JOURNAL_LENGTH_KEY "journal_length"
#define DWF_REPLAY_KEY "replay"
#define DWF_MAX_BATCH_STEPS 64 /* host/sandbox/abi.py MAX_BATCH_STEPS */

#define DWF_IMPORT(name) __attribute__((import_module("dwf"), import_name(name)))

DWF_IMPORT("log")
void dwf_host_log(int32_t level, const void *ptr, uint32_t len);

DWF_IMPORT("http_fetch")
int32_t dwf_host_http_fetch(const void *request_ptr, uint32_t request_len, dwf_out_slot *out);

DWF_IMPORT("set_output")
void dwf_host_set_output(const void *ptr, uint32_t len);

DWF_IMPORT("set_error")
void dwf_host_set_error(const void *ptr, uint32_t len);

DWF_IMPORT("step_do")
int32_t dwf_host_step_do(const void *name_ptr, uint32_t name_len, const void *config_ptr,
                         uint32_t config_len, dwf_out_slot *out);

DWF_IMPORT("step_ok")
void dwf_host_step_ok(const void *ptr, uint32_t len);

DWF_IMPORT("step_fail")
int32_t dwf_host_step_fail(const void *ptr, uint32_t len, dwf_out_slot *out);

DWF_IMPORT("step_batch")
void dwf_host_step_batch(dwf_step_batch *batch);

DWF_IMPORT("sleep")
void dwf_host_sleep(const void *name_ptr, uint32_t name_len, int64_t duration_ms);

DWF_IMPORT("sleep_until")
void dwf_host_sleep_until(const void *name_ptr, uint32_t name_len, int64_t timestamp_ms);

DWF_IMPORT("wait_for_event")
int32_t dwf_host_wait_for_event(const void *name_ptr, uint32_t name_len, const void *type_ptr,
                                uint32_t type_len, int64_t timeout_ms, dwf_out_slot *out);

DWF_IMPORT("create_instance")
int32_t dwf_host_create_instance(const void *name_ptr, uint32_t name_len, const void *request_ptr,
                                 uint32_t request_len, dwf_out_slot *out);

DWF_IMPORT("send_event")
int32_t dwf_host_send_event(const void *name_ptr, uint32_t name_len, const void *request_ptr,
                            uint32_t request_len, dwf_out_slot *out);

DWF_IMPORT("now")
int64_t dwf_host_now(const void *name_ptr, uint32_t name_len);

DWF_IMPORT("random")
void dwf_host_random(const void *name_ptr, uint32_t name_len, void *buf, uint32_t buf_len);

/* Fetch handlers only (guest_sdk/proposals/0001-fetch-handlers.md): the tenant-bound
 * binding, not journaled. From a workflow these are AbiViolation. */

DWF_IMPORT("fetch_create_instance")
int32_t dwf_host_fetch_create_instance(const void *request_ptr, uint32_t request_len,
                                       dwf_out_slot *out);

DWF_IMPORT("fetch_instance_status")
int32_t dwf_host_fetch_instance_status(const void *request_ptr, uint32_t request_len,
                                       dwf_out_slot *out);

DWF_IMPORT("fetch_send_event")
int32_t dwf_host_fetch_send_event(const void *request_ptr, uint32_t request_len,
                                  dwf_out_slot *out);

#undef DWF_IMPORT

#endif /* DWF_ABI_H */
