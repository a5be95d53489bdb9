#!/bin/sh
# A stand-in for a real notification: prints what happened, with the environment's URL.
echo "shop: ${1:-event} (${SQUALS_URL:-no url})"
