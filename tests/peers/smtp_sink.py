"""A real SMTP server for Hookline's tests (Python 3.11 standard library).

Usage: smtp_sink.py PORT OUTDIR [--reject CODE]
Each accepted message is written to OUTDIR/<n>.json with its envelope,
headers, decoded text body and decoded attachments. With --reject, every
message is refused with that SMTP reply code.
"""
import asyncore
import email
import email.policy
import json
import os
import sys
import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning)
import smtpd  # noqa: E402  (removed in 3.12; present in Debian 12's 3.11)


class Sink(smtpd.SMTPServer):
    def __init__(self, port, outdir, reject):
        super().__init__(("127.0.0.1", port), None, decode_data=False)
        self.outdir, self.reject, self.n = outdir, reject, 0

    def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
        if self.reject:
            return f"{self.reject} rejected by test sink"
        msg = email.message_from_bytes(data, policy=email.policy.default)
        text, attachments = None, []
        for part in msg.walk():
            if part.is_multipart():
                continue
            if part.get_filename():
                attachments.append({
                    "filename": part.get_filename(),
                    "content_type": part.get_content_type(),
                    "content": part.get_payload(decode=True).decode("utf-8"),
                })
            elif part.get_content_type() == "text/plain" and text is None:
                text = part.get_payload(decode=True).decode("utf-8")
        self.n += 1
        record = {
            "mail_from": mailfrom,
            "rcpt_to": rcpttos,
            "headers": {k.lower(): str(v) for k, v in msg.items()},
            "text": text,
            "attachments": attachments,
        }
        tmp = os.path.join(self.outdir, f".{self.n}.json")
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(self.outdir, f"{self.n}.json"))
        return None


if __name__ == "__main__":
    port, outdir = int(sys.argv[1]), sys.argv[2]
    reject = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--reject" else None
    Sink(port, outdir, reject)
    print("ready", flush=True)
    asyncore.loop()
