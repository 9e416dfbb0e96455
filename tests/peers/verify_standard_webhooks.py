"""Verify a received webhook with the Standard Webhooks reference library.

Usage: verify_standard_webhooks.py SECRET < request.json
request.json: {"headers": {"webhook-id": ..., ...}, "body": "<text>"}
Prints "valid" (exit 0) or "invalid: <reason>" (exit 1).
"""
import json
import sys

from standardwebhooks.webhooks import Webhook

request = json.load(sys.stdin)
try:
    Webhook(sys.argv[1]).verify(request["body"], request["headers"])
except Exception as e:  # the library raises WebhookVerificationError
    print(f"invalid: {e}")
    sys.exit(1)
print("valid")
