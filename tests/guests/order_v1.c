/* Release 1 of the "order" workflow (see order.h). */
#define ORDER_VERSION 1
#include "order.h"
