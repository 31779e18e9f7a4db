/*
 * dwf_durable.c - the workflow API on top of the host imports: journal
 * positions, step batches and replay from the event (proposal 0002), steps,
 * sleeps, waits, instances, journaled time and entropy, the workflow's output
 * and logs. Kept apart from the exports (dwf.c) so that another guest runtime
 * (the JavaScript engine in guest_sdk/js) can drive the same calls.
 *
 * Host -> guest memory (out slots, the dwf_run event) is kept for the whole
 * invocation when tenant code may still point into it (results, payloads);
 * the SDK frees only what it consumes itself. A fresh instance per invocation
 * makes that the simplest correct choice.
 */
#include "dwf_abi.h"
#include "dwf_internal.h"

/* Per-invocation state (statics start fresh with every instance). */
static const char *running_step; /* the step whose body is running, for diagnostics */
static bool workflow_failed;     /* dwf_fail was called */

/*
 * Step batches (proposal 0002). Every journaled call takes the next journal
 * position; from `journal_length` on, none is recorded, so a step with the
 * default config runs at once and its result joins the batch instead of two
 * host calls. The host learns where the batch lives from the first
 * step_batch call, and takes what it holds at every later one and when
 * dwf_run returns or traps; so the batch is handed over before any other
 * journaled call (the journal stays in the guest's order), and when it is
 * full (at most this many steps are lost to a host crash before a commit).
 */
#define BATCH_STEPS 16
#define BATCH_BYTES (64 * 1024)
static int64_t journal_length = INT64_MAX; /* none in the event: never batch */
static int64_t position;                   /* the next journal position */
static dwf_step_batch batch;
static dwf_writer batch_records;
static uint32_t batch_count;
static bool batch_registered;
/* The event's "replay": the journal's first completed steps, [[name, result], ...].
 * While the workflow asks for them in order they are answered here, and
 * batch.replayed tells the host how many; the first other call ends it. */
static dwf_reader replay;
static uint32_t replay_left;

static void register_batch(void) {
    if (!batch_registered) dwf_host_step_batch(&batch);
    batch_registered = true;
}

static void flush_batch(void) {
    if (!batch_count) return;
    dwf_host_step_batch(&batch); /* the host takes the records: records_len = 0 */
    dwf_writer_reset(&batch_records);
    batch.records_len = 0;
    batch_count = 0;
}

/* Before a journaled call the host answers itself: its position comes after the batch. */
static void next_position(void) {
    flush_batch();
    replay_left = 0; /* replayed steps come first: the host answers from here on */
    position++;
}

/* The next step of the event's replay, if it is `name`: its recorded result. */
static bool replay_from_event(const char *name, dwf_reader *value) {
    if (!replay_left || running_step) return false;
    dwf_reader pair = replay;
    uint32_t fields, len;
    const char *recorded;
    if (!dwf_read_array(&pair, &fields) || fields != 2 || !dwf_read_str(&pair, &recorded, &len) ||
        len != dwf_strlen(name) || memcmp(recorded, name, len) != 0) {
        replay_left = 0; /* another step than recorded: the host says what that means */
        return false;
    }
    *value = dwf_reader_new(dwf_value_bytes(&pair));
    if (!value->len || !dwf_skip(&pair)) {
        replay_left = 0;
        return false;
    }
    register_batch(); /* before `replayed` moves: the host reads it from here on */
    replay = pair;
    replay_left--;
    position++;
    batch.replayed++;
    return true;
}

static const uint8_t nil_value[1] = {0xc0};

dwf_reader dwf__nil_reader(void) { return dwf_reader_new((dwf_bytes){nil_value, 1}); }

static dwf_reader slot_reader(const dwf_out_slot *slot) {
    return dwf_reader_new((dwf_bytes){(const uint8_t *)(uintptr_t)slot->ptr, slot->len});
}

static void write_value(dwf_writer *w, dwf_bytes value) {
    if (value.len) dwf_write_raw(w, value);
    else dwf_write_nil(w);
}

/* Map entries; NULL strings are written as "". */
static void put_str(dwf_writer *w, const char *key, const char *value) {
    dwf_write_str(w, key);
    dwf_write_str(w, value ? value : "");
}

static void put_int(dwf_writer *w, const char *key, int64_t value) {
    dwf_write_str(w, key);
    dwf_write_int(w, value);
}

static void write_error_map(dwf_writer *w, const char *name, const char *message) {
    put_str(w, "name", name);
    put_str(w, "message", message);
}

