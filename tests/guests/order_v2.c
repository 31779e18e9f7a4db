/* Release 2 of the "order" workflow (see order.h). */
#define ORDER_VERSION 2
#include "order.h"
