/*
 * fetch_export.c - the optional dwf_fetch export (proposal 0001). Linked only
 * into tenants whose code has a default export (their fetch handler), so the
 * host sees a fetch handler exactly when the tenant wrote one.
 */
#include "engine.h"

__attribute__((export_name("dwf_fetch"))) int32_t dwf_fetch(const uint8_t *request,
                                                            uint32_t len) {
    return dwfjs_fetch(request, len);
}