void dwf__journal_begin(const dwf_reader *event) {
    journal_length = dwf_get_int(event, DWF_JOURNAL_LENGTH_KEY, INT64_MAX);
    if (dwf_find(event, DWF_REPLAY_KEY, &replay) && !dwf_read_array(&replay, &replay_left))
        replay_left = 0;
}

bool dwf__workflow_failed(void) { return workflow_failed; }

void dwf__write_manifest_head(dwf_writer *w, const char *sdk, uint32_t workflow_count) {
    dwf_write_map(w, 3);
    put_int(w, "abi", DWF_ABI_VERSION);
    put_str(w, "sdk", sdk);
    dwf_write_str(w, "workflows");
    dwf_write_array(w, workflow_count);
}

/* The host broke the ABI contract in a way the guest cannot recover from. */
_Noreturn static void protocol_error(const char *call, const char *name, int32_t code) {
    char num[DWF_ITOA_SIZE];
    dwf_log(DWF_LOG_ERROR, dwf_cat("dwf: host returned code ", dwf_itoa(code, num), " from ", call,
                                   " `", name, "`, which the ABI does not allow", NULL));
    __builtin_trap();
}

/*
 * The host rejects durable calls made inside a step body (AbiViolation); say
 * which step and call it was, in words a tenant can act on, before it does.
 */
static void warn_if_nested(const char *call, const char *name) {
    if (!running_step) return;
    dwf_log(DWF_LOG_ERROR, dwf_cat("dwf: ", call, " `", name, "` called inside the body of step `",
                                   running_step, "`: durable calls cannot nest in a step body", NULL));
}

/* Turns a host return code and out slot into a dwf_result. */
dwf_result dwf__outcome(const char *call, const char *name, int32_t code,
                        const dwf_out_slot *slot) {
    dwf_result res = {.value = slot_reader(slot)};
    if (code == DWF_CODE_OK) {
        res.ok = true;
    } else if (code == DWF_CODE_ERROR) {
        res.error.name = dwf_get_str(&res.value, "name", "UnknownError");
        res.error.message = dwf_get_str(&res.value, "message", "");
        res.error.retryable = dwf_get_bool(&res.value, "retryable", false);
    } else {
        protocol_error(call, name, code);
    }
    return res;
}

/* ------------------------------------------------------------------------ */
/* Workflow result and logs                                                 */
/* ------------------------------------------------------------------------ */

int dwf_output(dwf_bytes value) {
    if (!value.len) value = (dwf_bytes){nil_value, 1};
    dwf_host_set_output(value.ptr, value.len);
    return DWF_COMPLETE;
}

int dwf_fail(const char *name, const char *message) {
    dwf_writer w = {0};
    dwf_write_map(&w, 2);
    write_error_map(&w, name, message);
    dwf_host_set_error(w.data, w.len);
    dwf_writer_release(&w);
    workflow_failed = true;
    return DWF_FAILED;
}

void dwf_log(dwf_log_level level, const char *message) {
    dwf_host_log((int32_t)level, message, dwf_strlen(message));
}

/* ------------------------------------------------------------------------ */
/* Steps                                                                    */
/* ------------------------------------------------------------------------ */

/* Only the fields that differ from the host defaults; nothing at all if none do. */
static void encode_config(dwf_writer *w, const dwf_step_config *c) {
    if (!c) return;
    uint32_t retries = (c->limit >= 0) + (c->delay_ms >= 0) + (c->backoff != NULL);
    uint32_t fields = (retries > 0) + (c->timeout_ms >= 0);
    if (!fields) return;
    dwf_write_map(w, fields);
    if (retries) {
        dwf_write_str(w, "retries");
        dwf_write_map(w, retries);
        if (c->limit >= 0) put_int(w, "limit", c->limit);
        if (c->delay_ms >= 0) put_int(w, "delay_ms", c->delay_ms);
        if (c->backoff) put_str(w, "backoff", c->backoff);
    }
    if (c->timeout_ms >= 0) put_int(w, "timeout_ms", c->timeout_ms);
}

static bool record_failure(dwf_step *step, const char *name, const char *message,
                           bool retryable) {
    dwf_writer *w = &step->error_;
    dwf_writer_reset(w); /* the last call wins */
    dwf_write_map(w, 3);
    write_error_map(w, name, message);
    dwf_write_str(w, "retryable");
    dwf_write_bool(w, retryable);
    return false;
}

