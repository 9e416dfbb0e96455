"""Verify a received webhook with a receiver-side library.

Usage: verify_standard_webhooks.py SECRET [standardwebhooks|svix] < request.json
request.json: {"headers": {"webhook-id": ..., ...}, "body": "<text>"}
Library: the Standard Webhooks reference library (default) or Svix's `svix`
package, which receivers of Svix-sent webhooks already use.
Prints "valid" (exit 0) or "invalid: <reason>" (exit 1).
"""
import json
import sys

library = sys.argv[2] if len(sys.argv) > 2 else "standardwebhooks"
if library == "svix":
    from svix.webhooks import Webhook
else:
    from standardwebhooks.webhooks import Webhook

request = json.load(sys.stdin)
try:
    Webhook(sys.argv[1]).verify(request["body"], request["headers"])
except Exception as e:  # both libraries raise WebhookVerificationError
    print(f"invalid: {e}")
    sys.exit(1)
print("valid")
