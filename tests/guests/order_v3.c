/* Release 3 of the "order" workflow (see order.h). */
#define ORDER_VERSION 3
#include "order.h"