bool dwf_step_error(dwf_step *step, const char *name, const char *message) {
    return record_failure(step, name, message, true);
}

bool dwf_step_fatal(dwf_step *step, const char *name, const char *message) {
    return record_failure(step, name, message, false);
}

bool dwf_step_fail_with(dwf_step *step, dwf_result failed) {
    return record_failure(step, failed.error.name, failed.error.message, failed.error.retryable);
}

/* A failed attempt, reported with step_fail: returns once the failure is final. */
static dwf_result report_failure(dwf_step *step) {
    dwf_writer_release(&step->result);
    if (step->error_.len == 0)
        record_failure(step, "StepFailed",
                       "the step body returned false without dwf_step_error/dwf_step_fatal", true);
    /* Suspends when a retry is due; returns only once the failure is final. */
    dwf_out_slot slot = {0, 0};
    int32_t code = dwf_host_step_fail(step->error_.data, step->error_.len, &slot);
    dwf_writer_release(&step->error_);
    if (code != DWF_CODE_ERROR) protocol_error("step_fail", step->name, code);
    return dwf__outcome("step_fail", step->name, code, &slot);
}

static dwf_result step_value(dwf_step *step) {
    dwf_writer_release(&step->error_);
    return (dwf_result){.ok = true, .value = dwf_reader_new(dwf_writer_bytes(&step->result))};
}

static bool default_config(const dwf_step_config *c) {
    return !c || (c->limit < 0 && c->delay_ms < 0 && !c->backoff && c->timeout_ms < 0);
}

bool dwf__step_begin(const char *name, const dwf_step_config *config, dwf__step_attempt *out,
                     dwf_result *recorded) {
    warn_if_nested("dwf_step_do", name);
    dwf_reader value;
    if (replay_from_event(name, &value)) {
        *recorded = (dwf_result){.ok = true, .value = value};
        return false;
    }
    *out = (dwf__step_attempt){.step = {.name = name, .attempt = 1}};
    if (position >= journal_length && !running_step && default_config(config)) {
        /* A new step with the default config runs at once and its result joins the batch,
         * named before the body runs so that a trap in it is still its failed attempt. */
        register_batch();
        position++;
        out->batched = true;
        batch.running_ptr = (uint32_t)(uintptr_t)name;
        batch.running_len = dwf_strlen(name);
    } else {
        next_position();
        dwf_writer cfg = {0};
        encode_config(&cfg, config);
        dwf_out_slot slot = {0, 0};
        int32_t code = dwf_host_step_do(name, dwf_strlen(name), cfg.data, cfg.len, &slot);
        dwf_writer_release(&cfg);
        if (code != DWF_CODE_RUN) {
            *recorded = dwf__outcome("step_do", name, code, &slot);
            return false;
        }
        dwf_reader attempt = slot_reader(&slot);
        out->step.attempt = dwf_get_int(&attempt, "attempt", 1);
        dwf_free((void *)(uintptr_t)slot.ptr, slot.len);
    }
    running_step = name;
    return true;
}

dwf_result dwf__step_end(dwf__step_attempt *attempt, bool ok) {
    dwf_step *step = &attempt->step;
    running_step = NULL;
    if (ok && step->result.len == 0) dwf_write_nil(&step->result);
    if (!attempt->batched) {
        if (!ok) return report_failure(step);
        dwf_host_step_ok(step->result.data, step->result.len);
        return step_value(step);
    }
    uint32_t name_len = batch.running_len;
    batch.running_ptr = batch.running_len = 0;
    if (!ok) {
        /* The host hears of the steps before it, then of this one the usual way: it
         * opens the step (attempt 1, the one that just ran) and takes its failure. */
        flush_batch();
        dwf_out_slot slot = {0, 0};
        int32_t code = dwf_host_step_do(step->name, name_len, NULL, 0, &slot);
        if (code != DWF_CODE_RUN) protocol_error("step_do", step->name, code);
        dwf_free((void *)(uintptr_t)slot.ptr, slot.len);
        return report_failure(step);
    }
    dwf_write_strn(&batch_records, step->name, name_len);
    dwf_write_raw(&batch_records, dwf_writer_bytes(&step->result));
    batch.records_ptr = (uint32_t)(uintptr_t)batch_records.data;
    batch.records_len = batch_records.len;
    if (++batch_count >= BATCH_STEPS || batch_records.len >= BATCH_BYTES) flush_batch();
    return step_value(step);
}

/* A C config field as dwf__step_begin takes it: 0 (a field a designated initializer left
 * out) and DWF_DEFAULT keep the host default (-1); DWF_NONE is an actual 0. */
static int64_t c_config_field(int64_t value) {
    if (value == DWF_NONE) return 0;
    return value > 0 ? value : DWF_DEFAULT;
}

dwf_result dwf_step_do(const char *name, const dwf_step_config *config, dwf_step_fn body,
                       void *ctx) {
    dwf__step_attempt attempt;
    dwf_result recorded;
    dwf_step_config sent;
    if (config) {
        sent = (dwf_step_config){.limit = c_config_field(config->limit),
                                 .delay_ms = c_config_field(config->delay_ms),
                                 .backoff = config->backoff,
                                 .timeout_ms = c_config_field(config->timeout_ms)};
        config = &sent;
    }
    if (!dwf__step_begin(name, config, &attempt, &recorded)) return recorded;
    bool ok = body(&attempt.step, ctx);
    return dwf__step_end(&attempt, ok);
}

/* ------------------------------------------------------------------------ */
/* Sleeps, events, instances                                                */
/* ------------------------------------------------------------------------ */

void dwf_sleep(const char *name, int64_t duration_ms) {
    warn_if_nested("dwf_sleep", name);
    next_position();
    dwf_host_sleep(name, dwf_strlen(name), duration_ms);
}

void dwf_sleep_until(const char *name, int64_t timestamp_ms) {
    warn_if_nested("dwf_sleep_until", name);
    next_position();
    dwf_host_sleep_until(name, dwf_strlen(name), timestamp_ms);
}

dwf_result dwf_wait_for_event(const char *name, const char *type, int64_t timeout_ms,
                              dwf_event *event) {
    warn_if_nested("dwf_wait_for_event", name);
    if (timeout_ms < 0) timeout_ms = DWF_WAIT_DEFAULT_TIMEOUT_MS;
    dwf_out_slot slot = {0, 0};
    next_position();
    int32_t code = dwf_host_wait_for_event(name, dwf_strlen(name), type, dwf_strlen(type),
                                           timeout_ms, &slot);
    dwf_result res = dwf__outcome("wait_for_event", name, code, &slot);
    if (event) {
        *event = (dwf_event){.payload = dwf__nil_reader()};
        if (res.ok) {
            event->type = dwf_get_str(&res.value, "type", type);
            dwf_find(&res.value, "payload", &event->payload);
            event->timestamp = dwf_get_int(&res.value, "timestamp", 0);
        }
    }
    return res;
}

dwf_result dwf_create_instance(const char *name, const char *workflow, dwf_bytes params,
                               const char *id, const char **id_out) {
    warn_if_nested("dwf_create_instance", name);
    dwf_writer req = {0};
    dwf_write_map(&req, id ? 3 : 2);
    put_str(&req, "workflow", workflow);
    dwf_write_str(&req, "params");
    write_value(&req, params);
    if (id) put_str(&req, "id", id);

    dwf_out_slot slot = {0, 0};
    next_position();
    int32_t code = dwf_host_create_instance(name, dwf_strlen(name), req.data, req.len, &slot);
    dwf_writer_release(&req);
    dwf_result res = dwf__outcome("create_instance", name, code, &slot);
    if (id_out) *id_out = res.ok ? dwf_get_str(&res.value, "id", NULL) : NULL;
    return res;
}

dwf_result dwf_send_event(const char *name, const char *instance_id, const char *type,
                          dwf_bytes payload) {
    warn_if_nested("dwf_send_event", name);
    dwf_writer req = {0};
    dwf_write_map(&req, 3);
    put_str(&req, "instance_id", instance_id);
    put_str(&req, "type", type);
    dwf_write_str(&req, "payload");
    write_value(&req, payload);

    dwf_out_slot slot = {0, 0};
    next_position();
    int32_t code = dwf_host_send_event(name, dwf_strlen(name), req.data, req.len, &slot);
    dwf_writer_release(&req);
    return dwf__outcome("send_event", name, code, &slot);
}

/* ------------------------------------------------------------------------ */
/* Journaled time and entropy                                               */
/* ------------------------------------------------------------------------ */

int64_t dwf_now(const char *name) {
    warn_if_nested("dwf_now", name);
    next_position();
    return dwf_host_now(name, dwf_strlen(name));
}

void dwf_random(const char *name, void *buf, uint32_t len) {
    warn_if_nested("dwf_random", name);
    next_position();
    dwf_host_random(name, dwf_strlen(name), buf, len);
}

